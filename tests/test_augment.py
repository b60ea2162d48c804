"""model_export.augment: shapes, determinism under a seed, and that each perturbation really
moves what it claims to move (formants, pitch, duration, reverberation, SNR)."""

from __future__ import annotations

import numpy as np
import pytest

from model_export import augment as A
from speechvault.errors import InvalidInputError

SR = 16000


def _harmonic(f0: float = 150.0, seconds: float = 0.8, n_harm: int = 20) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, n_harm + 1))
    return (0.3 * y / np.abs(y).max() * np.hanning(len(t))).astype(np.float32)


def _centroid(y: np.ndarray) -> float:
    mag = np.abs(np.fft.rfft(y))
    f = np.fft.rfftfreq(len(y), 1 / SR)
    return float((mag * f).sum() / mag.sum())


def _f0(y: np.ndarray) -> float:
    """Strongest spectral peak below 400 Hz (the fundamental of _harmonic)."""
    mag = np.abs(np.fft.rfft(y * np.hanning(len(y)), 8 * len(y)))
    f = np.fft.rfftfreq(8 * len(y), 1 / SR)
    band = (f > 60) & (f < 400)
    return float(f[band][np.argmax(mag[band])])


def test_stft_roundtrip_reconstructs_the_signal():
    y = _harmonic()
    z = A.istft(A.stft(y), len(y))
    assert z.shape == y.shape
    assert np.max(np.abs(z - y)) < 1e-6


@pytest.mark.parametrize("alpha", [0.85, 1.15])
def test_vtlp_moves_the_spectrum_in_the_direction_of_alpha(alpha):
    y = _harmonic()
    z = A.vtlp(y, SR, alpha)
    assert z.shape == y.shape and z.dtype == np.float32
    ratio = _centroid(z) / _centroid(y)
    assert (ratio > 1.05) if alpha > 1 else (ratio < 0.95), ratio
    np.testing.assert_allclose(A.vtlp(y, SR, 1.0), y, atol=1e-5)


def test_pitch_shift_moves_f0_and_keeps_duration():
    y = _harmonic(150.0)
    up = A.pitch_shift(y, 3.0)
    down = A.pitch_shift(y, -3.0)
    assert up.shape == y.shape == down.shape
    assert _f0(y) == pytest.approx(150.0, rel=0.02)
    assert _f0(up) == pytest.approx(150.0 * 2 ** (3 / 12), rel=0.04)
    assert _f0(down) == pytest.approx(150.0 * 2 ** (-3 / 12), rel=0.04)


def test_time_stretch_changes_duration_not_pitch():
    y = _harmonic(200.0)
    z = A.time_stretch(y, 1.25)
    assert len(z) == round(len(y) / 1.25)
    assert _f0(z) == pytest.approx(200.0, rel=0.04)


def test_speed_changes_length_and_pitch_together():
    y = _harmonic(150.0)
    z = A.speed(y, 1.2)
    assert len(z) == round(len(y) / 1.2)
    assert _f0(z) == pytest.approx(180.0, rel=0.04)


def test_synth_rir_decays_and_reverb_keeps_length_and_peak():
    h = A.synth_rir(np.random.default_rng(0), SR, rt60=0.4)
    assert h[0] == 1.0 and len(h) == int(1.2 * 0.4 * SR)
    e = h[int(0.05 * SR):] ** 2
    first, last = e[: len(e) // 4].sum(), e[-len(e) // 4:].sum()
    assert last < first * 1e-3
    y = _harmonic()
    z = A.reverberate(y, h)
    assert z.shape == y.shape
    assert np.abs(z).max() == pytest.approx(np.abs(y).max(), rel=1e-5)
    assert not np.allclose(z, y, atol=1e-3)


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_colored_noise_hits_the_snr(color):
    y = _harmonic()
    z = A.add_colored_noise(y, np.random.default_rng(1), 10.0, color)
    noise = z - y
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.05)


def test_noise_colours_differ_in_slope():
    y = np.zeros(SR, np.float32)
    y[::100] = 0.5
    low = {}
    for color in ("white", "brown"):
        n = A.add_colored_noise(y, np.random.default_rng(2), 0.0, color) - y
        mag = np.abs(np.fft.rfft(n)) ** 2
        low[color] = mag[1:200].sum() / mag.sum()
    assert low["brown"] > 10 * low["white"]


def test_speaker_chain_is_deterministic_under_a_seed_and_varies_across_seeds():
    y = _harmonic()
    f = A.speaker_chain()
    a1 = f(np.random.default_rng([3, 0, 7]))
    a2 = f(np.random.default_rng([3, 0, 7]))
    b = f(np.random.default_rng([3, 1, 7]))
    assert a1.name == a2.name
    za, za2 = a1(y, SR), a2(y, SR)
    np.testing.assert_array_equal(za, za2)
    np.testing.assert_array_equal(a1(y, SR), za)  # calling again draws nothing new
    assert za.dtype == np.float32 and np.all(np.abs(za) <= 1.0)
    zb = b(y, SR)
    assert za.shape != zb.shape or not np.allclose(za, zb)


def test_bad_parameters_raise_invalid_input():
    y = _harmonic()
    with pytest.raises(InvalidInputError):
        A.vtlp(y, SR, 3.0)
    with pytest.raises(InvalidInputError):
        A.time_stretch(y, 0.1)
    with pytest.raises(InvalidInputError):
        A.add_colored_noise(y, np.random.default_rng(0), 10, "purple")
    with pytest.raises(InvalidInputError):
        A.speed(np.zeros((2, 2)), 1.0)
