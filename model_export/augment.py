"""Speaker-diverse training augmentation in numpy (issue 16): new voices from the few at hand.

The category stage (h1) was trained on four FSDD speakers and fails on one clip in three from a
new voice. No larger digit corpus can be brought here, so the training clips are turned into
other "speakers" and other rooms before they reach the features:

* :func:`vtlp` - vocal-tract-length perturbation (Jaitly & Hinton 2013): the spectrum's
  frequency axis is warped piecewise-linearly by ``alpha`` (formants move, as between a
  short and a long vocal tract);
* :func:`pitch_shift` - phase-vocoder stretch then resampling: pitch (and formants) move,
  duration stays;
* :func:`time_stretch` - phase-vocoder tempo change: duration moves, pitch stays;
* :func:`synth_rir` / :func:`reverberate` - a room impulse response synthesised as
  exponentially decaying noise with sparse early reflections (RT60 drawn), convolved by FFT;
* :func:`add_colored_noise` - white, pink or brown noise at a drawn SNR;
* :func:`speaker_chain` - a factory of the random chain above followed by the paper's training
  CPO (``hashing.cpo.random_cpo``), in the form ``model_export.dataset.compute_windows`` takes.

* :func:`mel_warp_windows` - the same VTLP warp on finished feature windows (Mel axis), drawn
  anew for every batch of training.

SpecAugment-style masking of the feature windows is ``model_export.dataset.spec_augment``.
Every function is deterministic for a given ``numpy.random.Generator`` and keeps the length of
its input unless it says otherwise (``time_stretch`` changes it on purpose).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from speechvault.errors import InvalidInputError

__all__ = ["stft", "istft", "speed", "vtlp", "vtlp_source", "mel_warp_windows", "time_stretch",
           "pitch_shift", "synth_rir", "reverberate", "add_colored_noise", "ChainRanges",
           "speaker_chain"]

N_FFT = 512
HOP = 128


def _signal(y: np.ndarray) -> np.ndarray:
    a = np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise InvalidInputError(f"expected a non-empty 1-D signal, got shape {a.shape}")
    return a


def stft(y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Complex STFT (frames, n_fft//2+1), periodic Hann window, padded by n_fft on both sides
    so that :func:`istft` reconstructs every sample."""
    a = np.pad(_signal(y), (n_fft, n_fft + hop))
    n = 1 + (len(a) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    win = np.hanning(n_fft + 1)[:-1]
    return np.fft.rfft(a[idx] * win, axis=1)


def istft(S: np.ndarray, length: int, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`stft`, cut to ``length`` samples."""
    win = np.hanning(n_fft + 1)[:-1]
    frames = np.fft.irfft(S, n=n_fft, axis=1) * win
    n_out = n_fft + hop * (len(frames) - 1)
    out = np.zeros(n_out)
    norm = np.zeros(n_out)
    for i, f in enumerate(frames):
        out[i * hop : i * hop + n_fft] += f
        norm[i * hop : i * hop + n_fft] += win ** 2
    out = out / np.maximum(norm, 1e-8)
    return out[n_fft : n_fft + length]


def speed(y: np.ndarray, factor: float) -> np.ndarray:
    """Resample by linear interpolation: ``factor`` > 1 is faster and higher (shorter output,
    ``round(len / factor)`` samples); tempo, pitch and formants move together."""
    a = _signal(y)
    if not 0.25 <= factor <= 4.0:
        raise InvalidInputError(f"speed factor {factor} out of range 0.25..4")
    n_out = max(1, int(round(len(a) / factor)))
    return np.interp(np.arange(n_out) * factor, np.arange(len(a)), a).astype(np.float32)


def vtlp(y: np.ndarray, sr: int, alpha: float, f_hi: float = 4800.0) -> np.ndarray:
    """Vocal-tract-length perturbation: output frequency f takes the input's content at
    w^-1(f), with w(f) = alpha f up to ``f_hi * min(alpha, 1) / alpha`` and a straight line to
    Nyquist above (Jaitly & Hinton 2013). alpha > 1 moves the formants up (a shorter tract).
    The complex spectrum is interpolated bin-wise; length and level are kept."""
    a = _signal(y)
    if not 0.5 <= alpha <= 2.0:
        raise InvalidInputError(f"VTLP alpha {alpha} out of range 0.5..2")
    nyq = sr / 2.0
    S = stft(a)
    src = vtlp_source(np.linspace(0.0, nyq, S.shape[1]), alpha, nyq, f_hi)
    bins = src / nyq * (S.shape[1] - 1)
    lo = np.clip(np.floor(bins).astype(int), 0, S.shape[1] - 1)
    hi = np.clip(lo + 1, 0, S.shape[1] - 1)
    w = bins - lo
    W = (1 - w) * S[:, lo] + w * S[:, hi]
    z = istft(W, len(a))
    peak_in, peak_out = np.abs(a).max(), np.abs(z).max()
    if peak_out > 0:
        z *= peak_in / peak_out
    return z.astype(np.float32)


def vtlp_source(f: np.ndarray, alpha: float, f_top: float, f_hi: float = 4800.0) -> np.ndarray:
    """The inverse VTLP warp: the input frequency whose warped image is ``f`` (Hz), for the
    piecewise-linear w of :func:`vtlp` on 0..``f_top`` (the upper edge stays fixed)."""
    f_hi = min(f_hi, f_top * 0.95)
    f0 = f_hi * min(alpha, 1.0) / alpha
    knee = alpha * f0
    f = np.asarray(f, dtype=np.float64)
    return np.where(f <= knee, f / alpha, f0 + (f - knee) * (f_top - f0) / (f_top - knee))


def mel_warp_windows(X: np.ndarray, alphas: np.ndarray, spec=None, f_hi: float = 4800.0) -> np.ndarray:
    """VTLP applied to finished model windows (n, n_mels, frames, 1): band m takes the
    content at the Mel position of w^-1(centre of m), linearly interpolated between bands
    (edge bands repeat). A fresh ``alpha`` per window and per epoch costs no audio decoding,
    so every epoch sees new "vocal tracts", where :func:`speaker_chain` fixes two per clip
    when the cache is built. Padded frames (all zero) stay zero. Returns a float32 copy."""
    from hashing.features import FeatureSpec, hz_to_mel, mel_to_hz

    spec = spec if spec is not None else FeatureSpec(input_mode="native")
    n_mels = int(spec.n_mels)
    if X.ndim != 4 or X.shape[1] != n_mels:
        raise InvalidInputError(f"expected windows (n, {n_mels}, frames, c), got {X.shape}")
    lo_mel, hi_mel = float(hz_to_mel(spec.fmin)), float(hz_to_mel(spec.fmax_hz))
    step = (hi_mel - lo_mel) / (n_mels + 1)
    centres = mel_to_hz(lo_mel + step * np.arange(1, n_mels + 1))
    out = np.empty(X.shape, np.float32)
    for i, alpha in enumerate(np.asarray(alphas, np.float64)):
        src = vtlp_source(centres, float(alpha), spec.fmax_hz, f_hi)
        pos = np.clip((hz_to_mel(src) - lo_mel) / step - 1.0, 0.0, n_mels - 1.0)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n_mels - 1)
        w = (pos - lo).astype(np.float32)[:, None, None]
        x = np.asarray(X[i], np.float32)
        out[i] = (1.0 - w) * x[lo] + w * x[hi]
    return out


def time_stretch(y: np.ndarray, rate: float, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Phase-vocoder tempo change: ``rate`` > 1 is faster (output ``round(len / rate)``
    samples), the pitch stays."""
    a = _signal(y)
    if not 0.5 <= rate <= 2.0:
        raise InvalidInputError(f"stretch rate {rate} out of range 0.5..2")
    S = stft(a, n_fft, hop)
    steps = np.arange(0, S.shape[0] - 1, rate)
    omega = 2 * np.pi * hop * np.arange(S.shape[1]) / n_fft   # expected phase advance per hop
    phase = np.angle(S[0])
    out = np.empty((len(steps), S.shape[1]), dtype=complex)
    for k, t in enumerate(steps):
        i = int(t)
        frac = t - i
        mag = (1 - frac) * np.abs(S[i]) + frac * np.abs(S[i + 1])
        out[k] = mag * np.exp(1j * phase)
        dphi = np.angle(S[i + 1]) - np.angle(S[i]) - omega
        dphi -= 2 * np.pi * np.round(dphi / (2 * np.pi))
        phase = phase + omega + dphi
    n_out = max(1, int(round(len(a) / rate)))
    return istft(out, n_out, n_fft, hop).astype(np.float32)


def pitch_shift(y: np.ndarray, semitones: float) -> np.ndarray:
    """Pitch by ``semitones`` with the duration kept: stretch by 2^(s/12), then resample back
    (formants move with the pitch, as in librosa's ``pitch_shift``)."""
    a = _signal(y)
    f = 2.0 ** (float(semitones) / 12.0)
    z = speed(time_stretch(a, 1.0 / f), f)
    out = np.zeros(len(a), np.float32)
    out[: min(len(a), len(z))] = z[: len(a)]
    return out


def synth_rir(rng: np.random.Generator, sr: int, rt60: float, drr_db: float = 0.0,
              n_early: int = 6) -> np.ndarray:
    """A room impulse response: a unit direct path, ``n_early`` sparse reflections within the
    first 50 ms and a Gaussian-noise tail decaying 60 dB in ``rt60`` seconds, the tail's energy
    ``drr_db`` below the direct path's. Length 1.2 * rt60 (at least 50 ms)."""
    if not 0.05 <= rt60 <= 2.0:
        raise InvalidInputError(f"RT60 {rt60} out of range 0.05..2 s")
    n = max(int(0.05 * sr), int(1.2 * rt60 * sr))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * 10.0 ** (-3.0 * t / rt60)
    tail[: int(0.002 * sr)] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / max(np.sum(tail ** 2), 1e-12))
    h = tail
    h[0] = 1.0
    pos = rng.integers(int(0.003 * sr), int(0.05 * sr), size=n_early)
    h[pos] += rng.uniform(-0.6, 0.6, size=n_early)
    return h.astype(np.float64)


def reverberate(y: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``y`` convolved with ``rir`` (FFT), cut to the input length, peak level kept."""
    a = _signal(y)
    n = len(a) + len(rir) - 1
    nfft = 1 << (n - 1).bit_length()
    z = np.fft.irfft(np.fft.rfft(a, nfft) * np.fft.rfft(rir, nfft), nfft)[: len(a)]
    peak = np.abs(z).max()
    if peak > 0:
        z *= np.abs(a).max() / peak
    return z.astype(np.float32)


def add_colored_noise(y: np.ndarray, rng: np.random.Generator, snr_db: float,
                      color: str = "white") -> np.ndarray:
    """``y`` plus noise at ``snr_db`` (signal power over the whole input); ``color``: white
    (flat), pink (1/f power) or brown (1/f^2 power)."""
    a = _signal(y)
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}.get(color)
    if exponent is None:
        raise InvalidInputError(f"unknown noise colour {color!r}: white, pink or brown")
    spec = np.fft.rfft(rng.standard_normal(len(a)))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spec / f ** exponent, len(a))
    p_sig = np.mean(a ** 2)
    p_noise = np.mean(noise ** 2)
    if p_sig <= 0 or p_noise <= 0:
        return a.astype(np.float32)
    noise *= np.sqrt(p_sig / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (a + noise).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ChainRanges:
    """Parameter ranges (uniform) and probabilities of :func:`speaker_chain` (ours; VTLP range
    as in Jaitly & Hinton, RT60 of small rooms, SNRs of the paper's noise CPO)."""

    vtlp_alpha: tuple[float, float] = (0.85, 1.18)
    p_pitch: float = 0.5
    pitch_semitones: tuple[float, float] = (-3.0, 3.0)
    p_tempo: float = 0.5
    tempo_rate: tuple[float, float] = (0.8, 1.25)
    p_reverb: float = 0.4
    rt60: tuple[float, float] = (0.1, 0.6)
    drr_db: tuple[float, float] = (-3.0, 9.0)
    p_noise: float = 0.3
    snr_db: tuple[float, float] = (10.0, 30.0)
    cpo: bool = True          # end with the paper's training CPO (hashing.cpo.random_cpo)


def speaker_chain(ranges: ChainRanges = ChainRanges()) -> Callable:
    """A CPO factory (``rng -> hashing.cpo.CPO``) for ``compute_windows``: VTLP (always), then
    with their probabilities a pitch shift, a tempo change, a synthetic room and coloured
    noise, then the paper's random training CPO. The name lists what was drawn."""
    r = ranges

    def factory(rng: np.random.Generator):
        from hashing.cpo import CPO, random_cpo

        alpha = float(rng.uniform(*r.vtlp_alpha))
        semis = float(rng.uniform(*r.pitch_semitones)) if rng.random() < r.p_pitch else None
        rate = float(rng.uniform(*r.tempo_rate)) if rng.random() < r.p_tempo else None
        room = (float(rng.uniform(*r.rt60)), float(rng.uniform(*r.drr_db))) if rng.random() < r.p_reverb else None
        noise = ((float(rng.uniform(*r.snr_db)), str(rng.choice(["white", "pink", "brown"])))
                 if rng.random() < r.p_noise else None)
        seeds = rng.integers(1 << 62, size=2)   # drawn now: each call of run is the same
        cpo = random_cpo(rng) if r.cpo else None

        def run(y: np.ndarray, sr: int) -> np.ndarray:
            z = vtlp(y, sr, alpha)
            if semis is not None:
                z = pitch_shift(z, semis)
            if rate is not None:
                z = time_stretch(z, rate)
            if room is not None:
                z = reverberate(z, synth_rir(np.random.default_rng(seeds[0]), sr, *room))
            if noise is not None:
                z = add_colored_noise(z, np.random.default_rng(seeds[1]), *noise)
            z = np.clip(z, -1.0, 1.0).astype(np.float32)
            return np.asarray(cpo(z, sr), np.float32) if cpo is not None else z

        parts = [f"vtlp{alpha:.2f}"] + ([f"pitch{semis:+.1f}"] if semis is not None else []) \
            + ([f"tempo{rate:.2f}"] if rate is not None else []) \
            + ([f"rir{room[0]:.2f}"] if room else []) + ([f"{noise[1]}{noise[0]:.0f}dB"] if noise else []) \
            + ([cpo.name] if cpo is not None else [])
        return CPO("+".join(parts), run)

    factory.__name__ = "speaker_chain"
    return factory
