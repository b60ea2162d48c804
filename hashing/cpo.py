"""Content preserving operations (CPOs): the one module for training augmentation, evaluation,
the demo and the tests.

Every operation takes a float32 mono array and its sample rate (where it matters) and returns a
float32 mono array of the *same length* at the same rate. Values are kept in [-1, 1] (clipped,
as writing the result to a 16-bit file would) unless an operation says otherwise.

Paper (Sec. V): training CPOs are amplitude change, added noise, resampling, requantization and
MP3 compression; test CPOs are -3 dB, +3 dB, MP3 compression and "R.Q" (resampling
16 kHz -> 8 kHz -> 16 kHz). The paper gives no MP3 bitrate, noise level or requantization depth:
those values are ours and named here.

* :data:`PAPER_TEST_CPOS`: "-3dB", "+3dB", "MP3" (128 kbps CBR: LAME's default bitrate; ours),
  "R.Q" (16 -> 8 -> 16 kHz, soxr HQ).
* :data:`EXTRA_TEST_CPOS`: "noise20dB", "noise10dB" (white Gaussian noise at that SNR, fixed
  seeds so evaluations are reproducible).
* :func:`random_cpo` draws one training CPO.

Degradations real copies of a recording go through (issue 12, item 3): :func:`telephone_band`,
:func:`resample_roundtrip` (through 8 kHz), :func:`mp3_roundtrip` (32-128 kbps),
:func:`add_noise_snr` (white), :func:`babble_noise`, :func:`gain_db`, :func:`speed_change`,
:func:`pitch_shift`, :func:`time_shift` and :func:`crop`. Two of them change the length on
purpose: :func:`crop` (an excerpt) and :func:`speed_change` (a faster copy is shorter).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable

import numpy as np
import soundfile as sf
import soxr

from speechvault import paper
from speechvault.errors import InvalidInputError, RuntimeMissingError

__all__ = [
    "CPO",
    "gain_db",
    "add_noise_snr",
    "resample_roundtrip",
    "requantize",
    "mp3_roundtrip",
    "mp3_compression_level",
    "time_shift",
    "crop",
    "telephone_band",
    "babble_noise",
    "speed_change",
    "pitch_shift",
    "compose",
    "PAPER_TEST_CPOS",
    "EXTRA_TEST_CPOS",
    "ALL_TEST_CPOS",
    "random_cpo",
    "hard_cpo",
    "PAPER_MP3_KBPS",
]

#: MP3 bitrate of the "MP3" test CPO (ours: the paper gives none; 128 kbps is LAME's default).
PAPER_MP3_KBPS = 128


def _f32(y: np.ndarray) -> np.ndarray:
    a = np.asarray(y, dtype=np.float32)
    if a.ndim != 1:
        raise InvalidInputError(f"CPOs expect a 1-D mono signal, got shape {a.shape}")
    return a


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _fit_length(z: np.ndarray, n: int) -> np.ndarray:
    if z.shape[0] >= n:
        return z[:n]
    return np.pad(z, (0, n - z.shape[0]))


@dataclass(frozen=True)
class CPO:
    """A named operation ``(y, sr) -> y'``; callable."""

    name: str
    fn: Callable[[np.ndarray, int], np.ndarray]

    def __call__(self, y: np.ndarray, sr: int = paper.SAMPLE_RATE) -> np.ndarray:
        return self.fn(y, sr)


# --------------------------------------------------------------------------- operations


def gain_db(y: np.ndarray, db: float, *, clip: bool = True) -> np.ndarray:
    """Amplitude change by ``db`` decibels (``y * 10**(db/20)``); clipped to [-1, 1] by default
    (what storing the result as 16-bit PCM does)."""
    z = _f32(y) * np.float32(10.0 ** (db / 20.0))
    return np.clip(z, -1.0, 1.0) if clip else z


