"""A tiny train -> export -> encode run on synthetic data (a few seconds of CPU).

Three "words" (tone patterns) by three "speakers", folder-per-category, FSDD-style names; a tiny
feature setting (32 Mel bands x 32 frames) and K = 64. Checks the shapes, the Keras/TFLite
agreement recorded by the export, the metadata, the curves, and that the same audio always gives
the same code through the runtime encoder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="training needs tensorflow (the 'train' extra)")
pytest.importorskip("keras", reason="training needs keras (the 'train' extra)")

from hashing.audio import write_wav  # noqa: E402
from hashing.encoder import Encoder  # noqa: E402
from hashing.model_meta import ModelMeta  # noqa: E402

SR = 16_000
TINY = {"n_mels": 32, "n_fft": 256, "hop_length": 128, "clip_seconds": 0.25}
WORDS = {"low": (300.0, 500.0), "mid": (900.0, 700.0), "high": (1800.0, 2400.0)}


def _word(f0: float, f1: float, speaker: int, take: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * speaker + take)
    n = int(SR * (0.14 + 0.02 * (take % 3)))  # < clip_seconds (0.25) with trim margins
    scale = 1.0 + 0.06 * (speaker - 1)
    f = np.linspace(f0, f1, n) * scale
    phase = 2 * np.pi * np.cumsum(f) / SR
    env = np.sin(np.pi * np.arange(n) / n) ** 2
    y = 0.5 * env * (np.sin(phase) + 0.3 * np.sin(2 * phase)) + 0.01 * rng.standard_normal(n)
    return np.concatenate([np.zeros(800), y, np.zeros(800)]).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinyds")
    for label, (f0, f1) in WORDS.items():
        (root / label).mkdir()
        for s, spk in enumerate(["ann", "bob", "cid"]):
            for take in range(6):
                write_wav(root / label / f"{label}_{spk}_{take}.wav", _word(f0, f1, s, take), SR)
    return root


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    from model_export.train import train

    out = tmp_path_factory.mktemp("tinymodel")
    seen = []

    class Progress:
        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, dict(logs)))

    res = train(tiny_dataset, out, arch="cnn", K=64, input_mode="native", epochs=3,
                val_split={"speakers": ["bob"]}, test_split={"speakers": ["cid"]}, seed=1,
                augment=True, n_aug=1, batch_size=8, feature_overrides=TINY,
                cache_dir=out / "cache", progress=Progress(), command="pytest tiny",
                data_name="tiny", license="synthetic",
                cpo_factory=lambda rng: (lambda y, sr: (y * rng.uniform(0.5, 1.0)).astype(np.float32)))
    return res, seen


def test_train_produces_model_meta_and_curves(trained):
    res, seen = trained
    assert res.tflite_path.is_file() and res.meta_path.is_file()
    meta = ModelMeta.load(res.meta_path)
    assert meta.K == 64 and meta.C == 3 and meta.arch == "cnn"
    assert meta.class_names == ["high", "low", "mid"]
    assert meta.input_shape == [32, 32, 1]
    assert meta.training["held_out_speakers"] == ["cid"]
    assert meta.training["train_speakers"] == ["ann"]
    assert meta.training["command"] == "pytest tiny"
    check = meta.metrics["export_check"]
    assert check["n_windows"] == 18  # bob: 3 words x 6 takes, one window each
    assert meta.metrics["features_check"]["max_abs_diff"] == 0.0
    assert check["bit_agreement"] >= 0.999
    assert meta.tflite_sha256 == __import__("hashlib").sha256(res.tflite_path.read_bytes()).hexdigest()
    # progress hook: one call per epoch, 1-based, with the logged curves
    assert [e for e, _ in seen] == list(range(1, res.epochs_run + 1))
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "test_accuracy"} <= set(seen[0][1])
    rows = res.curves_csv.read_text().strip().splitlines()
    assert rows[0].startswith("epoch,loss,accuracy,val_loss")
    assert len(rows) == res.epochs_run + 1
    assert res.curves_png is not None and res.curves_png.stat().st_size > 1000
    json.dumps(res.to_dict())


def test_feature_cache_is_reused(trained, tiny_dataset):
    res, _ = trained
    from hashing.features import FeatureSpec
    from model_export import dataset as ds

    items, _ = ds.list_items(tiny_dataset)
    cache = res.tflite_path.parent / "cache"
    n_files = len(list(cache.glob("*.npy")))
    assert n_files >= 6  # train + 1 aug copy + val + test, X and idx each
    spec = FeatureSpec(**TINY)
    w1 = ds.compute_windows(items[:4], spec, cache_dir=cache)
    w2 = ds.compute_windows(items[:4], spec, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == n_files + 2
    np.testing.assert_array_equal(w1.X, w2.X)


def test_encoder_matches_keras_and_is_deterministic(trained, tiny_dataset):
    res, _ = trained
    enc = Encoder.from_files(res.tflite_path, num_threads=1)
    assert enc.sha256 == res.meta.tflite_sha256
    path = tiny_dataset / "mid" / "mid_cid_2.wav"
    a = enc.encode_file(path)
    b = enc.encode_file(path.read_bytes())
    assert a.bits.shape == (1, 64) and a.bits.dtype == np.uint8
    assert a.words.shape == (1, 1) and a.words.dtype == np.uint64
    assert a.probs.shape == (1, 3) and a.category.dtype == np.int64
    assert 0 <= a.category[0] < 3
    np.testing.assert_array_equal(a.words, b.words)
    np.testing.assert_array_equal(a.category, b.category)
    assert set(a.timings) == {"decode", "features", "inference"}
    # the runtime encoder and the Keras model give the same bits on the same windows
    win, _ = enc.windows(__import__("hashing.audio", fromlist=["load_audio"]).load_audio(path))
    h, p = res.model(win, training=False)
    from hashing.codes import hash_bits

    assert np.mean(hash_bits(np.asarray(h)) == a.bits) >= 0.99
    assert int(np.argmax(np.asarray(p)[0])) == int(a.category[0])
    # about half the bits are set (mean threshold, eq. 11-12)
    assert 10 < int(a.bits.sum()) < 54


def test_encoder_from_bytes_long_recording_gives_windows(trained):
    res, _ = trained
    enc = Encoder.from_bytes(res.tflite_path.read_bytes(), res.meta)
    y = np.concatenate([_word(*WORDS["low"], 0, 1), _word(*WORDS["high"], 0, 2)] * 2)
    codes = enc.encode_audio(y)
    assert codes.n_windows >= 2
    assert codes.bits.shape == (codes.n_windows, 64)
    assert np.all(np.diff(codes.starts) > 0)


def test_crnn_exports_with_lstm(tiny_dataset, tmp_path):
    from model_export.train import train

    res = train(tiny_dataset, tmp_path / "crnn.tflite", arch="crnn", K=64, epochs=1,
                val_split="speakers:bob", test_split="*_cid_*", augment=False, batch_size=8,
                feature_overrides=TINY, cache_dir=tmp_path / "cache", data_name="tiny")
    assert res.name == "crnn" and res.meta.arch == "crnn"
    assert res.meta.metrics["export_check"]["bit_agreement"] >= 0.999
    enc = Encoder.from_files(res.tflite_path)
    assert enc.encode_audio(_word(*WORDS["mid"], 2, 0)).bits.shape == (1, 64)


def test_bad_arguments_are_rejected(tiny_dataset, tmp_path):
    from model_export.train import train
    from speechvault.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        train(tiny_dataset, tmp_path, K=100, epochs=1)
    with pytest.raises(InvalidInputError, match="unknown speaker"):
        train(tiny_dataset, tmp_path, K=64, epochs=1, test_split={"speakers": ["zed"]},
              feature_overrides=TINY)
    with pytest.raises(InvalidInputError):
        train(tiny_dataset, tmp_path, arch="resnet", K=64, epochs=1)


def test_average_precision_and_map_definitions():
    from model_export.evaluate import average_precision, mean_ap

    # ranks 1 and 3 relevant: (1/1 + 2/3) / 2
    assert average_precision(np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0, 0])) == 0.0
    D = np.array([[0.0, 0.1, 0.4, 0.2]])
    # library labels a a b b, query a, itself (index 0) excluded: ranking 1(a) 3(b) 2(b)
    assert mean_ap(D, np.array([0]), np.array([0, 0, 1, 1]), exclude=np.array([0])) == 1.0
    assert mean_ap(D, np.array([1]), np.array([0, 0, 1, 1])) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_evaluate_runs_on_the_tiny_model(trained, tiny_dataset):
    from model_export.evaluate import evaluate, to_markdown

    res_t, _ = trained
    res = evaluate(res_t.tflite_path, tiny_dataset, cpos=["-3dB", "R.Q"], log=lambda s: None)
    assert res["data"]["query_speakers"] == ["cid"] and res["data"]["n_queries"] == 18
    assert res["retrieval"]["library_size"] == 54 and res["retrieval"]["n_queries"] == 36
    assert 0.0 <= res["map"]["mAP_h2"] <= 1.0
    # -3 dB: the features are gain invariant, so every query finds its original at distance ~0
    assert res["cpo"]["-3dB"]["ber_true"]["max"] < 0.05
    assert res["cpo"]["-3dB"]["traversal"]["recall"] == 1.0
    md = to_markdown(res, "cmd")
    assert "| -3dB |" in md and "mAP" in md


def test_dataset_listing_and_splits(tiny_dataset):
    from model_export import dataset as ds
    from speechvault.errors import InvalidInputError

    items, classes = ds.list_items(tiny_dataset)
    assert classes == ["high", "low", "mid"] and len(items) == 54
    it = items[0]
    assert (it.label, it.speaker, it.take) == ("high", "ann", 0)
    assert ds.parse_name("7_yweweler_49") == ("yweweler", 49)
    assert ds.parse_name("recording") == (None, None)
    sel, rest = ds.split_items(items, {"speakers": ["bob"]})
    assert len(sel) == 18 and {i.speaker for i in sel} == {"bob"} and len(rest) == 36
    sel, _ = ds.split_items(items, "*_[45].wav")          # glob on the file name
    assert len(sel) == 18 and {i.take for i in sel} == {4, 5}
    sel, _ = ds.split_items(items, "re:^low/.*_cid_")      # regex on category/name
    assert len(sel) == 6
    sel, _ = ds.split_items(items, "mid/*")                # glob on category/name
    assert {i.label for i in sel} == {"mid"}
    with pytest.raises(InvalidInputError):
        ds.split_items(items, "*.flac")
    with pytest.raises(InvalidInputError):
        ds.split_items(items, "re:(")
    with pytest.raises(InvalidInputError):
        ds.parse_split({"speakers": []})


def test_extra_augmentations():
    from model_export import dataset as ds

    rng = np.random.default_rng(0)
    X = np.ones((8, 32, 32, 1), np.float32)
    out = ds.spec_augment(X.copy(), rng, max_freq=8, max_time=4)
    assert out.shape == X.shape
    masked = (out == 0).reshape(8, -1).sum(axis=1)
    assert masked.max() > 0 and masked.max() <= 8 * 32 + 4 * 32
    y = _word(*WORDS["mid"], 0, 0)
    z = ds.speed_then_cpo((0.8, 0.8))(np.random.default_rng(1))(y, SR)
    assert z.dtype == np.float32 and abs(len(z) - len(y) / 0.8) < 20  # slower: longer
