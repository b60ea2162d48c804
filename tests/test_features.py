"""hashing.features: eq. 1-7 against librosa (test-only dependency), model_windows contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hashing.audio import load_audio
from hashing.features import (
    FeatureSpec,
    frame_signal,
    frames_per_clip,
    hamming_window,
    hz_to_mel,
    input_shape,
    log_mel_spectrogram,
    mel_filterbank,
    mel_to_hz,
    model_windows,
    pre_emphasis,
    resize_bilinear,
    trim_bounds,
    window_starts,
)
from speechvault import paper
from speechvault.errors import InvalidInputError

librosa = pytest.importorskip("librosa")

SR = paper.SAMPLE_RATE


def librosa_log_mel(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The same pipeline built from librosa parts (pre-emphasis applied by us, same floors)."""
    x = pre_emphasis(y, spec.pre_emphasis).astype(np.float32)
    mel = librosa.feature.melspectrogram(
        y=x, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length,
        window=hamming_window(spec.n_fft, spec.hamming_alpha, spec.periodic_window),
        center=True, pad_mode="constant", power=2.0, n_mels=spec.n_mels,
        fmin=spec.fmin, fmax=spec.fmax_hz, htk=True, norm=None,
    )
    logm = np.log(np.maximum(mel.astype(np.float64), spec.log_floor))
    if spec.top_db is not None:
        logm = np.maximum(logm, logm.max() - spec.top_db * np.log(10) / 10)
    return logm


def cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ----------------------------------------------------------------------------- eq. 1-5


def test_mel_scale_eq1():
    assert hz_to_mel(0.0) == 0.0
    assert hz_to_mel(700.0) == pytest.approx(2595 * np.log10(2))
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.1)  # the scale's anchor
    f = np.linspace(0, 8000, 101)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, atol=1e-9)
    np.testing.assert_allclose(hz_to_mel(f), librosa.hz_to_mel(f, htk=True), rtol=1e-12)


def test_hamming_window_eq3():
    n = 1024
    k = np.arange(n)
    w = hamming_window(n, 0.46)
    np.testing.assert_allclose(w, 0.54 - 0.46 * np.cos(2 * np.pi * k / (n - 1)), atol=1e-15)
    np.testing.assert_allclose(w, np.hamming(n), atol=1e-12)  # symmetric == numpy's
    np.testing.assert_allclose(hamming_window(n, 0.46, periodic=True), np.hamming(n + 1)[:-1], atol=1e-12)
    assert w[0] == pytest.approx(0.08) and w[-1] == pytest.approx(0.08)


def test_pre_emphasis():
    y = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(pre_emphasis(y, 0.97), [1.0, 2.0 - 0.97, 3.0 - 1.94])
    np.testing.assert_allclose(pre_emphasis(y, 0.0), y)


def test_frame_signal_centered():
    y = np.arange(5000, dtype=np.float64)
    fr = frame_signal(y, 1024, 512, center=True)
    assert fr.shape == (1 + 5000 // 512, 1024)
    assert fr[1, 512] == 512.0  # frame t centred on sample t*hop
    assert fr[0, :512].sum() == 0.0  # zero padding


@pytest.mark.parametrize("fmax", [None, 4000.0])
def test_mel_filterbank_matches_librosa(fmax):
    spec = FeatureSpec(fmax=fmax)
    fb = mel_filterbank(spec)
    ref = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=128, fmin=0.0, fmax=spec.fmax_hz, htk=True, norm=None)
    assert fb.shape == (128, 513)
    np.testing.assert_allclose(fb, ref, atol=1e-6)
    assert fb.max() <= 1.0 + 1e-12
    assert np.all(fb.sum(axis=1) > 0), "no empty filter with the paper's parameters"


# ----------------------------------------------------------------------------- eq. 6-7


