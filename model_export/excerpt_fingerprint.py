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
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hashing import cpo
from hashing.encoder import Encoder
from hashing.fingerprint import FINGERPRINT_SUFFIX, Fingerprint, fit_dda, load_fingerprint
from hashing.model_meta import ModelMeta, sha256_hex
from hashing.windowing import WindowingSpec, _cut, band_log_mel, frame_activity, stored_windows
from model_export import long_speech as ls
from store.excerpt import ExcerptRule

__all__ = ["fit_distortion", "distortion_pairs", "fit_excerpt_fingerprint", "fit_recordings",
           "fit_long_recordings", "build_model", "write_wav"]


def fit_distortion(rng: np.random.Generator, babble: Sequence[np.ndarray]) -> tuple[Callable, float]:
    """A random copy operation and its speed factor (1.0 = none), one or two of: telephone band,
    through 8 kHz, MP3 32-128 kbit/s, white or babble noise at 8-25 dB SNR, gain, speed +-4 %,
    pitch +-4 % (``hashing.cpo``). The fit sees the same kinds of copies the evaluation tests,
    at other strengths and on other voices."""

    def one() -> tuple[Callable, float]:
        k = int(rng.integers(8))
        seed = int(rng.integers(1 << 30))
        if k == 0:
            return cpo.telephone_band, 1.0
        if k == 1:
            return (lambda y, sr: cpo.resample_roundtrip(y, sr, 8000)), 1.0
        if k == 2:
            kb = float(rng.choice([32, 48, 64, 128]))
            return (lambda y, sr: cpo.mp3_roundtrip(y, sr, kb)), 1.0
        snr = float(rng.uniform(8, 25))
        if k == 3:
            return (lambda y, sr: cpo.add_noise_snr(y, snr, seed)), 1.0
        if k == 4 and len(babble) >= 3:
            talkers = [babble[int(i)] for i in rng.choice(len(babble), 3, replace=False)]
            return (lambda y, sr: cpo.babble_noise(y, sr, snr, seed, talkers)), 1.0
        f = float(rng.uniform(0.96, 1.04))
        if k == 5:
            return (lambda y, sr: cpo.speed_change(y, sr, f)), f
        if k == 6:
            return (lambda y, sr: cpo.pitch_shift(y, sr, f)), 1.0
        db = float(rng.uniform(-10, 6))
        return (lambda y, sr: cpo.gain_db(y, db)), 1.0

    ops = [one()] + ([one()] if rng.random() < 0.4 else [])
    speed = float(np.prod([f for _, f in ops]))

    def run(y: np.ndarray, sr: int) -> np.ndarray:
        for op, _ in ops:
            y = op(y, sr)
        return np.asarray(y, np.float32)
    return run, speed