def add_noise_snr(y: np.ndarray, snr_db: float, rng=None, *, clip: bool = True) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` relative to the signal's mean power (measured over
    the whole array, pauses included). ``rng``: Generator, seed or None. Digital silence in,
    digital silence out."""
    a = _f32(y)
    p_sig = float(np.mean(np.square(a, dtype=np.float64))) if a.size else 0.0
    if p_sig <= 0.0:
        return a.copy()
    sigma = np.sqrt(p_sig / 10.0 ** (snr_db / 10.0))
    z = a + (_rng(rng).standard_normal(a.shape[0]) * sigma).astype(np.float32)
    return np.clip(z, -1.0, 1.0) if clip else z


def resample_roundtrip(y: np.ndarray, sr: int = paper.SAMPLE_RATE, low_sr: int = paper.CPO_RESAMPLE_LOW_RATE) -> np.ndarray:
    """Resample to ``low_sr`` and back (soxr HQ): the paper's "R.Q" for 16 -> 8 -> 16 kHz.
    Removes content above ``low_sr/2``; length kept."""
    a = _f32(y)
    if int(low_sr) == int(sr):
        return a.copy()
    down = soxr.resample(a, int(sr), int(low_sr), quality="HQ")
    up = soxr.resample(down, int(low_sr), int(sr), quality="HQ")
    return np.clip(_fit_length(np.asarray(up, np.float32), a.shape[0]), -1.0, 1.0)


def requantize(y: np.ndarray, bits: int = 8) -> np.ndarray:
    """Requantization 16 -> ``bits`` -> 16 bit: round to the ``bits``-bit grid of step
    ``2/2**bits`` (error <= step/2 inside the range), then back on the 16-bit grid."""
    if not 2 <= int(bits) <= 24:
        raise InvalidInputError("bits must be in 2..24")
    a = _f32(y).astype(np.float64)
    q16 = np.clip(np.round(a * 32768.0), -32768, 32767) / 32768.0
    scale = float(2 ** (int(bits) - 1))
    q = np.clip(np.round(q16 * scale), -scale, scale - 1) / scale
    return q.astype(np.float32)


def mp3_compression_level(bitrate_kbps: float, sr: int) -> float:
    """soundfile ``compression_level`` giving ``bitrate_kbps`` in libsndfile's CBR mode.

    libsndfile 1.2 (mpeg_l3_encode.c) maps level c in [0, 1] to
    ``bitrate = max_rate - int(c * (max_rate - 8))`` with max_rate 320 kbps for sr >= 32 kHz,
    160 for sr >= 16 kHz, else 64; LAME then uses the nearest legal bitrate.
    """
    max_rate = 320 if sr >= 32000 else 160 if sr >= 16000 else 64
    kbps = float(min(max(bitrate_kbps, 16), max_rate))
    return min(1.0, max(0.0, (max_rate - kbps + 0.5) / (max_rate - 8)))


def mp3_roundtrip(y: np.ndarray, sr: int = paper.SAMPLE_RATE, bitrate_kbps: float = PAPER_MP3_KBPS) -> np.ndarray:
    """Encode to MP3 (CBR ``bitrate_kbps``, LAME via libsndfile, in memory) and decode back.

    libsndfile writes the LAME gapless header, so at >= 48 kbps (16 kHz) decoding returns the
    same number of samples with no delay. At lower bitrates the decoded stream is longer (the
    encoder delay is not removed, e.g. +1536 samples at 32 kbps): the delay is then found by
    cross-correlation and removed, so the result stays time-aligned with the input.
    """
    a = _f32(y)
    buf = io.BytesIO()
    sf.write(
        buf, np.clip(a, -1.0, 1.0), int(sr), format="MP3",
        compression_level=mp3_compression_level(bitrate_kbps, int(sr)), bitrate_mode="CONSTANT",
    )
    buf.seek(0)
    z, _ = sf.read(buf, dtype="float32", always_2d=True)
    z = z.mean(axis=1).astype(np.float32)
    if z.shape[0] > a.shape[0]:
        z = z[_best_lag(a, z, z.shape[0] - a.shape[0]) :]
    return np.clip(_fit_length(z, a.shape[0]), -1.0, 1.0)


def _best_lag(x: np.ndarray, z: np.ndarray, max_lag: int) -> int:
    """Lag d in [0, max_lag] maximising sum_n x[n] * z[n + d] (FFT cross-correlation)."""
    n = 1 << int(np.ceil(np.log2(x.shape[0] + z.shape[0])))
    xc = np.fft.irfft(np.conj(np.fft.rfft(x, n)) * np.fft.rfft(z, n), n)
    return int(np.argmax(xc[: max_lag + 1]))


def time_shift(y: np.ndarray, sr: int = paper.SAMPLE_RATE, seconds: float = 0.05) -> np.ndarray:
    """Shift by ``seconds`` (positive: delay, zeros in front; negative: advance, zeros at the
    end); length kept, so samples shifted past an end are lost."""
    a = _f32(y)
    k = int(round(seconds * sr))
    if k == 0:
        return a.copy()
    out = np.zeros_like(a)
    if k > 0:
        out[k:] = a[: max(0, a.shape[0] - k)]
    else:
        out[: max(0, a.shape[0] + k)] = a[-k:]
    return out


def crop(y: np.ndarray, sr: int = paper.SAMPLE_RATE, start: float = 0.0,
         duration: float | None = None) -> np.ndarray:
    """The excerpt ``[start, start + duration)`` seconds (to the end when ``duration`` is None).

    Unlike the other operations the result is *shorter*: it is what a user cuts out of a
    recording (``sox rec.wav ex.wav trim START DUR``) to look the recording up by."""
    a = _f32(y)
    if start < 0 or (duration is not None and duration <= 0):
        raise InvalidInputError("crop needs start >= 0 and duration > 0")
    i = int(round(start * sr))
    j = a.shape[0] if duration is None else min(a.shape[0], i + int(round(duration * sr)))
    if i >= a.shape[0]:
        raise InvalidInputError(f"crop starts at {start:.3f} s, after the end ({a.shape[0] / sr:.3f} s)")
    return a[i:j].copy()


#: Telephone pass band (ITU-T G.712 channel: 300-3400 Hz), carried at 8 kHz.
TELEPHONE_BAND_HZ = (300.0, 3400.0)
TELEPHONE_RATE = 8000
#: Width of the raised-cosine edges of the telephone band, placed *inside* the band so nothing
#: outside 300-3400 Hz passes (a real channel rolls off about this gently, not as a brick wall).
TELEPHONE_EDGE_HZ = 100.0


def telephone_band(y: np.ndarray, sr: int = paper.SAMPLE_RATE) -> np.ndarray:
    """What a phone call keeps: resampled to 8 kHz, band-passed to 300-3400 Hz, back to ``sr``.

    The band-pass is a zero-phase FFT mask over the whole signal (1 inside the band, raised-cosine
    edges 100 Hz wide just inside 300 and 3400 Hz, 0 outside): no delay, so the result stays
    time-aligned with the input, and no scipy. Length kept."""
    a = _f32(y)
    if a.size == 0:
        return a.copy()
    low = _resample(a, int(sr), TELEPHONE_RATE)
    spec = np.fft.rfft(low.astype(np.float64))
    freqs = np.fft.rfftfreq(low.shape[0], 1.0 / TELEPHONE_RATE)
    spec *= _band_mask(freqs, *TELEPHONE_BAND_HZ, TELEPHONE_EDGE_HZ)
    up = _resample(np.fft.irfft(spec, low.shape[0]).astype(np.float32), TELEPHONE_RATE, int(sr))
    return np.clip(_fit_length(up, a.shape[0]), -1.0, 1.0)


def _resample(a: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return a
    return np.asarray(soxr.resample(a, sr_in, sr_out, quality="HQ"), np.float32)


def _band_mask(f: np.ndarray, lo: float, hi: float, edge: float) -> np.ndarray:
    """1 on [lo + edge, hi - edge], raised-cosine ramps down to 0 at ``lo`` and ``hi``, 0 outside."""
    m = np.zeros_like(f)
    m[(f >= lo + edge) & (f <= hi - edge)] = 1.0
    rise = (f > lo) & (f < lo + edge)
    m[rise] = 0.5 - 0.5 * np.cos(np.pi * (f[rise] - lo) / edge)
    fall = (f > hi - edge) & (f < hi)
    m[fall] = 0.5 - 0.5 * np.cos(np.pi * (hi - f[fall]) / edge)
    return m


def babble_noise(
    y: np.ndarray, sr: int = paper.SAMPLE_RATE, snr_db: float = 10.0, rng=None, talkers=(), *,
    clip: bool = True,
) -> np.ndarray:
    """Add babble (other people talking) at ``snr_db`` relative to ``y``'s mean power.

    ``talkers``: other speech signals at ``sr`` (1-D float arrays; the caller chooses them, so an
    evaluation can keep the babble's voices apart from the voices under test). Each talker gives a
    random segment of ``len(y)`` samples (looped when shorter), normalised to equal power; the sum
    is scaled so that ``10*log10(P(y) / P(babble)) == snr_db``. Babble is harder than white noise
    for a speech fingerprint because it has speech's own spectrum and rhythm."""
    a = _f32(y)
    voices = [np.asarray(t, np.float32) for t in talkers]
    if not voices or any(v.ndim != 1 or v.size == 0 for v in voices):
        raise InvalidInputError("babble_noise needs at least one non-empty 1-D talker signal")
    p_sig = float(np.mean(np.square(a, dtype=np.float64))) if a.size else 0.0
    if p_sig <= 0.0:
        return a.copy()
    g = _rng(rng)
    mix = np.zeros(a.shape[0], np.float64)
    for v in voices:
        seg = _random_segment(v, a.shape[0], g).astype(np.float64)
        p = float(np.mean(np.square(seg)))
        if p > 0.0:
            mix += seg / np.sqrt(p)
    p_mix = float(np.mean(np.square(mix)))
    if p_mix <= 0.0:
        raise InvalidInputError("babble_noise: the talker signals are silent")
    mix *= np.sqrt(p_sig / 10.0 ** (snr_db / 10.0) / p_mix)
    z = (a + mix).astype(np.float32)
    return np.clip(z, -1.0, 1.0) if clip else z


def _random_segment(v: np.ndarray, n: int, g: np.random.Generator) -> np.ndarray:
    """``n`` consecutive samples of ``v`` from a random start, looping ``v`` when it is short."""
    reps = int(np.ceil((n + v.shape[0]) / v.shape[0]))
    start = int(g.integers(v.shape[0]))
    return np.tile(v, reps)[start : start + n]


def speed_change(y: np.ndarray, sr: int = paper.SAMPLE_RATE, factor: float = 1.03) -> np.ndarray:
    """Play ``factor`` times faster: tempo *and* pitch change together, as a tape or a resampler
    with the wrong rate does (``sox speed``). Implemented as resampling from ``sr * factor`` to
    ``sr`` (soxr HQ).

    Unlike the other operations the length changes: ``round(len(y) / factor)`` samples, because
    the recording really gets shorter (``factor > 1``) or longer."""
    a = _f32(y)
    if not 0.5 <= float(factor) <= 2.0:
        raise InvalidInputError("speed factor must be in 0.5..2")
    if float(factor) == 1.0:
        return a.copy()
    z = np.asarray(soxr.resample(a, float(sr) * float(factor), float(sr), quality="HQ"), np.float32)
    return np.clip(_fit_length(z, int(round(a.shape[0] / float(factor)))), -1.0, 1.0)


def pitch_shift(y: np.ndarray, sr: int = paper.SAMPLE_RATE, factor: float = 1.03) -> np.ndarray:
    """Raise every frequency by ``factor`` (1.03 = +3 %, about half a semitone) at the same tempo:
    what a voice changer or a pitch-corrected speed-up does. Length kept.

    Uses SoX's ``pitch`` effect (WSOLA time stretch + resampling) in a subprocess, on raw float32
    through pipes, so no file is written. Needs the ``sox`` program (Debian package sox)."""
    a = _f32(y)
    if not 0.5 <= float(factor) <= 2.0:
        raise InvalidInputError("pitch factor must be in 0.5..2")
    if float(factor) == 1.0 or a.size == 0:
        return a.copy()
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeMissingError("pitch_shift needs the sox program: install the Debian package sox")
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(int(sr))]
    cents = 1200.0 * np.log2(float(factor))
    proc = subprocess.run(
        [sox, "-V1", *raw, "-", *raw, "-", "pitch", f"{cents:.3f}"],
        input=a.astype("<f4").tobytes(), capture_output=True, check=False,
    )
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise InvalidInputError(f"sox pitch failed: {msg[-1] if msg else proc.returncode}")
    z = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    return np.clip(_fit_length(z, a.shape[0]), -1.0, 1.0)


def compose(*ops: Callable[[np.ndarray, int], np.ndarray]) -> CPO:
    """Apply ``ops`` left to right: ``compose(f, g)(y, sr) == g(f(y, sr), sr)``."""

    def run(y: np.ndarray, sr: int = paper.SAMPLE_RATE) -> np.ndarray:
        for op in ops:
            y = op(y, sr)
        return y

    return CPO("+".join(getattr(op, "name", getattr(op, "__name__", "op")) for op in ops), run)


# --------------------------------------------------------------------------- named sets

PAPER_TEST_CPOS: dict[str, CPO] = {
    "-3dB": CPO("-3dB", lambda y, sr: gain_db(y, paper.CPO_GAIN_DB[0])),
    "+3dB": CPO("+3dB", lambda y, sr: gain_db(y, paper.CPO_GAIN_DB[1])),
    "MP3": CPO("MP3", lambda y, sr: mp3_roundtrip(y, sr, PAPER_MP3_KBPS)),
    "R.Q": CPO("R.Q", lambda y, sr: resample_roundtrip(y, sr, paper.CPO_RESAMPLE_LOW_RATE)),
}

EXTRA_TEST_CPOS: dict[str, CPO] = {
    "noise20dB": CPO("noise20dB", lambda y, sr: add_noise_snr(y, 20.0, np.random.default_rng(20))),
    "noise10dB": CPO("noise10dB", lambda y, sr: add_noise_snr(y, 10.0, np.random.default_rng(10))),
}

ALL_TEST_CPOS: dict[str, CPO] = {**PAPER_TEST_CPOS, **EXTRA_TEST_CPOS}

#: Training CPO kinds (paper Sec. V) and the parameter ranges we draw from (ours).
TRAINING_KINDS = ("gain", "noise", "resample", "requantize", "mp3")


def random_cpo(rng=None, *, include_mp3: bool = True, kinds: tuple[str, ...] | None = None) -> CPO:
    """One random training CPO (paper Sec. V kinds), parameters drawn from ``rng``:

    * gain: uniform -6..+6 dB;
    * noise: white Gaussian, SNR uniform 10..40 dB (noise seed drawn from ``rng``);
    * resample: round trip via 8, 11.025 or 12 kHz;
    * requantize: 8..12 bits;
    * mp3: CBR 32, 48, 64, 96 or 128 kbps (slow: ~10 ms per second of audio; ``include_mp3``).
    """
    g = _rng(rng)
    pool = tuple(kinds) if kinds is not None else TRAINING_KINDS
    if not include_mp3:
        pool = tuple(k for k in pool if k != "mp3")
    if not pool:
        raise InvalidInputError("no CPO kinds to draw from")
    kind = pool[int(g.integers(len(pool)))]
    if kind == "gain":
        db = float(g.uniform(-6.0, 6.0))
        return CPO(f"gain{db:+.1f}dB", lambda y, sr: gain_db(y, db))
    if kind == "noise":
        snr = float(g.uniform(10.0, 40.0))
        seed = int(g.integers(2**31))
        return CPO(f"noise{snr:.0f}dB", lambda y, sr: add_noise_snr(y, snr, np.random.default_rng(seed)))
    if kind == "resample":
        low = int(g.choice([8000, 11025, 12000]))
        return CPO(f"resample{low}", lambda y, sr: resample_roundtrip(y, sr, low))
    if kind == "requantize":
        bits = int(g.integers(8, 13))
        return CPO(f"requant{bits}", lambda y, sr: requantize(y, bits))
    if kind == "mp3":
        kbps = int(g.choice([32, 48, 64, 96, 128]))
        return CPO(f"mp3_{kbps}k", lambda y, sr: mp3_roundtrip(y, sr, kbps))
    raise InvalidInputError(f"unknown CPO kind {kind!r}")


def hard_cpo(rng) -> CPO:
    """One random training CPO weighted towards what breaks identification (ours): the views of
    the NT-Xent identify recipe and the distortions the DDA fingerprint is fitted to ignore.

    40 % noise (12-35 dB SNR), 15 % MP3, 15 % resampling round trip, 10 % requantisation,
    10 % resampling then noise, 10 % MP3 then noise; each drawn by ``hashing.cpo.random_cpo``.
    """
    g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    r = float(g.random())

    def noise():
        snr = float(g.uniform(12.0, 35.0))
        seed = int(g.integers(2**31))
        return CPO(f"noise{snr:.0f}dB", lambda y, sr: add_noise_snr(y, snr, np.random.default_rng(seed)))

    if r < 0.40:
        return noise()
    if r < 0.55:
        return random_cpo(g, kinds=("mp3",))
    if r < 0.70:
        return random_cpo(g, kinds=("resample",))
    if r < 0.80:
        return random_cpo(g, kinds=("requantize",))
    if r < 0.90:
        return compose(random_cpo(g, kinds=("resample",)), noise())
    return compose(random_cpo(g, kinds=("mp3",)), noise())
