"""The "identify" recipe (issue 7): losses, shapes, a tiny end-to-end train + export + tau
calibration, and the tau rule. Fast: tiny synthetic data, a few steps."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import make_speech_like


def test_tau_rule_picks_the_middle_of_the_gap():
    from model_export.identify_eval import tau_from_distances

    K = 384
    true = np.array([0.0, 0.01, 0.02, 0.05])
    imp = np.array([0.30, 0.35, 0.40, 0.45])
    c = tau_from_distances(true, imp, K)
    assert 0.05 < c["tau"] < 0.30
    assert abs(c["tau"] - (0.05 + 0.30) / 2) < 2.0 / K
    assert c["tar_at_tau"] == 1.0 and c["far_at_tau"] == 0.0 and c["gap"] > 0
    # overlapping: no impostor accepted, recall as high as that allows
    c = tau_from_distances(np.array([0.01, 0.02, 0.2]), np.array([0.1, 0.3]), K)
    assert c["far_at_tau"] == 0.0 and c["tau"] <= 0.1 and c["tar_at_tau"] == pytest.approx(2 / 3)


tf = pytest.importorskip("tensorflow", reason="training needs tensorflow (the 'train' extra)")


def _tiny_dataset(root, n_classes=2, speakers=("aa", "bb"), takes=3):
    import soundfile as sf

    for c in range(n_classes):
        d = root / str(c)
        d.mkdir(parents=True)
        for si, s in enumerate(speakers):
            for t in range(takes):
                y = make_speech_like(seconds=0.6, seed=100 * c + 10 * si + t, f0=110 + 40 * c + 15 * si,
                                     syllables=1 + c)
                sf.write(d / f"{c}_{s}_{t}.wav", y, 16000, subtype="PCM_16")
    return root


def test_losses_have_the_right_shapes_and_decrease():
    import keras

    from model_export.identify import IdentifyConfig, make_losses
    from model_export.models import build_model

    keras.utils.set_random_seed(0)
    K, C, B = 64, 3, 6
    model = build_model("cnn", (128, 32, 1), K, C)
    cfg = IdentifyConfig()
    loss_fn = make_losses(cfg)
    rng = np.random.default_rng(0)
    xa = rng.standard_normal((B, 128, 32, 1)).astype(np.float32)
    xb = xa + 0.1 * rng.standard_normal(xa.shape).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    opt = keras.optimizers.Adam(1e-3)
    first = last = None
    for _ in range(8):
        with tf.GradientTape() as tape:
            h, p = model(tf.concat([xa, xb], 0), training=True)
            L = loss_fn(h, p, tf.constant(y))
        assert h.shape == (2 * B, K) and p.shape == (2 * B, C)
        assert set(L) >= {"loss", "ntxent", "ce", "quant", "balance"}
        g = tape.gradient(L["loss"], model.trainable_variables)
        opt.apply_gradients(zip(g, model.trainable_variables))
        first = first or {k: float(v) for k, v in L.items()}
        last = {k: float(v) for k, v in L.items()}
    assert last["loss"] < first["loss"]
    assert last["ntxent"] < first["ntxent"]
    assert last["ce"] < first["ce"]


def test_train_export_calibrate_and_encode(tmp_path):
    from hashing.encoder import Encoder
    from hashing.model_meta import ModelMeta
    from model_export.identify import IdentifyConfig, train_identify

    data = _tiny_dataset(tmp_path / "data", speakers=("aa", "bb", "cc"))
    cfg = IdentifyConfig(groups=2, group_size=2, n_aug=1)
    res = train_identify(data, tmp_path / "out", K=64, epochs=2, steps_per_epoch=2,
                         val_split={"speakers": ["bb"]}, test_split={"speakers": ["cc"]}, cfg=cfg,
                         cache_dir=tmp_path / "cache", threads=1, name="tiny-identify",
                         log=lambda *a: None)
    meta = ModelMeta.load(res["meta_path"])
    assert meta.recipe == "identify" and meta.K == 64 and meta.C == 2
    assert 0.0 < meta.tau < 0.5
    assert meta.metrics["tau_calibration"]["tau"] == meta.tau
    assert meta.training["held_out_speakers"] == ["cc"]
    assert meta.metrics["export_check"]["bit_agreement"] >= 0.999
    assert len(res["history"]) == 2
    enc = Encoder.from_files(res["tflite_path"], res["meta_path"])
    codes = enc.encode_audio(make_speech_like(seconds=0.8, seed=7))
    assert codes.bits.shape[1] == 64 and codes.probs.shape[1] == 2
