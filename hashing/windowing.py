"""Where the identification windows of a recording lie, and what each one sees (issue 12).

Why: the vault must find a recording from *any few seconds* of it, cut anywhere, and from copies
that went through a phone line. Model windows (``hashing.features.model_windows``) are 1 s,
non-overlapping and anchored on the detected speech onset, so an excerpt cut elsewhere never
lines up with a stored window, and a fingerprint of the full 0-8 kHz band changes when a copy
loses everything above 4 kHz. So identification has its own windows, the way landmark and
neural audio fingerprints do it (Wang 2003; Chang et al., ICASSP 2021, 1 s segments at a
0.5 s hop; see ../shared/notes/excerpt-retrieval.md):

* one band-limited Log-Mel spectrogram of the whole signal (eq. 1-7 with ``fmin`` 300 Hz and
  ``fmax`` 3,400 Hz: the telephone band, which every copy keeps), on a fine frame grid
  (``hop_length`` 256 samples = 16 ms at 16 kHz);
* **stored** windows of ``window_frames`` frames every ``store_hop_frames`` frames (1.024 s
  every 0.512 s), from the first active frame on;
* **query** windows at *every* frame (16 ms), so that one of them starts within half a frame
  (8 ms) of any stored window the excerpt covers, whatever the offset of the cut; a query
  shorter than a window is tried at every start within ``query_slack_frames`` of its onset,
  so no single detected onset decides the alignment;
* per window: log power clamped at ``top_db`` below the window's loudest cell, then mean and
  std removed over its real frames (gain invariant, as the model input); frames outside the
  signal are padding at the window's mean level (0);
* **activity**: a frame is active when its band energy is within ``active_db`` dB of the
  signal's loud level (its 95th-percentile frame). A window with less than
  ``min_active_fraction`` active frames is a pause: it is neither stored nor searched (pauses
  look alike across unrelated recordings and caused most false matches);
* **buried**: a frame is audible when it is at least ``min_snr_db`` above the signal's noise
  floor (its ``noise_percentile``-th percentile frame). A window with fewer than
  ``min_audible_frames`` audible frames is buried in noise: neither stored nor searched either.
  A signal with no window left keeps its most active one.

All frame positions are integers (frames of ``hop_length`` samples); seconds are
``frame * hop_length / sample_rate``. numpy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from hashing.features import FeatureSpec, _as_signal, _mel_power
from speechvault.errors import InvalidInputError

__all__ = ["WindowingSpec", "Windows", "band_log_mel", "stored_windows", "query_windows",
           "frame_activity"]

_DB_TO_NEPER = np.log(10.0) / 10.0
#: absolute floor on the band Mel power before the log (digital silence)
_LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class WindowingSpec:
    """Every setting of the identification windows. Stored with the model's fingerprint, so a
    vault always cuts windows the way its codes were made."""

    sample_rate: int = 16_000
    n_fft: int = 512
    #: the frame grid (samples): every window start, stored or query, is a multiple of it.
    hop_length: int = 256
    n_mels: int = 64
    #: the telephone band (ITU-T G.712: 300-3,400 Hz): kept by every copy a user may query with.
    fmin: float = 300.0
    fmax: float = 3_400.0
    #: dynamic range kept inside a window (dB below its loudest cell).
    top_db: float = 30.0
    window_frames: int = 64
    store_hop_frames: int = 16
    query_hop_frames: int = 1
    #: a query shorter than a window is tried at every start within this many frames of its onset.
    query_slack_frames: int = 16
    #: frames kept before the first / after the last active frame of a signal.
    margin_frames: int = 6
    active_db: float = 30.0
    min_active_fraction: float = 0.15
    #: the noise floor of a signal: the energy of its ``noise_percentile``-th percentile frame
    #: (digital silence, room noise, or the stationary noise of a degraded copy); a frame at least
    #: ``min_snr_db`` above it is audible, and a window needs ``min_audible_frames`` of them
    #: (64 ms). Why (issue 12, measured on 5 s excerpts in white noise at 10 dB): when a copy's
    #: speech is partly 20-30 dB quieter than its loudest part, noise at 10 dB under the
    #: excerpt's mean power buries that part (local SNR ~ -10 dB), and its windows, destroyed
    #: (BER 0.38-0.48, where unrelated windows sit), outvoted the few that survived. A window with
    #: nothing above the noise floor carries nothing of the recording: it neither matches nor
    #: votes. A clean signal's floor is its digital silence or room noise: nothing changes for it.
    #: 0 dB: off (the windowing of models made before it existed).
    noise_percentile: float = 10.0
    min_snr_db: float = 6.0
    min_audible_frames: int = 4
    #: where the model (h1, h2) looks: "take" = a signal whose active span is at most
    #: ``take_windows`` model windows long (a word, a take: what the model was trained on)
    #: gets the model's own input, trimmed (``features.model_windows``), and longer speech the
    #: model windows at the identification grid; "grid" = always the grid (models made before).
    #: Why (issue 16): a window placed on the grid keeps the noise before and after a word,
    #: which the model never saw in training: on FSDD's held-out speaker theo the default
    #: CRNN's h1 was 0.56 with the grid and 0.85 with its own input
    #: (``python -m model_export.evaluate MODEL FSDD --max-queries 100``)
    model_input: str = "take"
    take_windows: int = 2

    def __post_init__(self) -> None:
        ints = ("sample_rate", "n_fft", "hop_length", "n_mels", "window_frames",
                "store_hop_frames", "query_hop_frames")
        if any(int(getattr(self, k)) <= 0 for k in ints):
            raise InvalidInputError(f"windowing: {', '.join(ints)} must be positive")
        if not (0.0 <= self.fmin < self.fmax <= self.sample_rate / 2.0):
            raise InvalidInputError("windowing: need 0 <= fmin < fmax <= sample_rate / 2")
        if not 0.0 <= self.min_active_fraction <= 1.0:
            raise InvalidInputError("windowing: min_active_fraction must be in [0, 1]")
        if not (0.0 <= self.noise_percentile < 95.0 and self.min_snr_db >= 0.0
                and self.min_audible_frames >= 0):
            raise InvalidInputError("windowing: need 0 <= noise_percentile < 95, min_snr_db >= 0 "
                                    "and min_audible_frames >= 0")
        if self.model_input not in ("take", "grid") or int(self.take_windows) < 1:
            raise InvalidInputError("windowing: model_input must be 'take' or 'grid' and "
                                    "take_windows >= 1")

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    @property
    def dim(self) -> int:
        """Values per window (the fingerprint's input size)."""
        return self.n_mels * self.window_frames

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WindowingSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InvalidInputError(f"unknown windowing fields: {sorted(unknown)}")
        # a windowing stored before a setting existed keeps cutting as its codes were made
        return cls(**{**_WINDOWING_BEFORE, **d})

    def mel_spec(self) -> FeatureSpec:
        """The Log-Mel settings (eq. 1-7) of the band this windowing sees."""
        return FeatureSpec(sample_rate=self.sample_rate, n_fft=self.n_fft,
                           hop_length=self.hop_length, n_mels=self.n_mels, fmin=self.fmin,
                           fmax=self.fmax, top_db=None, trim_top_db=None)


#: what a stored windowing that lacks a setting meant (models made before the setting existed)
_WINDOWING_BEFORE = {"min_snr_db": 0.0, "model_input": "grid"}


@dataclass
class Windows:
    """Windows cut from one signal: ``x`` (n, dim) float32 normalised inputs, ``starts`` (n,)
    start frames (may be negative for a short query's padded tries), ``activity`` (n,) the
    fraction of active frames."""

    x: np.ndarray
    starts: np.ndarray
    activity: np.ndarray
    spec: WindowingSpec
    #: first frame of the active span (where a stored recording's grid starts)
    anchor: int = 0
    #: (n,) audible frames per window (``audible_of_energy``); None: the windowing has no such rule
    audible: np.ndarray | None = None
    #: end of the active span (frames, exclusive)
    end: int = 0

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def start_seconds(self) -> np.ndarray:
        return self.starts.astype(np.float64) * self.spec.frame_seconds


def band_log_mel(y: np.ndarray, spec: WindowingSpec) -> np.ndarray:
    """Natural-log band Mel power of the whole signal, (n_frames, n_mels) float32 (eq. 1-7;
    frame t centred on sample ``t * hop_length``)."""
    a = _as_signal(y)
    if a.shape[0] == 0:
        raise InvalidInputError("cannot cut windows of an empty signal")
    mel = _mel_power(a, spec.mel_spec())  # (n_mels, n_frames)
    return np.log(np.maximum(mel, _LOG_FLOOR)).T.astype(np.float32)


def frame_activity(logmel: np.ndarray, spec: WindowingSpec) -> np.ndarray:
    """Boolean (n_frames,): the frame's band energy is within ``active_db`` dB of the signal's
    loud level (95th-percentile frame). Digital silence is never active."""
    return activity_of_energy(frame_energy_db(logmel), spec)


def frame_energy_db(logmel: np.ndarray) -> np.ndarray:
    """Each frame's band energy in dB (float64; row by row, so a block of frames gives the same
    values as the whole: ``hashing.streaming`` computes it a block at a time)."""
    return 10.0 * np.log10(np.exp(logmel.astype(np.float64)).sum(axis=1))


def activity_of_energy(energy_db: np.ndarray, spec: WindowingSpec) -> np.ndarray:
    """``frame_activity`` from the frames' energies (of the whole signal)."""
    floor_db = 10.0 * np.log10(spec.n_mels * _LOG_FLOOR)  # every band at the log floor
    loud = float(np.percentile(energy_db, 95))
    return (energy_db >= loud - spec.active_db) & (energy_db > floor_db + 10.0)


def audible_of_energy(energy_db: np.ndarray, spec: WindowingSpec) -> np.ndarray | None:
    """Boolean (n_frames,): the frame is at least ``min_snr_db`` above the signal's noise floor
    (its ``noise_percentile``-th percentile frame); None when the windowing has no such rule.
    A clean signal's floor is its digital silence or room noise, so its speech is audible."""
    if spec.min_snr_db <= 0.0:
        return None
    return energy_db >= float(np.percentile(energy_db, spec.noise_percentile)) + spec.min_snr_db


def _cut(logmel: np.ndarray, active: np.ndarray, starts: np.ndarray, spec: WindowingSpec,
         audible: np.ndarray | None = None) -> Windows:
    """Normalised windows at ``starts`` (frames; parts outside the signal are padding): each
    floored at ``top_db`` under its loudest value, then zero mean and unit variance over its real
    frames. float32 throughout (sums accumulate in float64): a query cuts a window at every
    frame, and float64 copies of them cost more than the fingerprint's projection."""
    n_frames, W = logmel.shape[0], spec.window_frames
    idx = starts[:, None] + np.arange(W)[None, :]                  # (n, W)
    real = (idx >= 0) & (idx < n_frames)
    safe = np.clip(idx, 0, n_frames - 1)
    win = logmel[safe].astype(np.float32, copy=False)              # (n, W, n_mels)
    top = np.float32(spec.top_db * _DB_TO_NEPER)
    # one code path whatever else is in the batch: a window's values must not depend on its
    # neighbours (the streaming encoder cuts the same windows in other batches)
    mask = real[:, :, None]
    floor = win.max(axis=(1, 2), where=mask, initial=-np.inf) - top
    win = np.maximum(win, floor[:, None, None].astype(np.float32))
    count = np.maximum(real.sum(axis=1) * spec.n_mels, 1)[:, None, None]
    mu = (np.sum(win, axis=(1, 2), where=mask, keepdims=True, dtype=np.float64)
          / count).astype(np.float32)
    dev = np.where(mask, win - mu, np.float32(0.0))
    sd = np.sqrt(np.einsum("nwm,nwm->n", dev, dev, dtype=np.float64) / count[:, 0, 0])
    dev /= np.where(sd > 1e-6, sd, 1.0).astype(np.float32)[:, None, None]
    activity = np.where(real, active[safe], False).sum(axis=1) / W
    # (n, n_mels, W): the same layout as a model window (mel rows, time columns)
    x = np.ascontiguousarray(np.transpose(dev, (0, 2, 1))).reshape(len(starts), -1)
    heard = None if audible is None else np.where(real, audible[safe], False).sum(axis=1)
    return Windows(x=x, starts=starts.astype(np.int64),
                   activity=activity.astype(np.float32), spec=spec, audible=heard)


def _active_span(active: np.ndarray, spec: WindowingSpec) -> tuple[int, int]:
    """[first, end) frames from ``margin_frames`` before the first active frame to as many after
    the last; the whole signal when nothing is active."""
    on = np.flatnonzero(active)
    n = active.shape[0]
    if on.size == 0:
        return 0, n
    return max(0, int(on[0]) - spec.margin_frames), min(n, int(on[-1]) + 1 + spec.margin_frames)


def kept_windows(activity: np.ndarray, audible: np.ndarray | None,
                 spec: WindowingSpec) -> np.ndarray:
    """Mask of the windows kept: not a pause (``min_active_fraction``) and not buried in noise
    (``min_audible_frames``); when none is, the first most active one."""
    keep = activity >= spec.min_active_fraction
    if audible is not None:
        keep &= audible >= spec.min_audible_frames
    if not keep.any():
        keep = activity == activity.max()
        keep &= np.cumsum(keep) == 1                               # the first most active one
    return keep


def window_starts(n_frames: int, a0: int, a1: int, spec: WindowingSpec,
                  purpose: str) -> np.ndarray:
    """The candidate window starts (frames) over the active span [a0, a1): to store, every
    ``store_hop_frames`` from its first active frame plus one aligned to its end when a rest
    of at least half a window is left (a span shorter than a window gives one, padded); to
    query, every ``query_hop_frames`` and ``query_slack_frames`` beyond its ends (a short query
    is tried around its onset, a long one at every alignment of a stored grid)."""
    W = spec.window_frames
    if purpose == "store":
        H = spec.store_hop_frames
        starts = list(range(a0, max(a0, a1 - W) + 1, H))
        if a1 - (starts[-1] + W) >= W // 2:
            starts.append(a1 - W)
        return np.asarray(starts, np.int64)
    S = spec.query_slack_frames
    last = max(a0, a1 - W)
    starts = np.arange(a0 - S, last + S + 1, spec.query_hop_frames, dtype=np.int64)
    return starts[(starts + W > 0) & (starts < n_frames)]


def frames_in(mask: np.ndarray, starts: np.ndarray, W: int) -> np.ndarray:
    """Frames of ``mask`` per window of ``W`` frames at ``starts``, from a running count instead
    of a (windows x frames) gather."""
    c = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    lo = np.clip(starts, 0, mask.shape[0])
    hi = np.clip(starts + W, 0, mask.shape[0])
    return c[hi] - c[lo]


def window_activity(active: np.ndarray, starts: np.ndarray, W: int) -> np.ndarray:
    """Fraction of active frames per window (the ``activity`` that ``_cut`` gives)."""
    return (frames_in(active, starts, W) / W).astype(np.float32)


def _prepare(y: np.ndarray, spec: WindowingSpec):
    logmel = band_log_mel(y, spec)
    energy = frame_energy_db(logmel)
    active = activity_of_energy(energy, spec)
    return logmel, active, audible_of_energy(energy, spec), *_active_span(active, spec)


def kept_starts(n_frames: int, active: np.ndarray, audible: np.ndarray | None, a0: int,
                a1: int, spec: WindowingSpec, purpose: str) -> np.ndarray:
    """The starts of the windows ``kept_windows`` keeps among ``window_starts``, decided from
    running counts of the active and audible frames, so that only those are ever cut: the
    pauses and buried stretches of a query (a window every frame) are never gathered and
    normalised. Shared by the one-shot path and ``hashing.streaming``."""
    starts = window_starts(n_frames, a0, a1, spec, purpose)
    W = spec.window_frames
    heard = None if audible is None else frames_in(audible, starts, W)
    return starts[kept_windows(window_activity(active, starts, W), heard, spec)]


def _kept_windows_of(y: np.ndarray, spec: WindowingSpec, purpose: str) -> Windows:
    """The windows of ``y`` that ``kept_windows`` keeps (``kept_starts``), cut."""
    logmel, active, audible, a0, a1 = _prepare(y, spec)
    starts = kept_starts(logmel.shape[0], active, audible, a0, a1, spec, purpose)
    w = _cut(logmel, active, starts, spec, audible)
    w.anchor, w.end = a0, a1
    return w


def stored_windows(y: np.ndarray, spec: WindowingSpec) -> Windows:
    """The windows a vault stores for a recording (``window_starts`` "store"). Pauses and
    buried windows dropped."""
    return _kept_windows_of(y, spec, "store")


def query_windows(y: np.ndarray, spec: WindowingSpec) -> Windows:
    """The windows a query is searched with (``window_starts`` "query"). Pauses and buried
    windows dropped."""
    return _kept_windows_of(y, spec, "query")
