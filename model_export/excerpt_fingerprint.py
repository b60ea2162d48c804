"""Fit the excerpt fingerprint: DDA over band-limited identification windows (issue 12).

    python -m model_export.excerpt_fingerprint /work/shared/data/fsdd --out /tmp/fp [--espeak DIR]

Why a new fit: the issue-7 fingerprint projects the model window (0-8 kHz, anchored on the
onset) and was fitted on aligned copies, so it tolerates ~20 ms of misalignment and loses the
recording when a copy is band-limited to a phone line. This fits the same closed-form
Distortion Discriminant Analysis (``hashing.fingerprint.fit_dda``; Burges, Platt & Jana 2003)
on ``hashing.windowing`` windows (300-3,400 Hz, 16 ms grid) with distortions that real copies
go through *and* the misalignment the search leaves: each pair is a stored window of a clean
long recording and the window at the same place in a degraded copy, shifted by up to half a
query hop (+-8 ms) and stretched when the copy's speed changed.

Data: long recordings joined from the given FSDD *fit* speakers (never the test or calibration
speakers of ``model_export.long_speech``) and, optionally, espeak-ng fit voices.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soxr

from hashing import cpo
from hashing.audio import load_audio
from hashing.fingerprint import Fingerprint, fit_dda
from hashing.windowing import WindowingSpec, band_log_mel, frame_activity, stored_windows, _cut
from model_export import dataset as ds

__all__ = ["join_takes", "fit_distortion", "distortion_pairs", "fit_excerpt_fingerprint"]

FIT_SPEAKERS = ("george", "jackson", "lucas", "yweweler")


def join_takes(signals: Sequence[np.ndarray], sr: int, rng: np.random.Generator,
               seconds: float = 40.0) -> list[np.ndarray]:
    """Long recordings made of the given takes in order, separated by 0.15-0.8 s pauses at a
    low noise floor (-60 dBFS), each take at a random gain of +-3 dB."""
    out, cur, n = [], [], 0
    for y in signals:
        pause = (rng.standard_normal(int(rng.uniform(0.15, 0.8) * sr)) * 1e-3).astype(np.float32)
        cur += [pause, (y * 10 ** (rng.uniform(-3, 3) / 20)).astype(np.float32)]
        n += pause.size + y.size
        if n >= seconds * sr:
            out.append(np.concatenate(cur))
            cur, n = [], 0
    if n >= 0.5 * seconds * sr:
        out.append(np.concatenate(cur))
    return out


def _telephone(y: np.ndarray, sr: int) -> np.ndarray:
    """Through 8 kHz and a 300-3,400 Hz band (FFT mask): a phone line's band."""
    z = soxr.resample(y, sr, 8000, quality="HQ")
    f = np.fft.rfft(z)
    hz = np.fft.rfftfreq(z.size, 1 / 8000)
    f[(hz < 300) | (hz > 3400)] = 0
    return soxr.resample(np.fft.irfft(f, z.size).astype(np.float32), 8000, sr, quality="HQ")


def fit_distortion(rng: np.random.Generator, babble: Sequence[np.ndarray]) -> tuple[Callable, float]:
    """A random copy operation and its speed factor (1.0 = none): band limits, MP3 32-128 kbit/s,
    white or babble noise at 8-25 dB SNR, gain, speed +-4 %, alone or two at a time."""
    sr_ops: list[tuple[Callable, float]] = []

    def one() -> tuple[Callable, float]:
        k = rng.integers(7)
        if k == 0:
            return (lambda y, sr: _telephone(y, sr)), 1.0
        if k == 1:
            return (lambda y, sr: cpo.resample_roundtrip(y, sr, 8000)), 1.0
        if k == 2:
            kb = float(rng.choice([32, 48, 64, 128]))
            return (lambda y, sr: cpo.mp3_roundtrip(y, sr, kb)), 1.0
        if k == 3:
            snr, seed = float(rng.uniform(8, 25)), int(rng.integers(1 << 30))
            return (lambda y, sr: cpo.add_noise_snr(y, snr, seed)), 1.0
        if k == 4 and len(babble):
            snr, seed = float(rng.uniform(8, 25)), int(rng.integers(1 << 30))
            return (lambda y, sr: _babble(y, babble, snr, seed)), 1.0
        if k == 5:
            f = float(rng.uniform(0.96, 1.04))
            return (lambda y, sr: soxr.resample(y, sr, sr / f, quality="HQ").astype(np.float32)), f
        db = float(rng.uniform(-10, 6))
        return (lambda y, sr: cpo.gain_db(y, db)), 1.0

    sr_ops.append(one())
    if rng.random() < 0.4:
        sr_ops.append(one())
    speed = float(np.prod([f for _, f in sr_ops]))

    def run(y: np.ndarray, sr: int) -> np.ndarray:
        for op, _ in sr_ops:
            y = op(y, sr)
        return np.asarray(y, np.float32)
    return run, speed


