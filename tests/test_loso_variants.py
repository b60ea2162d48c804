"""model_export.loso_variants: the ablation levers of the LOSO run compute what they claim
(band normalisation of cached windows = hashing.features on audio; soft targets)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashing.features import FeatureSpec, model_windows
from model_export.loso_variants import Variant, band_normalise_bank
from speechvault.errors import InvalidInputError


def _speechy(seconds: float, seed: int, sr: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * rng.random()
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))
    env = np.sin(np.pi * t / seconds) ** 2
    y = y * env + 0.01 * rng.standard_normal(len(t))
    return np.concatenate([np.zeros(1600), y, np.zeros(1600)]).astype(np.float32)


@pytest.mark.parametrize("mode", ["cmn", "cmvn"])
def test_bank_band_norm_equals_features_on_audio(mode):
    """The LOSO run normalises cached (float16) windows; the shipped model computes from audio
    with FeatureSpec(band_norm=mode). Both must give the same input (short clips: padding too)."""
    plain, band = FeatureSpec(), FeatureSpec(band_norm=mode)
    for seed, sec in ((0, 0.4), (1, 0.8), (2, 1.9)):
        y = _speechy(sec, seed)
        cached = model_windows(y, plain).astype(np.float16)
        got = band_normalise_bank(cached, mode).astype(np.float32)
        want = model_windows(y, band)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 0.05
        assert np.abs(got - want).mean() < 2e-3
        assert not np.allclose(got, cached.astype(np.float32), atol=0.05)


def test_optimizer_text_names_the_schedule_the_training_used():
    """Exported metadata said Adam(lr=0.001) for cosine-decayed models too (session 22's
    fsdd-crnn-k384-diverse-cosine); the text now follows ``Variant.lr_decay``."""
    from model_export.loso_variants import optimizer_text

    assert optimizer_text(Variant()) == "Adam(lr=0.001)"
    assert "cosine" in optimizer_text(Variant(lr_decay="cosine"))


def test_cosine_rate_starts_at_the_base_and_ends_at_the_floor():
    pytest.importorskip("tensorflow")
    from model_export.loso_variants import LR_FLOOR, learning_rate

    assert learning_rate(Variant(), 100) == pytest.approx(1e-3)
    sched = learning_rate(Variant(lr_decay="cosine"), 100)
    assert float(sched(0)) == pytest.approx(1e-3)
    assert float(sched(50)) == pytest.approx(1e-3 * (LR_FLOOR + (1 - LR_FLOOR) * 0.5), rel=1e-4)
    assert float(sched(100)) == pytest.approx(1e-3 * LR_FLOOR, rel=1e-4)


def test_bank_band_norm_none_is_the_same_array():
    X = np.ones((2, 4, 3, 1), np.float16)
    assert band_normalise_bank(X, "none") is X


def test_variant_labels_and_validation():
    assert Variant().label("diverse") == "diverse"
    assert Variant("cmvn").label("diverse") == "diverse+cmvn"
    assert Variant("none", 0.1, 0.2).label("baseline") == "baseline+ls0.1+mix0.2"
    assert Variant(label_smoothing=0.1, extra_takes=4).label("diverse") == "diverse+ls0.1+xvoices4"
    assert Variant(label_smoothing=0.1, mixup=0.2, lr_decay="cosine").label("diverse") == "diverse+ls0.1+mix0.2+cosine"
    assert not Variant().soft and Variant(mixup=0.2).soft and Variant(label_smoothing=0.1).soft
    for bad in (dict(band_norm="pcen"), dict(label_smoothing=1.0), dict(mixup=-1.0), dict(extra_takes=-1), dict(lr_decay="step")):
        with pytest.raises(InvalidInputError):
            Variant(**bad)


def test_soft_batches_smooth_and_mix_targets():
    pytest.importorskip("tensorflow")
    from model_export.loso_variants import soft_batches
    from model_export.train import _Batches

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4, 4, 1)).astype(np.float16)
    y = np.arange(64) % 10
    base = _Batches(X, y, 16, 1, False, 0)
    xb0, yb0 = base[0]
    sm = soft_batches(base, 10, Variant(label_smoothing=0.1), train=True)
    xb, t = sm[0]
    np.testing.assert_array_equal(xb, xb0)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(t[np.arange(16), yb0], 0.91, rtol=1e-6)
    mx = soft_batches(base, 10, Variant(mixup=0.4), train=True)
    xm, tm = mx[0]
    np.testing.assert_allclose(tm.sum(1), 1.0, rtol=1e-5)
    assert (tm.max(1) < 0.999).any()  # some targets are mixtures
    assert not np.allclose(xm, xb0)
    # validation (train=False) is never mixed
    xv, tv = soft_batches(base, 10, Variant(mixup=0.4), train=False)[0]
    np.testing.assert_array_equal(xv, xb0)
    assert set(np.unique(tv)) == {0.0, 1.0}


def test_fit_with_soft_targets_learns_and_names_rows():
    """fit() with label smoothing + mixup trains on one-hot targets and still learns an easy
    synthetic task; the corpus band normalisation touches every bank."""
    pytest.importorskip("tensorflow")
    from model_export import loso

    rng = np.random.default_rng(1)
    proto = rng.standard_normal((10, 16, 16, 1))
    y = np.arange(400) % 10
    X = (proto[y] + 0.4 * rng.standard_normal((400, 16, 16, 1))).astype(np.float16)
    yv = np.arange(100) % 10
    Xv = (proto[yv] + 0.4 * rng.standard_normal((100, 16, 16, 1))).astype(np.float16)
    model, hist = loso.fit(X, y, Xv, yv, K=64, epochs=3, seed=0, spec_augment=False,
                           variant=Variant(label_smoothing=0.1, mixup=0.2), log=lambda s: None)
    assert len(hist) == 3 and all(0.0 <= h["accuracy"] <= 1.0 for h in hist)
    _, probs = loso._keras_outputs(model)(Xv.astype(np.float32))
    assert np.mean(probs.argmax(1) == yv) > 0.5
    b = loso.Bank(X, np.arange(400), 400)
    corpus = loso.Corpus(y, np.array(["a"] * 400), b, {"x": b}, [b], [b], b, b, y, b, {"x": b}, y, [], [])
    cn = loso.band_normalised(corpus, "cmn")
    for bank in (cn.clean, cn.cpo["x"], cn.baseline_aug[0], cn.diverse_aug[0], cn.esp_fit,
                 cn.esp_fit_aug, cn.esp_test, cn.esp_test_cpo["x"]):
        np.testing.assert_allclose(bank.X.astype(np.float32).mean(axis=2), 0.0, atol=5e-3)
    assert loso.band_normalised(corpus, "none") is corpus


def _row(spk, model, h1, m, seen=False):
    r = {"fsdd": {"h1_accuracy": h1, "mAP_h2": m, "retrieval": {"auto_traversal_share": 0.01}},
         "espeak_test": {"h1_accuracy": 0.9}}
    return {"held_out": spk, "model": model, "seen": seen, **r}


def test_ablation_table_pairs_folds_and_skips_seen_rows(tmp_path, capsys):
    from model_export import loso_ablation

    a = {"epochs": 8, "K": 384, "rows": [_row("theo", "diverse", 0.8, 0.8), _row("lucas", "diverse", 0.6, 0.7),
                                          _row("george", "diverse", 0.5, 0.5), _row("lucas", "default", 1.0, 1.0, True)]}
    b = {"epochs": 8, "K": 384, "rows": [_row("lucas", "diverse+cmvn", 0.7, 0.65), _row("theo", "diverse+cmvn", 0.9, 0.9)]}
    (tmp_path / "a.json").write_text(json.dumps(a)), (tmp_path / "b.json").write_text(json.dumps(b))
    models = loso_ablation.collect([tmp_path / "a.json", tmp_path / "b.json"])
    assert "default" not in models and sorted(models["diverse"]) == ["george", "lucas", "theo"]
    md = loso_ablation.ablation_markdown(models, "diverse")
    line = next(x for x in md.splitlines() if x.startswith("| diverse+cmvn |"))
    assert "0.800 ± 0.100" in line  # h1 over lucas and theo
    assert "+0.100 (n=2, 2 up)" in line and "+0.025 (n=2, 1 up)" in line
    assert loso_ablation.main([str(tmp_path / "a.json"), "--reference", "nothing"]) == 1
    assert capsys.readouterr().err.startswith("error:")


def _tone(hz: float, seconds: float = 0.5, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.5 * np.sin(2 * np.pi * hz * t) * np.sin(np.pi * t / seconds) ** 2
    return np.concatenate([np.zeros(1600), y, np.zeros(1600)]).astype(np.float32)


def _peak_band(W: np.ndarray) -> int:
    real = ~np.all(W[0, :, :, 0] == 0, axis=0)
    return int(np.argmax(W[0, :, real, 0].mean(axis=0)))


@pytest.mark.parametrize("hz", [500.0, 1800.0])
@pytest.mark.parametrize("alpha", [0.87, 1.15])
def test_mel_warp_moves_a_tone_to_alpha_times_its_frequency(hz, alpha):
    """Below VTLP's knee w(f) = alpha f: the warped window of a tone at f peaks in the band of
    a tone at alpha f (the features of that tone computed from audio), +-1 band; alpha = 1
    changes nothing and padded (all-zero) frames stay zero."""
    from model_export.augment import mel_warp_windows

    spec = FeatureSpec(input_mode="native")
    X = model_windows(_tone(hz), spec)[:1].astype(np.float32)
    np.testing.assert_allclose(mel_warp_windows(X, np.array([1.0]), spec), X, atol=1e-6)
    got = mel_warp_windows(X, np.array([alpha]), spec)
    want = model_windows(_tone(alpha * hz), spec)[:1]
    assert _peak_band(X) != _peak_band(want)
    assert abs(_peak_band(got) - _peak_band(want)) <= 1
    pad = np.all(X[0, :, :, 0] == 0, axis=0)
    assert pad.any() and np.all(got[0][:, pad] == 0)


def test_mel_warp_rejects_windows_of_another_shape():
    from model_export.augment import mel_warp_windows

    with pytest.raises(InvalidInputError):
        mel_warp_windows(np.zeros((2, 64, 10, 1), np.float32), np.ones(2))


def test_warp_only_batches_keep_integer_labels_and_warp_training_windows():
    pytest.importorskip("tensorflow")
    from model_export.loso_variants import soft_batches
    from model_export.train import _Batches

    rng = np.random.default_rng(1)
    X = rng.standard_normal((32, 128, 8, 1)).astype(np.float16)
    y = np.arange(32) % 10
    base = _Batches(X, y, 16, 1, False, 0)
    xb0, yb0 = base[0]
    v = Variant(mel_warp=0.15)
    assert v.per_batch and not v.soft and v.label("diverse") == "diverse+warp0.15"
    xw, yw = soft_batches(base, 10, v, train=True)[0]
    np.testing.assert_array_equal(yw, yb0)
    assert xw.shape == xb0.shape and not np.allclose(xw, xb0)
    with pytest.raises(InvalidInputError):
        Variant(mel_warp=0.5)


def test_ablation_splits_a_recipe_run_at_two_epoch_budgets_and_prints_curves(tmp_path, capsys):
    """The same row name from an 8- and a 16-epoch run becomes two rows (name@8ep, name@16ep)
    instead of the later run overwriting the earlier; --curves averages the watched held-out
    figures per epoch over folds and names the folds whose validation loss chose that epoch."""
    from model_export import loso_ablation

    a = {"epochs": 8, "K": 384, "rows": [_row("lucas", "diverse", 0.6, 0.7), _row("theo", "diverse", 0.8, 0.8)]}
    hist = {"lucas/diverse": [{"val_loss": 0.5, "held_out_h1": 0.5, "held_out_mAP": 0.6},
                              {"val_loss": 0.3, "held_out_h1": 0.7, "held_out_mAP": 0.8}],
            "theo/diverse": [{"val_loss": 0.4, "held_out_h1": 0.9, "held_out_mAP": 0.9},
                             {"val_loss": 0.6, "held_out_h1": 0.8, "held_out_mAP": 0.7}]}
    b = {"epochs": 16, "K": 384, "rows": [_row("lucas", "diverse", 0.7, 0.75)], "histories": hist}
    (tmp_path / "a.json").write_text(json.dumps(a)), (tmp_path / "b.json").write_text(json.dumps(b))
    models = loso_ablation.collect([tmp_path / "a.json", tmp_path / "b.json"])
    assert set(models) == {"diverse@8ep", "diverse@16ep"}
    md = loso_ablation.ablation_markdown(models, "diverse@8ep")
    line = next(x for x in md.splitlines() if x.startswith("| diverse@16ep |"))
    assert "+0.100 (n=1, 1 up)" in line
    assert loso_ablation.main([str(tmp_path / "b.json"), "--curves"]) == 0
    out = capsys.readouterr().out
    assert "| diverse | 1 | 2 | 0.700 | 0.750 | 0.450 | theo |" in out
    assert "| diverse | 2 | 2 | 0.750 | 0.750 | 0.450 | lucas |" in out