@pytest.mark.parametrize("pre", [0.0, 0.97])
@pytest.mark.parametrize("top_db", [None, 80.0, 30.0])
def test_log_mel_matches_librosa_synthetic(speech_like, pre, top_db):
    y = speech_like(seconds=1.3, seed=3)
    spec = FeatureSpec(pre_emphasis=pre, top_db=top_db)
    ours = log_mel_spectrogram(y, spec)
    ref = librosa_log_mel(y, spec)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (128, 1 + len(y) // 512)
    # ours is float64 inside, librosa float32: 1e-3 natural-log units = 0.004 dB
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_log_mel_matches_librosa_fsdd(fsdd_file):
    y = load_audio(fsdd_file)
    for spec in (FeatureSpec(), FeatureSpec(pre_emphasis=0.97, top_db=80.0), FeatureSpec(fmax=4000.0)):
        np.testing.assert_allclose(log_mel_spectrogram(y, spec), librosa_log_mel(y, spec), atol=1e-3)


def test_log_mel_natural_log_and_floors():
    spec = FeatureSpec(top_db=None)
    z = log_mel_spectrogram(np.zeros(4000, np.float32), spec)
    np.testing.assert_allclose(z, np.log(1e-10), rtol=1e-6)  # digital silence -> absolute floor
    y = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32)
    L = log_mel_spectrogram(y, FeatureSpec(top_db=30.0))
    assert L.max() - L.min() <= 30 * np.log(10) / 10 + 1e-4


# ----------------------------------------------------------------------------- spec


def test_feature_spec_roundtrip_and_validation():
    spec = FeatureSpec(fmax=4000.0, input_mode="paper", norm_scale=4.0)
    d = spec.to_dict()
    assert FeatureSpec.from_dict(json.loads(json.dumps(d))) == spec
    assert FeatureSpec().to_dict()["n_fft"] == paper.N_FFT
    with pytest.raises(InvalidInputError):
        FeatureSpec.from_dict({**d, "bogus": 1})
    with pytest.raises(InvalidInputError):
        FeatureSpec(input_mode="image")
    with pytest.raises(InvalidInputError):
        FeatureSpec(fmax=9000.0)


def test_input_shape():
    assert input_shape(FeatureSpec()) == (128, 32, 1)
    assert frames_per_clip(FeatureSpec()) == 32
    assert input_shape(FeatureSpec(clip_seconds=2.0)) == (128, 63, 1)
    assert input_shape(FeatureSpec(input_mode="paper")) == (224, 224, 3)


# ----------------------------------------------------------------------------- model_windows


def test_model_windows_short_input(speech_like):
    spec = FeatureSpec()
    y = speech_like(seconds=0.4, seed=1, lead_silence=0.05, trail_silence=0.05)
    w = model_windows(y, spec)
    assert w.shape == (1, 128, 32, 1) and w.dtype == np.float32
    assert np.isfinite(w).all()
    # trailing frames are padding with the neutral value
    np.testing.assert_array_equal(w[0, :, -8:, 0], spec.pad_value)
    real = w[0, :, :12, 0]
    assert abs(real.mean()) < 0.1 and real.std() == pytest.approx(1.0, abs=0.1)


def test_model_windows_long_input_and_starts(speech_like):
    spec = FeatureSpec()
    y = np.concatenate([speech_like(seconds=1.0, seed=s, lead_silence=0.0, trail_silence=0.0) for s in range(4)])
    y = np.concatenate([y, speech_like(seconds=0.7, seed=9, lead_silence=0.0, trail_silence=0.0)])
    w, starts = model_windows(y, spec, return_starts=True)
    t0, t1 = trim_bounds(y, spec)
    n = t1 - t0
    n_full = n // spec.clip_samples
    tail = n - n_full * spec.clip_samples
    assert w.shape == (n_full + (tail >= 0.5 * spec.clip_samples), 128, 32, 1)
    np.testing.assert_allclose(starts, window_starts(y, spec))
    assert np.all(np.diff(starts) > 0) and starts[0] >= 0.0
    assert starts[-1] * SR + spec.clip_samples <= len(y) + 1
    # later full windows hold no padding; the first one starts with the neutral lead-in
    # (the signal has no silence before its first loud frame: <= margin / hop frames)
    assert not np.any(np.all(w[1, :, :, 0] == spec.pad_value, axis=0))
    n_lead = int(np.sum(np.all(w[0, :, :, 0] == spec.pad_value, axis=0)))
    assert 1 <= n_lead <= int(np.ceil(spec.trim_margin_seconds * SR / spec.hop_length))
    # untrimmed arithmetic helper
    np.testing.assert_allclose(window_starts(int(3.6 * SR), spec), [0.0, 1.0, 2.0, 2.6])
    np.testing.assert_allclose(window_starts(int(3.2 * SR), spec), [0.0, 1.0, 2.0])


