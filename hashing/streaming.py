"""The identification windows of a long signal, block by block (issue 17, item 7).

Why: ``hashing.windowing`` computes a whole recording at once: the STFT of every frame, then a
(windows, frames, bands) float64 array for the per-window normalisation, and the encoder matches
every window against every model window with an (n, m) distance matrix. For an hour of speech
that is gigabytes (a query window every 16 ms: 225,000 windows). This module gives the same
windows, computed ``block`` at a time, to the same functions (``band_log_mel``-equivalent frames
via ``features._mel_power`` on a slice of the signal, ``windowing._cut``, the fingerprint), and
finds nearest windows by binary search over sorted starts instead of a distance matrix. A test
checks that the codes equal the one-shot path's (tests/test_streaming.py).
"""

from __future__ import annotations

import numpy as np

from hashing import windowing as _w
from hashing.features import _as_signal

__all__ = ["band_log_mel_blocks", "encode_windowed", "nearest_sorted", "spread_sorted",
           "STREAM_SAMPLES", "LAZY_SAMPLES"]

#: signals longer than this (samples) take the block-by-block path (20 s at 16 kHz): a query's
#: windows come every 16 ms, and cutting a minute of them at once held 123 MB of float64
STREAM_SAMPLES = 20 * 16_000
#: files longer than this (samples at the model rate) are coded from a ``DecodedSignal``
#: (``hashing.lazy_signal``), never decoded whole (5 minutes: 19 MB of float32)
LAZY_SAMPLES = 5 * 60 * 16_000

#: frames of the Log-Mel spectrogram computed at once (16 ms each: ~16 s; its STFT in float64
#: and complex128 takes ~12 MB)
FRAME_BLOCK = 1024
#: windows cut and fingerprinted at once (64 x 64 float64 values each: 8 MB)
WINDOW_BLOCK = 256
#: model windows prepared and run at once: they lie about a window apart, and their preparation
#: (``features.model_windows_at``) turns the stretch they cover into float64 (32: ~4 MB)
MODEL_BLOCK = 32


def band_log_mel_blocks(y: np.ndarray, spec: "_w.WindowingSpec",
                        block: int = FRAME_BLOCK) -> np.ndarray:
    """``windowing.band_log_mel(y, spec)``, computed ``block`` frames at a time: each block's
    frames come from the slice of the signal they see (``n_fft // 2`` samples either side, one
    more before for the pre-emphasis), so no whole-signal STFT is ever held."""
    a = y if hasattr(y, "shape") and hasattr(y, "ndim") else np.asarray(y)  # a DecodedSignal stays lazy
    if a.ndim != 1 or a.shape[0] == 0:
        return _w.band_log_mel(a, spec)  # its one-line error
    ms = spec.mel_spec()
    hop, half = spec.hop_length, spec.n_fft // 2
    n_frames = 1 + a.shape[0] // hop
    out = np.empty((n_frames, spec.n_mels), dtype=np.float32)
    for f0 in range(0, n_frames, block):
        f1 = min(n_frames, f0 + block)
        s0, s1 = f0 * hop - half, (f1 - 1) * hop + half  # samples the frames see (pre-padding)
        lo, hi = max(0, s0 - 1), min(a.shape[0], s1)
        piece = _as_signal(a[lo:hi])  # float64 a slice at a time (checked finite)
        mel = _slice_mel_power(piece, lo, s0, s1, ms, first=(lo == 0))
        out[f0:f1] = np.log(np.maximum(mel, _w._LOG_FLOOR)).T.astype(np.float32)
    return out


def _slice_mel_power(piece: np.ndarray, lo: int, s0: int, s1: int, ms, first: bool) -> np.ndarray:
    """Mel power of the frames centred in [s0 + n_fft/2, s1 - n_fft/2] of a signal whose samples
    [lo, lo + len(piece)) are ``piece``: pre-emphasis as on the whole signal (the sample before
    the slice feeds its first difference), zeros outside the signal, no further padding."""
    from hashing.features import frame_signal, power_spectrum, _hamming_cached, _mel_fb_cached, \
        pre_emphasis

    x = pre_emphasis(piece, ms.pre_emphasis)
    if not first:
        x = x[1:]  # its first value lacked the sample before; the next ones are exact
        lo += 1
    seg = np.zeros(s1 - s0, dtype=np.float64)
    a0 = max(lo, s0)
    seg[a0 - s0: a0 - s0 + (lo + x.shape[0] - a0)] = x[a0 - lo:]
    frames = frame_signal(seg, ms.n_fft, ms.hop_length, center=False)
    win = _hamming_cached(ms.n_fft, float(ms.hamming_alpha), bool(ms.periodic_window))
    pw = power_spectrum(frames, win, ms.n_fft)
    fb = _mel_fb_cached(int(ms.sample_rate), int(ms.n_fft), int(ms.n_mels), float(ms.fmin),
                        float(ms.fmax_hz))
    return fb @ pw.T


