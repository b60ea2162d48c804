"""Log-Mel spectrogram (paper Sec. III-A, eq. 1-7) and THE model-input function.

numpy only at run time. Every paper value comes from :mod:`speechvault.paper`; values the paper
leaves open are marked "(ours)" with the reason.

Pipeline of :func:`log_mel_spectrogram` (the paper's steps 1-5):

1. pre-emphasis ``y[n] - c*y[n-1]`` (Step 1; the paper names it without a coefficient). The
   default is c = 0 (off, ours): measured, any c > 0 makes the input much more sensitive to
   added noise (see ``FeatureSpec.pre_emphasis``); c = 0.97 is available;
2. framing with centred frames (``n_fft//2`` zeros on both sides, like librosa ``center=True,
   pad_mode="constant"``) and the Hamming window of eq. 2-3,
   ``W(n) = (1-a) - a*cos(2*pi*n/(N-1))``, a = 0.46, N = n_fft. The paper's ``N-1`` form is the
   *symmetric* window (default); ``FeatureSpec.periodic_window=True`` gives the DFT-even form
   (``N`` in the denominator, scipy ``sym=False``);
3. energy spectrum ``|X(k)|^2`` of the n_fft-point FFT, k = 0..n_fft/2 (eq. 4);
4. triangular Mel filter bank (eq. 5) on the HTK Mel scale ``2595*log10(1+f/700)`` (eq. 1), with
   unnormalised triangles of peak 1 (``librosa.filters.mel(htk=True, norm=None)``: identical to
   1e-6), applied as ``MelSpec(m) = sum_k H_m(k)|X(k)|^2`` (eq. 6);
5. natural log (eq. 7) of ``max(MelSpec, log_floor)``, then clamped from below at
   ``max - top_db`` (dynamic-range floor, in dB of power, relative to the loudest cell;
   30 dB by default, ours: see ``FeatureSpec.top_db``).

:func:`model_windows` turns a decoded recording into model input; training, export checks,
runtime encoding and evaluation all call it, so they cannot drift apart. See its docstring for
the silence handling (trim, per-window normalisation, neutral padding).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache

import numpy as np

from hashing.threads import blas_pinned
from speechvault import paper
from speechvault.errors import InvalidInputError

__all__ = [
    "FeatureSpec",
    "pre_emphasis",
    "hamming_window",
    "frame_signal",
    "power_spectrum",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "log_mel_spectrogram",
    "trim_bounds",
    "input_shape",
    "frames_per_clip",
    "model_windows",
    "window_starts",
    "resize_bilinear",
    "band_normalise",
    "BAND_NORMS",
]

_DB_TO_NEPER = math.log(10.0) / 10.0  # power dB -> natural-log units
#: choices of ``FeatureSpec.band_norm``
BAND_NORMS = ("none", "cmn", "cmvn")


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that defines the model input. Stored in the model metadata (``to_dict``).

    Paper values (Sec. III-A, IV-E step 1): sample_rate, n_fft, hop_length, n_mels,
    hamming_alpha. The rest is ours, documented field by field.
    """

    sample_rate: int = paper.SAMPLE_RATE
    n_fft: int = paper.N_FFT
    hop_length: int = paper.HOP_LENGTH
    n_mels: int = paper.N_MELS
    hamming_alpha: float = paper.HAMMING_ALPHA
    #: False: the paper's eq. 3 with N-1 (symmetric); True: periodic (DFT-even) window.
    periodic_window: bool = False
    #: pre-emphasis coefficient of Step 1 (the paper gives none). Default 0.0 = off (ours,
    #: measured in docs/measure_features.py): pre-emphasis lowers voiced speech (-18 dB at
    #: 300 Hz for 0.97) and lifts white noise, so with 0.97 a 20 dB SNR copy keeps cosine 0.78 to
    #: the clean input, without it 0.997 (10 dB SNR: 0.36 vs 0.91). 0.97 is the textbook value.
    pre_emphasis: float = 0.0
    #: absolute floor on the Mel power before the log (avoids log(0) for digital silence).
    log_floor: float = 1e-10
    #: dynamic-range floor: log-Mel cells below (max - top_db dB) are raised to it. None: off.
    #: 30 dB (ours, measured in docs/measure_features.py): the cells a noise CPO changes are the
    #: quiet ones; with 30 dB a 20 dB SNR copy keeps cosine 0.997 to the clean input (80 dB:
    #: 0.70) and different recordings are less alike (mean cosine 0.30 vs 0.61).
    top_db: float | None = 30.0
    fmin: float = 0.0
    #: upper edge of the Mel bank; None means sample_rate / 2 (the paper's full band).
    fmax: float | None = None
    #: seconds of (trimmed) audio per model window (ours: FSDD digits are 0.14-2.3 s).
    clip_seconds: float = 1.0
    #: "native": (n_mels, frames, 1); "paper": resized to 224x224 and repeated to 3 channels.
    input_mode: str = "native"
    #: trimming anchors: first/last frame within trim_top_db dB of the loudest one (ours:
    #: 15 dB, high enough that noise never moves the anchors); None: no trimming.
    trim_top_db: float | None = 15.0
    #: frame / hop (samples at sample_rate) of the short-time energy used for trimming.
    trim_frame: int = 512
    trim_hop: int = 128
    #: seconds kept before the first / after the last frame above the trim threshold.
    trim_margin_seconds: float = 0.1
    #: a tail shorter than this fraction of a window (after full windows) is dropped;
    #: a longer one gets its own window aligned to the end of the trimmed signal.
    min_tail_fraction: float = 0.5
    #: value of padded frames in the normalised window (0 = the window's mean level).
    pad_value: float = 0.0
    #: divisor after mean removal: "std" (per-window std over real frames) or a fixed number.
    norm_scale: str | float = "std"
    #: per-Mel-band normalisation over the real frames of a window, after the window
    #: normalisation (ours, issue 16): "none" (every model before it; omitted from
    #: ``to_dict`` so their metadata and feature caches are unchanged), "cmn" (each band minus
    #: its mean over time: removes a fixed spectral tilt, i.e. channel and part of the voice
    #: colour) or "cmvn" (and divided by its std over time). FSDD digits fit in one window, so
    #: this is per-utterance CMVN for them.
    band_norm: str = "none"

    def __post_init__(self) -> None:
        if self.input_mode not in ("native", "paper"):
            raise InvalidInputError(f"input_mode must be 'native' or 'paper', not {self.input_mode!r}")
        if self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0 or self.sample_rate <= 0:
            raise InvalidInputError("n_fft, hop_length, n_mels and sample_rate must be positive")
        if self.clip_seconds <= 0:
            raise InvalidInputError("clip_seconds must be positive")
        fmax = self.fmax_hz
        if not (0.0 <= self.fmin < fmax <= self.sample_rate / 2.0 + 1e-9):
            raise InvalidInputError(f"need 0 <= fmin < fmax <= sample_rate/2 (fmin={self.fmin}, fmax={fmax})")
        if isinstance(self.norm_scale, str) and self.norm_scale != "std":
            raise InvalidInputError("norm_scale must be 'std' or a positive number")
        if not isinstance(self.norm_scale, str) and not float(self.norm_scale) > 0:
            raise InvalidInputError("norm_scale must be 'std' or a positive number")
        if self.band_norm not in BAND_NORMS:
            raise InvalidInputError(f"band_norm must be one of {', '.join(BAND_NORMS)}, not {self.band_norm!r}")

    @property
    def fmax_hz(self) -> float:
        return float(self.sample_rate) / 2.0 if self.fmax is None else float(self.fmax)

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["band_norm"] == "none":  # models made before band_norm existed: same dict
            del d["band_norm"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InvalidInputError(f"unknown FeatureSpec fields: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes) -> "FeatureSpec":
        return replace(self, **changes)


# --------------------------------------------------------------------------- eq. 1-5 pieces


def _as_signal(y: np.ndarray) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise InvalidInputError(f"expected a 1-D mono signal, got shape {a.shape}")
    if a.size and not np.isfinite(a).all():
        raise InvalidInputError("signal contains NaN or infinite samples")
    return a.astype(np.float64, copy=False)


def pre_emphasis(y: np.ndarray, coef: float = 0.97) -> np.ndarray:
    """First-order pre-emphasis ``out[0] = y[0]``, ``out[n] = y[n] - coef*y[n-1]`` (Step 1)."""
    a = np.asarray(y, dtype=np.float64)
    if coef == 0 or a.size == 0:
        return a.copy()
    out = np.empty_like(a)
    out[0] = a[0]
    out[1:] = a[1:] - coef * a[:-1]
    return out


@lru_cache(maxsize=16)
def _hamming_cached(n: int, alpha: float, periodic: bool) -> np.ndarray:
    if n == 1:
        return np.ones(1)
    denom = n if periodic else n - 1
    k = np.arange(n, dtype=np.float64)
    w = (1.0 - alpha) - alpha * np.cos(2.0 * np.pi * k / denom)
    w.setflags(write=False)
    return w


def hamming_window(n: int, alpha: float = paper.HAMMING_ALPHA, periodic: bool = False) -> np.ndarray:
    """Generalised Hamming window of eq. 3: ``(1-a) - a*cos(2*pi*k/(N-1))``, k = 0..N-1.

    ``periodic=False`` is the paper's symmetric form; ``periodic=True`` uses N in the
    denominator (DFT-even, what ``scipy.signal.get_window`` returns by default).
    """
    if n <= 0:
        raise InvalidInputError("window length must be positive")
    return _hamming_cached(int(n), float(alpha), bool(periodic)).copy()


def frame_signal(y: np.ndarray, n_fft: int, hop_length: int, center: bool = True) -> np.ndarray:
    """Split ``y`` into frames (n_frames, n_fft), a read-only strided view.

    ``center=True`` pads ``n_fft//2`` zeros on both sides so frame t is centred on sample
    ``t*hop_length`` (librosa ``center=True, pad_mode="constant"``); n_frames = 1 + len//hop.
    Without centring a signal shorter than n_fft is zero-padded to one frame.
    """
    a = np.asarray(y)
    if center:
        a = np.pad(a, (n_fft // 2, n_fft // 2), mode="constant")
    if a.shape[0] < n_fft:
        a = np.pad(a, (0, n_fft - a.shape[0]), mode="constant")
    n_frames = 1 + (a.shape[0] - n_fft) // hop_length
    return np.lib.stride_tricks.as_strided(
        a, shape=(n_frames, n_fft), strides=(a.strides[0] * hop_length, a.strides[0]), writeable=False
    )


def power_spectrum(frames: np.ndarray, window: np.ndarray, n_fft: int | None = None) -> np.ndarray:
    """Energy spectrum ``|X_n(k)|^2`` of windowed frames (eq. 2 and 4): (n_frames, 1+n_fft//2)."""
    n = frames.shape[-1] if n_fft is None else n_fft
    spec = np.fft.rfft(frames * window, n=n, axis=-1)
    return spec.real**2 + spec.imag**2


def hz_to_mel(f):
    """HTK Mel scale, eq. 1: ``2595*log10(1 + f/700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of eq. 1: ``700*(10**(m/2595) - 1)``."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=16)
def _mel_fb_cached(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    # n_mels + 2 edge points equally spaced on the Mel scale: f(m-1), f(m), f(m+1) of eq. 5
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]  # rising edge (k - f(m-1)) / (f(m) - f(m-1))
    upper = ramps[2:] / fdiff[1:, None]  # falling edge (f(m+1) - k) / (f(m+1) - f(m))
    fb = np.maximum(0.0, np.minimum(lower, upper))
    fb.setflags(write=False)
    return fb


def mel_filterbank(spec: FeatureSpec | None = None) -> np.ndarray:
    """Triangular Mel filter bank H_m(k) of eq. 5, shape (n_mels, 1 + n_fft//2), float64.

    Edges are ``n_mels + 2`` points equally spaced on the HTK Mel scale (eq. 1) between fmin and
    fmax, evaluated at the continuous FFT bin frequencies ``k*sr/n_fft`` (not rounded to bins);
    triangles peak at 1 (no area normalisation: the paper's eq. 5). This equals
    ``librosa.filters.mel(htk=True, norm=None)``. With the paper's 16 kHz / 1024 / 128 the lowest
    filters are barely wider than one FFT bin (15.6 Hz) but none is empty.
    """
    s = spec or FeatureSpec()
    return _mel_fb_cached(int(s.sample_rate), int(s.n_fft), int(s.n_mels), float(s.fmin), float(s.fmax_hz)).copy()


def _mel_power(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """MelSpec (eq. 6), (n_mels, n_frames) float64, of a float64 1-D signal."""
    x = pre_emphasis(y, spec.pre_emphasis)
    frames = frame_signal(x, spec.n_fft, spec.hop_length, center=True)
    win = _hamming_cached(spec.n_fft, float(spec.hamming_alpha), bool(spec.periodic_window))
    pw = power_spectrum(frames, win, spec.n_fft)
    fb = _mel_fb_cached(int(spec.sample_rate), int(spec.n_fft), int(spec.n_mels), float(spec.fmin), float(spec.fmax_hz))
    return fb @ pw.T


def _log_with_floor(mel: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    logm = np.log(np.maximum(mel, spec.log_floor))  # eq. 7 (natural log)
    if spec.top_db is not None and logm.size:
        logm = np.maximum(logm, logm.max() - spec.top_db * _DB_TO_NEPER)
    return logm


@blas_pinned  # one BLAS thread: the Mel product is small (hashing/threads.py)
def log_mel_spectrogram(y: np.ndarray, spec: FeatureSpec | None = None) -> np.ndarray:
    """Log-Mel spectrogram (eq. 1-7) of a mono signal at ``spec.sample_rate``.

    Returns (n_mels, 1 + len(y)//hop_length) float32 in natural-log units of power
    (``ln(max(MelSpec, log_floor))``, clamped from below at ``max - top_db`` dB).
    """
    s = spec or FeatureSpec()
    a = _as_signal(y)
    return _log_with_floor(_mel_power(a, s), s).astype(np.float32)


# --------------------------------------------------------------------------- model input


def frames_per_clip(spec: FeatureSpec) -> int:
    """Log-Mel frames of one window: 1 + clip_samples // hop (32 for 1 s at 16 kHz / 512)."""
    return 1 + spec.clip_samples // spec.hop_length


def input_shape(spec: FeatureSpec | None = None) -> tuple[int, int, int]:
    """Shape of one model input: (n_mels, frames_per_clip, 1) native, (224, 224, 3) paper."""
    s = spec or FeatureSpec()
    if s.input_mode == "paper":
        return tuple(paper.PAPER_IMAGE_SHAPE)  # type: ignore[return-value]
    return (s.n_mels, frames_per_clip(s), 1)


#: frames per block of the trim energy. The frames overlap (512/128 = 4x the signal), so doing
#: all at once materialised 2 x 4 x 8 bytes per sample -- 3.7 GB of a 4.5 GB peak for one hour.
#: 256 frames of 512 float64 (1 MB) stay in the CPU cache, and the two work arrays are made once
#: per call: 1.4 ms instead of 3.1 ms for a 10 s query with blocks of 8,192 frames and a new
#: array per operation (issue 13; docs/measure_labels.py, bit-identical values).
_ENERGY_BLOCK_FRAMES = 256


def _frame_energy(frames: np.ndarray) -> np.ndarray:
    """Mean square of each DC-removed frame (a DC offset is not speech), in blocks of frames:
    the same row operations as on the whole array, so the same values, in bounded memory."""
    n = frames.shape[0]
    out = np.empty(n, dtype=np.float64)
    rows = min(n, _ENERGY_BLOCK_FRAMES)
    work = np.empty((rows, frames.shape[1]), dtype=np.float64)
    means = np.empty((rows, 1), dtype=np.float64)
    for i in range(0, n, _ENERGY_BLOCK_FRAMES):
        fr = frames[i : i + _ENERGY_BLOCK_FRAMES]
        k = fr.shape[0]
        w, mu = work[:k], means[:k]
        np.mean(fr, axis=1, keepdims=True, out=mu)
        np.subtract(fr, mu, out=w)
        np.multiply(w, w, out=w)
        np.mean(w, axis=1, out=out[i : i + k])
    return out


def _trim(a: np.ndarray, s: FeatureSpec) -> tuple[int, int, int]:
    """(start, end, lead): kept sample range and the number of neutral samples to put in
    front so that the first loud frame always sits ``trim_margin_seconds`` into the window."""
    n = a.shape[0]
    fl, hop = int(s.trim_frame), int(s.trim_hop)
    if s.trim_top_db is None or n <= fl:
        return 0, n, 0
    energy = _frame_energy(frame_signal(a, fl, hop, center=False))
    peak = float(energy.max())
    if peak <= 0.0:
        return 0, n, 0
    loud = np.flatnonzero(energy >= peak * 10.0 ** (-float(s.trim_top_db) / 10.0))
    margin = int(round(s.trim_margin_seconds * s.sample_rate))
    anchor = int(loud[0]) * hop
    start = max(0, anchor - margin)
    end = min(n, int(loud[-1]) * hop + fl + margin)
    return start, end, margin - (anchor - start)


def trim_bounds(y: np.ndarray, spec: FeatureSpec | None = None) -> tuple[int, int]:
    """[start, end) sample range that :func:`model_windows` keeps.

    Short-time energy (frames of ``trim_frame``, hop ``trim_hop``, DC removed) of the signal as
    recorded (no pre-emphasis: it lowers voiced speech by ~18 dB at 300 Hz and lifts white noise,
    so the anchors would follow the noise). The first and the last frame within ``trim_top_db``
    dB of the loudest frame are the anchors; ``trim_margin_seconds`` more is kept on each side
    (weak onsets/offsets). In :func:`model_windows` a recording that has less than that margin
    before its first anchor is completed with neutral frames, so the first loud frame lands on
    the same window frame whatever the amount of lead-in silence or noise. A high threshold puts
    the anchors on speech, not on the background (measured: docs/measure_features.py).
    Digital silence keeps everything; ``trim_top_db=None`` disables trimming.
    """
    s = spec or FeatureSpec()
    t0, t1, _ = _trim(_as_signal(y), s)
    return t0, t1


def _segment_starts(n: int, spec: FeatureSpec) -> list[int]:
    """Window starts (relative to the trimmed segment) of a segment of n samples."""
    clip = spec.clip_samples
    if n <= clip:
        return [0]
    n_full = n // clip
    starts = [k * clip for k in range(n_full)]
    tail = n - n_full * clip
    if tail >= spec.min_tail_fraction * clip:
        starts.append(n - clip)  # end-aligned: the tail gets a window of real signal
    return starts


def window_starts(y_or_n: np.ndarray | int, spec: FeatureSpec | None = None) -> np.ndarray:
    """Start time in seconds (in the original signal, >= 0) of each window
    :func:`model_windows` returns. Pass the signal itself to account for trimming; an int
    n_samples assumes an untrimmed signal of that length."""
    s = spec or FeatureSpec()
    if isinstance(y_or_n, (int, np.integer)):
        t0, t1, lead = 0, int(y_or_n), 0
    else:
        t0, t1, lead = _trim(_as_signal(y_or_n), s)
    return _starts_seconds(t0, lead, _segment_starts(t1 - t0 + lead, s), s)


def _starts_seconds(t0: int, lead: int, starts: list[int], s: FeatureSpec) -> np.ndarray:
    return np.array([max(0, t0 - lead + st) / s.sample_rate for st in starts], dtype=np.float64)


def _normalise(logm: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Mean removal (and scale) over the real frames of one window: gain invariant."""
    mu = float(logm.mean())
    if isinstance(spec.norm_scale, str):
        sd = float(logm.std())
        scale = sd if sd > 1e-6 else 1.0
    else:
        scale = float(spec.norm_scale)
    return (logm - mu) / scale


def band_normalise(win: np.ndarray, mode: str) -> np.ndarray:
    """Per-Mel-band normalisation over time (``FeatureSpec.band_norm``) of a window's real
    frames (n_mels, n_frames): a speaker's or a microphone's fixed spectral colour is a per-band
    offset of the log-Mel, which "cmn" removes; "cmvn" also equalises each band's spread. A band
    that is constant (the top_db floor) becomes 0."""
    if mode == "none" or win.shape[1] == 0:
        return win
    out = win - win.mean(axis=1, keepdims=True)
    if mode == "cmvn":
        sd = out.std(axis=1, keepdims=True)
        out = out / np.where(sd > 1e-3, sd, 1.0)
    return out


def resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of a 2-D array (half-pixel centres, like ``tf.image.resize`` bilinear)."""
    a = np.asarray(img, dtype=np.float64)
    h, w = a.shape

    def axis(n_in: int, n_out: int):
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0.0, n_in - 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, pos - i0

    r0, r1, fr = axis(h, out_h)
    c0, c1, fc = axis(w, out_w)
    top = a[r0][:, c0] * (1 - fc) + a[r0][:, c1] * fc
    bot = a[r1][:, c0] * (1 - fc) + a[r1][:, c1] * fc
    return top * (1 - fr)[:, None] + bot * fr[:, None]


@blas_pinned
def model_windows(
    y: np.ndarray, spec: FeatureSpec | None = None, *, return_starts: bool = False
):
    """THE model input of a decoded recording: (n_windows, *input_shape(spec)) float32.

    ``y``: float mono at ``spec.sample_rate`` (what :func:`hashing.audio.load_audio` returns).

    1. Trim (:func:`trim_bounds`): keep from ``trim_margin_seconds`` before the first frame
       within ``trim_top_db`` dB of the loudest one to the same margin after the last; if less
       than the margin precedes the first such frame, neutral frames (``pad_value``) make up
       the difference, so the speech onset lands on the same window frame however much lead-in
       silence or noise a copy has. Silence before/after the words never reaches the model.
    2. Split into consecutive windows of ``clip_seconds``; a trailing rest of at least
       ``min_tail_fraction`` of a window gets one more window aligned to the end of the trimmed
       signal (overlapping the previous one), a shorter rest is dropped. A recording shorter
       than one window gives one window.
    3. Per window: Log-Mel (eq. 1-7) of the window's samples only, then minus its mean and
       divided by its std (``norm_scale``), over real frames only: a gain change shifts every
       log-Mel cell by the same constant, so the result is gain invariant (exactly, up to the
       absolute ``log_floor`` which trimmed speech never reaches).
       With ``band_norm`` "cmn"/"cmvn" each Mel band is then normalised over the window's real
       frames (:func:`band_normalise`); "none" (every model before issue 16) skips it.
    4. A window shorter than ``clip_seconds`` is left-aligned and its missing frames are set to
       ``pad_value`` (0 = the window's mean level) instead of the log of digital silence, so
       that padding does not make different short recordings look alike (measured on FSDD:
       mean cosine between different recordings 0.77 with digital-silence padding, 0.30 with
       this pipeline; docs/measure_features.py).
    5. "paper" mode: the normalised (n_mels, frames) image resized bilinearly to 224x224 and
       repeated to 3 channels.

    With ``return_starts=True`` returns ``(windows, starts_seconds)``.
    """
    s = spec or FeatureSpec()
    a = _as_signal(y)
    if a.shape[0] == 0:
        raise InvalidInputError("cannot compute model input of an empty signal")
    t0, t1, lead = _trim(a, s)
    seg = np.concatenate([np.zeros(lead), a[t0:t1]]) if lead else a[t0:t1]
    starts = _segment_starts(seg.shape[0], s)
    clip = s.clip_samples
    out = np.empty((len(starts), *input_shape(s)), dtype=np.float32)
    for i, st in enumerate(starts):
        # frames centred in the neutral lead-in are padding, not signal
        n_lead = 0 if st >= lead else -(-(lead - st) // s.hop_length)
        out[i] = _window_input(seg[st : st + clip], n_lead, s)
    if return_starts:
        return out, _starts_seconds(t0, lead, starts, s)
    return out


def _window_input(piece: np.ndarray, n_lead: int, s: FeatureSpec) -> np.ndarray:
    """One model input (steps 3-5 of :func:`model_windows`) of at most one window of samples,
    whose first ``n_lead`` frames are padding."""
    shape = input_shape(s)
    n_fr = frames_per_clip(s)
    logm = _log_with_floor(_mel_power(piece, s), s)[:, :n_fr]
    n_lead = min(logm.shape[1] - 1, n_lead)
    win = np.full((s.n_mels, n_fr), s.pad_value, dtype=np.float64)
    win[:, n_lead : logm.shape[1]] = band_normalise(_normalise(logm[:, n_lead:], s), s.band_norm)
    if s.input_mode == "paper":
        img = resize_bilinear(win, shape[0], shape[1])
        return np.repeat(img[:, :, None], shape[2], axis=2).astype(np.float32)
    return win[:, :, None].astype(np.float32)


def model_windows_at(y: np.ndarray, start_samples, spec: FeatureSpec | None = None) -> np.ndarray:
    """Model inputs of the windows of ``clip_seconds`` starting at the given samples, without
    trimming (the identification windows of ``hashing.windowing`` choose where windows lie and
    ask the model for the category of the speech there). A start before 0 is padded."""
    s = spec or FeatureSpec()
    a = _as_signal(y)
    if a.shape[0] == 0:
        raise InvalidInputError("cannot compute model input of an empty signal")
    clip = s.clip_samples
    out = np.empty((len(start_samples), *input_shape(s)), dtype=np.float32)
    for i, st in enumerate(int(x) for x in start_samples):
        lead = min(max(0, -st), clip - 1)
        piece = a[max(0, st): st + clip]
        if piece.size == 0:  # past the end: the last window's worth of signal
            piece = a[-min(a.size, clip):]
        if lead:
            piece = np.concatenate([np.zeros(lead), piece[: clip - lead]])
        out[i] = _window_input(piece, -(-lead // s.hop_length), s)
    return out