def test_model_windows_paper_mode(speech_like):
    spec = FeatureSpec(input_mode="paper")
    y = speech_like(seconds=1.5, seed=2)
    w = model_windows(y, spec)
    assert w.shape[1:] == (224, 224, 3) and w.dtype == np.float32
    np.testing.assert_array_equal(w[..., 0], w[..., 2])
    native = model_windows(y, FeatureSpec())
    assert w.shape[0] == native.shape[0]


@pytest.mark.parametrize("db", [-3.0, 3.0, -20.0])
def test_model_windows_gain_invariant(speech_like, db):
    y = speech_like(seconds=1.6, seed=4, peak=0.3)
    g = (y * 10 ** (db / 20)).astype(np.float32)
    np.testing.assert_allclose(model_windows(g), model_windows(y), atol=1e-3)


def test_model_windows_gain_invariant_fsdd(fsdd_file):
    y = load_audio(fsdd_file)
    for db in (-3.0, 3.0):
        g = (y * 10 ** (db / 20)).astype(np.float32)
        np.testing.assert_allclose(model_windows(g), model_windows(y), atol=1e-3)


def test_model_windows_lead_in_invariant(speech_like):
    """Extra silence before/after the words barely changes the input (trim + neutral lead)."""
    y = speech_like(seconds=0.6, seed=5, lead_silence=0.0, trail_silence=0.0)
    z = np.concatenate([np.zeros(int(0.37 * SR), np.float32), y, np.zeros(int(0.2 * SR), np.float32)])
    assert cos(model_windows(z), model_windows(y)) > 0.9


def test_model_windows_silence_and_bad_input():
    w = model_windows(np.zeros(8000, np.float32))
    assert w.shape == (1, 128, 32, 1) and np.isfinite(w).all()
    with pytest.raises(InvalidInputError):
        model_windows(np.zeros(0, np.float32))
    with pytest.raises(InvalidInputError):
        model_windows(np.zeros((2, 100), np.float32))
    with pytest.raises(InvalidInputError):
        model_windows(np.array([0.0, np.nan], np.float32))


def test_different_recordings_differ_more_than_cpo_copies(fsdd_files):
    """The issue's failure mode: padded silence made different recordings alike."""
    from hashing.cpo import add_noise_snr

    ys = [load_audio(f) for f in fsdd_files[:5]]
    X = [model_windows(y)[0] for y in ys]
    cross = max(cos(X[i], X[j]) for i in range(len(X)) for j in range(i + 1, len(X)))
    noisy = min(cos(model_windows(add_noise_snr(y, 20.0, 0))[0], x) for y, x in zip(ys, X))
    assert noisy > cross


def test_resize_bilinear():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.testing.assert_allclose(resize_bilinear(a, 3, 4), a)
    np.testing.assert_allclose(resize_bilinear(np.full((5, 7), 2.5), 224, 224), 2.5)
    r = resize_bilinear(a, 6, 8)
    assert r.shape == (6, 8) and r.min() >= a.min() and r.max() <= a.max()