def _babble(y: np.ndarray, talkers: Sequence[np.ndarray], snr_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.zeros_like(y)
    for i in rng.choice(len(talkers), size=min(4, len(talkers)), replace=False):
        t = talkers[int(i)]
        reps = int(np.ceil(y.size / t.size)) + 1
        t = np.tile(t, reps)
        off = int(rng.integers(t.size - y.size))
        mix += t[off: off + y.size]
    p_sig, p_mix = float(np.mean(y * y)), float(np.mean(mix * mix))
    if p_sig <= 0 or p_mix <= 0:
        return y.copy()
    return np.clip(y + mix * np.sqrt(p_sig / p_mix / 10 ** (snr_db / 10)), -1, 1).astype(np.float32)


def distortion_pairs(signals: Sequence[np.ndarray], spec: WindowingSpec, views: int,
                     seed: int = 1, babble: Sequence[np.ndarray] = ()):
    """(clean stored windows, original windows, distorted windows) for ``fit_dda``: for each
    view a random ``fit_distortion`` and a random shift of up to half a query hop (+-8 ms);
    each stored window is paired with the copy's window at the same place in the speech."""
    rng = np.random.default_rng(seed)
    sr, hop = spec.sample_rate, spec.hop_length
    half = spec.query_hop_frames * hop // 2
    clean, orig, dist = [], [], []
    dense = dataclasses.replace(spec, store_hop_frames=max(1, spec.store_hop_frames // 2))
    for y in signals:
        w = stored_windows(y, dense)
        clean.append(w.x)
        for _ in range(views):
            op, speed = fit_distortion(rng, babble)
            shift = int(rng.integers(-half, half + 1))
            z = op(np.roll(y, shift) if shift else y, sr)
            lm = band_log_mel(z, spec)
            # the same speech in the copy: window centres scale by 1/speed
            centre = (w.starts + spec.window_frames / 2) / speed
            starts = np.round(centre - spec.window_frames / 2).astype(np.int64)
            ok = (starts >= 0) & (starts + spec.window_frames <= lm.shape[0])
            if not ok.any():
                continue
            cw = _cut(lm, frame_activity(lm, spec), starts[ok], spec)
            orig.append(w.x[ok])
            dist.append(cw.x)
    cat = lambda a: np.concatenate(a) if a else np.zeros((0, spec.dim), np.float32)  # noqa: E731
    return cat(clean), cat(orig), cat(dist)


def fit_excerpt_fingerprint(signals: Sequence[np.ndarray], spec: WindowingSpec, *, bits: int = 256,
                            views: int = 4, reg: float = 1e-3, seed: int = 1,
                            babble: Sequence[np.ndarray] = (), log=print) -> Fingerprint:
    t0 = time.perf_counter()
    clean, orig, dist = distortion_pairs(signals, spec, views, seed, babble)
    log(f"  {len(clean)} clean windows, {len(orig)} distorted pairs ({time.perf_counter() - t0:.0f} s)")
    return fit_dda(clean, orig, dist, bits, reg=reg, pca_dims=min(1024, spec.dim))


def load_speakers(data_dir: str | Path, speakers: Sequence[str], sr: int) -> list[np.ndarray]:
    items, _ = ds.list_items(data_dir)
    items = sorted((it for it in items if it.speaker in set(speakers)),
                   key=lambda it: (it.speaker, it.take, it.label))
    return [load_audio(it.path, sr) for it in items]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.excerpt_fingerprint")
    p.add_argument("data_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--bits", type=int, default=256)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    spec = WindowingSpec()
    rng = np.random.default_rng(a.seed)
    takes = load_speakers(a.data_dir, FIT_SPEAKERS, spec.sample_rate)
    rng.shuffle(takes)
    longs = join_takes(takes, spec.sample_rate, rng)
    fp = fit_excerpt_fingerprint(longs, spec, bits=a.bits, views=a.views, seed=a.seed,
                                 babble=longs)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "excerpt.fingerprint.npz").write_bytes(fp.to_bytes())
    print(f"wrote {out / 'excerpt.fingerprint.npz'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