def nearest_sorted(sorted_values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each target, the index of the nearest of ``sorted_values`` (strictly increasing),
    the lower index on a tie: ``np.abs(v[None, :] - t[:, None]).argmin(axis=1)`` without the
    (targets x values) matrix."""
    v = np.asarray(sorted_values, dtype=np.int64)
    t = np.asarray(targets, dtype=np.int64)
    j = np.searchsorted(v, t, side="left")
    lo = np.clip(j - 1, 0, v.size - 1)
    hi = np.clip(j, 0, v.size - 1)
    return np.where(np.abs(t - v[lo]) <= np.abs(v[hi] - t), lo, hi)


def spread_sorted(starts: np.ndarray, gap: int, anchor: int) -> np.ndarray:
    """``hashing.encoder._spread`` (the starts nearest to ``anchor + k * gap``) by binary search."""
    s = np.asarray(starts, dtype=np.int64)
    last = max(int(s[-1]), anchor)
    return np.unique(nearest_sorted(s, np.arange(anchor, last + 1, gap)))


def _model_outputs(enc, a: np.ndarray, start_samples: np.ndarray, block: int
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """The model's (h, p) at ``start_samples``: ``features.model_windows_at`` over slices of the
    signal (it converts its input to float64 whole), each block of windows run as soon as it is
    prepared (the model runs one window at a time: the same outputs), so the prepared windows
    of an hour are never held together. Also the seconds spent preparing them."""
    import time

    from hashing.features import model_windows_at

    fspec = enc._spec
    clip, n = fspec.clip_samples, a.shape[0]
    hs, ps, prep = [], [], 0.0
    for i in range(0, len(start_samples), block):
        t0 = time.perf_counter()
        st = np.asarray(start_samples[i:i + block], dtype=np.int64)
        lo = max(0, min(int(st.min()), n - clip))
        hi = min(n, int(st.max()) + clip)
        model_in = model_windows_at(a[lo:hi], st - lo, fspec)
        prep += time.perf_counter() - t0
        h, p = enc.run_windows(model_in)
        hs.append(h)
        ps.append(p)
    return np.concatenate(hs), np.concatenate(ps), prep


def encode_windowed(enc, a: np.ndarray, purpose: str, tm: dict[str, float],
                    frame_block: int = FRAME_BLOCK, window_block: int = WINDOW_BLOCK):
    """``Encoder._encode_windowed`` block by block: the same ``WindowCodes``."""
    import time

    from hashing import codes
    from hashing.encoder import WindowCodes, take_model_windows
    from speechvault.errors import ModelError

    spec = enc._windowing
    t0 = time.perf_counter()
    logmel = band_log_mel_blocks(a, spec, frame_block)
    energy = np.concatenate([_w.frame_energy_db(logmel[i:i + frame_block])  # float64 per block
                             for i in range(0, logmel.shape[0], frame_block)])
    active = _w.activity_of_energy(energy, spec)
    audible = _w.audible_of_energy(energy, spec)
    a0, a1 = _w._active_span(active, spec)
    starts = _w.kept_starts(logmel.shape[0], active, audible, a0, a1, spec, purpose)
    act = _w.window_activity(active, starts, spec.window_frames)
    bits = []
    for i in range(0, starts.shape[0], window_block):
        w = _w._cut(logmel, active, starts[i:i + window_block], spec)
        bits.append(enc._fp.bits(w.x))
        del w
    bits = np.concatenate(bits)
    took = take_model_windows(a, a0, a1, spec, enc._spec)
    t1 = time.perf_counter()
    if took is None:
        model_frames = starts[spread_sorted(starts, spec.window_frames, a0)]
        h, p, prep = _model_outputs(enc, a, model_frames * spec.hop_length,
                                    min(window_block, MODEL_BLOCK))
    else:
        model_frames, prep = took[1], time.perf_counter() - t1
        h, p = enc.run_windows(took[0])
    tm["features"] = t1 - t0 + prep
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(p))):
        raise ModelError(f"model {enc._meta.name!r} produced NaN/inf outputs")
    nearest = nearest_sorted(model_frames, starts)
    tm["inference"] = time.perf_counter() - t1 - prep
    return WindowCodes(
        category=np.argmax(p, axis=1).astype(np.int64)[nearest], probs=p[nearest], bits=bits,
        words=codes.pack_words(bits), K=enc.K,
        starts=starts.astype(np.float64) * spec.frame_seconds, timings=tm,
        hash_words=codes.pack_words(codes.hash_bits(h))[nearest], code=enc.code_name,
        frames=starts, activity=act)