def test_runtime_modules_do_not_import_librosa_or_scipy():
    code = (
        "import sys, hashing.audio, hashing.features, hashing.cpo;"
        "bad=[m for m in ('librosa','scipy') if m in sys.modules];"
        "sys.exit(1 if bad else 0)"
    )
    repo = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo).returncode == 0


# ----------------------------------------------------------------------------- band_norm (issue 16)


def test_band_norm_default_keeps_old_model_dicts_and_rejects_unknown():
    """Models made before band_norm existed store no such key: they load as "none" and their
    dict (metadata, feature-cache keys) is unchanged."""
    old = FeatureSpec().to_dict()
    assert "band_norm" not in old
    assert FeatureSpec.from_dict(old).band_norm == "none"
    cm = FeatureSpec(band_norm="cmvn")
    assert cm.to_dict()["band_norm"] == "cmvn"
    assert FeatureSpec.from_dict(json.loads(json.dumps(cm.to_dict()))) == cm
    with pytest.raises(InvalidInputError):
        FeatureSpec(band_norm="pcen")


@pytest.mark.parametrize("mode", ["cmn", "cmvn"])
def test_band_norm_removes_per_band_offsets(speech_like, mode):
    """A fixed spectral colour is a per-band offset of the log-Mel: band_normalise removes it
    exactly (cmvn also a per-band scale). In model_windows padding stays neutral and each
    real band is zero-mean over time."""
    from hashing.features import band_normalise

    rng = np.random.default_rng(0)
    win = rng.standard_normal((128, 20))
    offset = rng.standard_normal((128, 1)) * 3
    np.testing.assert_allclose(band_normalise(win + offset, mode), band_normalise(win, mode), atol=1e-12)
    assert not np.allclose(band_normalise(win, "none") + offset, band_normalise(win, "none"))
    if mode == "cmvn":
        scale = np.exp(rng.standard_normal((128, 1)))
        np.testing.assert_allclose(band_normalise(win * scale, mode), band_normalise(win, mode), atol=1e-9)
    y = speech_like(seconds=0.6, seed=4, lead_silence=0.05, trail_silence=0.05)
    band = FeatureSpec(band_norm=mode)
    w = model_windows(y, band)
    assert w.shape == model_windows(y, FeatureSpec()).shape
    real = ~np.all(w[0, :, :, 0] == band.pad_value, axis=0)
    assert 0 < real.sum() < w.shape[2]  # 0.6 s: real frames then padding
    np.testing.assert_array_equal(w[0][:, ~real, 0], band.pad_value)
    np.testing.assert_allclose(w[0][:, real, 0].mean(axis=1), 0.0, atol=1e-4)
    assert not np.allclose(w, model_windows(y, FeatureSpec()), atol=0.05)


def test_band_norm_none_is_bit_identical_to_before(speech_like):
    y = speech_like(seconds=1.7, seed=5)
    np.testing.assert_array_equal(model_windows(y, FeatureSpec()),
                                  model_windows(y, FeatureSpec(band_norm="none")))


def test_trim_energy_in_cache_sized_blocks_equals_the_whole_array_formula():
    """``_frame_energy`` works in blocks with reused buffers (issue 13: 2x faster); every
    frame's value is bit for bit the plain formula's over all frames at once."""
    from hashing.features import _ENERGY_BLOCK_FRAMES, _frame_energy, frame_signal

    rng = np.random.default_rng(13)
    y = rng.standard_normal(16_000 * 8) * np.linspace(0.01, 1.0, 16_000 * 8) + 0.2
    frames = frame_signal(y, 512, 128, center=False)
    assert frames.shape[0] > 2 * _ENERGY_BLOCK_FRAMES  # several blocks and a partial one
    d = frames - frames.mean(axis=1, keepdims=True)
    assert np.array_equal(_frame_energy(frames), np.mean(d * d, axis=1))
    assert np.array_equal(_frame_energy(frames[:3]), np.mean(d[:3] * d[:3], axis=1))