def distortion_pairs(signals: Sequence[np.ndarray], spec: WindowingSpec, views: int,
                     seed: int = 1, babble: Sequence[np.ndarray] = (), distortion=None,
                     with_ids: bool = False):
    """(clean stored windows, original windows, distorted windows) for ``fit_dda``: for each
    view a random ``distortion`` (default ``fit_distortion``) and a random shift of up to half
    a query hop (+-8 ms); each stored window is paired with the copy's window at the same place
    in the speech. ``with_ids`` adds a fourth array, which original window each pair holds
    (signal index << 20 | window index): the views of one window share it."""
    distortion = distortion or fit_distortion
    rng = np.random.default_rng(seed)
    sr, hop = spec.sample_rate, spec.hop_length
    half = spec.query_hop_frames * hop // 2
    clean, orig, dist, ids = [], [], [], []
    dense = dataclasses.replace(spec, store_hop_frames=max(1, spec.store_hop_frames // 2))
    for n, y in enumerate(signals):
        w = stored_windows(y, dense)
        clean.append(w.x)
        for _ in range(views):
            op, speed = distortion(rng, babble)
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
            ids.append((n << 20) | np.flatnonzero(ok))
    cat = lambda a: np.concatenate(a) if a else np.zeros((0, spec.dim), np.float32)  # noqa: E731
    out = cat(clean), cat(orig), cat(dist)
    return out + (np.concatenate(ids).astype(np.int64),) if with_ids else out


def fit_excerpt_fingerprint(signals: Sequence[np.ndarray], spec: WindowingSpec, *, bits: int = 256,
                            views: int = 4, reg: float = 1e-3, seed: int = 1,
                            babble: Sequence[np.ndarray] = (), log=print) -> Fingerprint:
    t0 = time.perf_counter()
    clean, orig, dist = distortion_pairs(signals, spec, views, seed, babble)
    log(f"  {len(clean)} clean windows, {len(orig)} distorted pairs ({time.perf_counter() - t0:.0f} s)")
    return fit_dda(clean, orig, dist, bits, reg=reg, pca_dims=min(1024, spec.dim))


def fit_long_recordings(fsdd_dir: str | Path | None, *, seed: int = 1, n_fsdd: int = 28,
                        n_espeak: int = 27, log=print) -> list[ls.LongRecording]:
    """The fit data: FSDD fit speakers' takes joined into 30-60 s recordings, and espeak-ng fit
    voices reading random sentences (``model_export.long_speech``: never a calibration or test
    speaker or voice)."""
    out = []
    if fsdd_dir is not None:
        out += ls.fsdd_recordings(fsdd_dir, ls.FSDD_FIT_SPEAKERS, n_fsdd, seed=seed, prefix="fit")
    if n_espeak and ls.espeak_available():
        out += ls.espeak_recordings(ls.ESPEAK_FIT_VOICES, n_espeak, seed=seed, prefix="fit")
    log(f"  fit data: {len(out)} recordings, "
        f"{sum(len(r.samples) for r in out) / 16000 / 60:.0f} min")
    return out


def fit_recordings(fsdd_dir: str | Path | None, *, seed: int = 1, n_fsdd: int = 28,
                   n_espeak: int = 27, log=print) -> list[np.ndarray]:
    """The samples of ``fit_long_recordings``."""
    return [r.samples for r in fit_long_recordings(fsdd_dir, seed=seed, n_fsdd=n_fsdd,
                                                   n_espeak=n_espeak, log=log)]


def write_wav(path: Path, y: np.ndarray, sr: int) -> None:
    import soundfile as sf

    sf.write(str(path), np.clip(y, -1, 1), sr, subtype="PCM_16")


# --------------------------------------------------------------------------- the model


def calibration_data(fsdd_dir, seed: int, gain_db: float = ls.GAIN_RANGE_DB[1]
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Long recordings and short whole clips of the calibration speaker and voices only; each
    take or sentence of a long recording at a random gain within +-``gain_db``."""
    from hashing.audio import load_audio
    from model_export import dataset as ds

    half = ls.FSDD_CALIB_SPEAKERS
    items = [it for it in ds.list_items(fsdd_dir)[0] if it.speaker in half]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    clips = [load_audio(items[i].path, ls.SAMPLE_RATE) for i in order[:250]]
    # as many long recordings as the evaluation stores and more: the largest impostor evidence
    # grows with the number of recordings an excerpt is compared with
    gains = (-float(gain_db), float(gain_db))
    longs = [r.samples for r in ls.fsdd_recordings(fsdd_dir, half, 6, seed=seed, min_s=20,
                                                   max_s=30, prefix="cal", gain_db=gains)]
    if ls.espeak_available():
        longs += [r.samples for r in ls.espeak_recordings(ls.ESPEAK_CALIB_VOICES, 60, seed=seed,
                                                          min_s=30, max_s=50, prefix="cal",
                                                          gain_db=gains)]
        clips += [r.samples for r in ls.espeak_word_clips(ls.ESPEAK_CALIB_VOICES, 250, seed=seed)]
    return longs, clips


def build_model(base_model: str | Path, fsdd_dir: str | Path, out: str | Path, *, name: str,
                bits: int = 384, views: int = 4, seed: int = 1, command: str = "",
                projection: str | Path | None = None, windowing: dict | None = None,
                calib_gain_db: float = ls.GAIN_RANGE_DB[1], evidence_over: str | None = None,
                log=print) -> dict:
    """Fit, calibrate and write ``NAME.tflite`` (the base model's bytes), ``NAME.json`` and
    ``NAME.fingerprint.npz`` (projection, windowing, calibrated rule)."""
    t0 = time.perf_counter()
    base = Encoder.from_files(base_model)
    spec = WindowingSpec(**(windowing or {}))
    if projection is not None:  # re-calibrate an earlier fit
        fp = dataclasses.replace(load_fingerprint(Path(projection).read_bytes()),
                                 windowing=None, rule=None)
        bits = fp.K
    else:
        fit = fit_recordings(fsdd_dir, seed=seed, log=log)
        fp = fit_excerpt_fingerprint(fit, spec, bits=bits, views=views, seed=seed, babble=fit,
                                     log=log)
    rule0 = ExcerptRule()
    if evidence_over is not None:
        rule0 = dataclasses.replace(rule0, evidence_over=evidence_over)
    fp = dataclasses.replace(fp, windowing=spec.to_dict(), rule=rule0.to_dict())
    longs, clips = calibration_data(fsdd_dir, seed, calib_gain_db)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = ModelMeta.from_dict(base.meta.to_dict())
    meta.name = name
    # the fingerprint is made here: where an earlier one was taken from no longer applies
    meta.training.pop("fingerprint_from", None)
    learned = not isinstance(fp, Fingerprint)  # a network (format 3), not a DDA projection
    method = "cnn-windows" if learned else "dda-windows"
    meta.recipe = f"{meta.recipe.split('+')[0]}+{method}"  # the base's recipe, then the code

    def write(fingerprint, tau: float, into: Path) -> Encoder:
        data = fingerprint.to_bytes()
        (into / f"{name}{FINGERPRINT_SUFFIX}").write_bytes(data)
        meta.tau = tau
        meta.fingerprint = {
            "method": method, "K": int(bits),
            "sha256": sha256_hex(data),
            "reference": ("Chang et al., Neural audio fingerprint for high-specific audio "
                          "retrieval based on contrastive learning, ICASSP 2021" if learned else
                          "Burges, Platt & Jana, Distortion discriminant analysis for audio "
                          "fingerprinting, IEEE TSAP 11(3), 2003") + "; offset voting: Wang 2003",
            "training": {"base_model_sha256": base.tflite_sha256, "views": views, "seed": seed,
                         "fsdd_speakers": list(ls.FSDD_FIT_SPEAKERS),
                         "espeak_voices": list(ls.ESPEAK_FIT_VOICES), "command": command}}
        if learned and fingerprint.training:
            meta.fingerprint["training"]["window_code"] = fingerprint.training
        meta.save(into / f"{name}.json")
        shutil.copyfile(base_model, into / f"{name}.tflite")
        return Encoder.from_files(into / f"{name}.tflite")

    from model_export.excerpt_calibration import calibrate_rule

    # the model the calibration searches with has a provisional tau: it lives in a temporary
    # folder, so OUT only ever receives a calibrated model
    with tempfile.TemporaryDirectory() as tmp:
        rule, report = calibrate_rule(write(fp, 0.15, Path(tmp)), longs, clips, log=log)
    tau = round(rule.tau_window - rule.min_evidence, 4)
    if not 0.0 < tau < 0.5:
        raise SystemExit(f"calibration gave a one-window threshold {tau:.3f} outside (0, 0.5) "
                         f"(tau_window {rule.tau_window} - one-window evidence "
                         f"{rule.min_evidence}); nothing written")
    fp = dataclasses.replace(fp, rule=rule.to_dict())
    write(fp, tau, out)
    meta.metrics["excerpt_calibration"] = report
    meta.save(out / f"{name}.json")
    log(f"wrote {out / name}.* ({time.perf_counter() - t0:.0f} s)")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.excerpt_fingerprint",
                                description="Fit and calibrate the excerpt fingerprint (issue 12).")
    p.add_argument("base_model", help="a model .tflite with its .json (the CRNN of the paper)")
    p.add_argument("data_dir", help="FSDD")
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="fsdd-crnn-k384-excerpt")
    p.add_argument("--bits", type=int, default=384)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--n-mels", type=int, default=WindowingSpec.n_mels)
    p.add_argument("--fmin", type=float, default=WindowingSpec.fmin)
    p.add_argument("--fmax", type=float, default=WindowingSpec.fmax)
    p.add_argument("--top-db", type=float, default=WindowingSpec.top_db,
                   help="each window's log power is floored this many dB under its loudest cell")
    p.add_argument("--query-slack", type=int, default=WindowingSpec.query_slack_frames,
                   help="frames a short query is tried around its onset")
    p.add_argument("--min-snr-db", type=float, default=WindowingSpec.min_snr_db,
                   help="a window with fewer than 4 frames this many dB above the signal's "
                        "noise floor is buried: neither stored nor searched (0: off)")
    p.add_argument("--calib-gain-db", type=float, default=ls.GAIN_RANGE_DB[1],
                   help="each take or sentence of a calibration recording at a random gain within "
                        "+- this many dB (recordings whose level varies)")
    p.add_argument("--evidence-over", choices=("all", "span"), default=None,
                   help="the excerpt evidence sums all covered windows or the best span of "
                        "consecutive ones (store.excerpt.ExcerptRule.evidence_over)")
    p.add_argument("--projection", help="an earlier NAME.fingerprint.npz (a DDA projection or a "
                                        "learned code, model_export.window_code): keep its "
                                        "code, calibrate again")
    a = p.parse_args(argv)
    cmd = "python -m model_export.excerpt_fingerprint " + " ".join(
        shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    build_model(a.base_model, a.data_dir, a.out, name=a.name, bits=a.bits, views=a.views,
                seed=a.seed, command=cmd, projection=a.projection,
                calib_gain_db=a.calib_gain_db, evidence_over=a.evidence_over,
                windowing={"n_mels": a.n_mels, "fmin": a.fmin, "fmax": a.fmax,
                           "top_db": a.top_db, "query_slack_frames": a.query_slack,
                           "min_snr_db": a.min_snr_db})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
