"""Add an identification fingerprint (DDA, ``hashing.fingerprint``) to a trained model (issue 7).

    python -m model_export.fingerprint hashing/models/fsdd-crnn-k384.tflite /work/shared/data/fsdd \\
        --extra-data /work/cache/sv7_espeak --extra-holdout-speaker esp-enf3 \\
        --extra-holdout-speaker esp-enm3 --calib-speaker nicolas --name fsdd-crnn-k384-dda \\
        --out /work/cache/sv8_models/

The recipe "paper+dda": the paper-recipe model is kept as it is (same TFLite bytes: h1 and h2,
so mAP is the paper recipe's by construction) and gets a second code for identification:

1. training windows: every window (``hashing.features.model_windows``, the model's own
   FeatureSpec) of the recordings of the model's *training* speakers, plus ``--extra-data``
   (e.g. espeak-ng voices, minus ``--extra-holdout-speaker``) for more voices;
2. distorted views: ``--views`` copies of each recording through the identify recipe's training
   CPOs (``hashing.cpo.hard_cpo``: 40 % noise 12-35 dB SNR, MP3, resampling,
   requantisation, compositions), paired window by window with the clean ones;
3. ``hashing.fingerprint.fit_dda`` (closed form, seconds), ``--bits`` sign bits;
4. tau from data (``model_export.identify_eval.calibrate_tau``) on ``--calib-speaker``, who
   neither trained the model nor the fingerprint and is not a test query: the largest-margin
   threshold with no impostor pair accepted. Stored as ``meta.tau``, shown by every search.

Writes ``NAME.tflite`` (a copy), ``NAME.fingerprint.npz`` and ``NAME.json``. numpy + the
runtime; no TensorFlow.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hashing.audio import load_audio
from hashing.cpo import hard_cpo
from hashing.encoder import Encoder
from hashing.features import model_windows
from hashing.fingerprint import FINGERPRINT_SUFFIX, fit_dda
from hashing.model_meta import ModelMeta, sha256_hex
from model_export import dataset as ds

__all__ = ["distortion_pairs", "add_fingerprint", "main"]

RECIPE = "paper+dda"


def distortion_pairs(signals: Sequence[np.ndarray], spec, views: int, seed: int = 1):
    """(clean windows, original windows, distorted windows) for ``fit_dda``: each recording's
    windows, and for each of ``views`` random training CPOs its copy's windows paired with the
    original's (a copy whose window count differs, e.g. trimmed differently, is skipped)."""
    rng = np.random.default_rng(seed)
    clean, orig, dist = [], [], []
    for y in signals:
        w = model_windows(y, spec)
        clean.append(w)
        for _ in range(views):
            c = model_windows(hard_cpo(rng)(y, spec.sample_rate), spec)
            if c.shape == w.shape:
                orig.append(w)
                dist.append(c)
    flat = lambda a: np.concatenate(a).reshape(sum(len(x) for x in a), -1)  # noqa: E731
    return flat(clean), flat(orig), flat(dist)


def add_fingerprint(model_path: str | Path, data_dir: str | Path, out: str | Path, *, name: str,
                    bits: int = 384, views: int = 3, reg: float = 1e-3,
                    extra_data: Sequence[str | Path] = (), extra_holdout: Sequence[str] = (),
                    calib_speakers: Sequence[str] = ("nicolas",), seed: int = 1,
                    command: str = "", log=print) -> dict[str, Any]:
    t0 = time.perf_counter()
    base = Encoder.from_files(model_path)
    meta = base.meta
    if meta.fingerprint is not None:
        raise SystemExit(f"{model_path} already has a fingerprint")
    spec = base.feature_spec
    train_spk = set(meta.training.get("train_speakers") or [])
    if not train_spk:
        raise SystemExit(f"{model_path}: its metadata names no training speakers")
    if train_spk & set(calib_speakers):
        raise SystemExit("a calibration speaker trained the model")
    items, classes = ds.list_items(data_dir)
    train = [it for it in items if it.speaker in train_spk]
    extra = []
    for d in extra_data:
        e_items, _ = ds.list_items(d)
        extra += [it for it in e_items if it.speaker not in set(extra_holdout)]
    log(f"fingerprint training: {len(train)} recordings of {sorted(train_spk)} + {len(extra)} extra")
    signals = [load_audio(it.path, spec.sample_rate) for it in train + extra]
    clean, orig, dist = distortion_pairs(signals, spec, views, seed)
    log(f"  {len(clean)} clean windows, {len(orig)} distorted pairs ({time.perf_counter() - t0:.0f} s)")
    fp = fit_dda(clean, orig, dist, bits, reg=reg)
    fp_bytes = fp.to_bytes()

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tfl = out / f"{name}.tflite"
    shutil.copyfile(model_path, tfl)
    (out / f"{name}{FINGERPRINT_SUFFIX}").write_bytes(fp_bytes)
    new = ModelMeta.from_dict(meta.to_dict())
    new.name, new.recipe = name, RECIPE
    new.metrics = {k: v for k, v in meta.metrics.items() if k not in ("evaluation", "tau_calibration")}
    new.metrics["h2_evaluation_of_base_model"] = meta.metrics.get("evaluation")
    new.fingerprint = {
        "method": "dda", "K": int(bits), "sha256": sha256_hex(fp_bytes),
        "reference": "Burges, Platt & Jana, Distortion discriminant analysis for audio "
                     "fingerprinting, IEEE TSAP 11(3), 2003",
        "training": {"base_model": str(model_path), "base_model_sha256": base.tflite_sha256,
                     "data_dir": str(data_dir), "speakers": sorted(train_spk),
                     "extra_data": [str(d) for d in extra_data],
                     "extra_speakers": ds.iter_speakers(extra), "views": int(views),
                     "distortions": "hashing.cpo.hard_cpo", "reg": float(reg),
                     "pca_dims": 1024, "seed": int(seed), "n_clean_windows": int(len(clean)),
                     "n_pairs": int(len(orig)), "command": command},
    }
    meta_path = out / f"{name}.json"
    new.save(meta_path)
    enc = Encoder.from_files(tfl, meta_path)
    from model_export.identify_eval import calibrate_tau

    cal = calibrate_tau(enc, [it for it in items if it.speaker in set(calib_speakers)], log=log)
    new.tau = float(cal["tau"])
    new.metrics["tau_calibration"] = cal
    new.save(meta_path)
    log(f"wrote {tfl}, {name}{FINGERPRINT_SUFFIX} ({len(fp_bytes) / 1e6:.1f} MB), {meta_path.name}: "
        f"tau {new.tau:.4f} ({time.perf_counter() - t0:.0f} s)")
    return {"tflite": str(tfl), "meta": str(meta_path), "tau": new.tau, "calibration": cal}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.fingerprint",
                                description="Add a DDA identification fingerprint to a trained model.")
    p.add_argument("model", help="a paper-recipe model .tflite (with its .json)")
    p.add_argument("data_dir", help="folder-per-category speech: the model's training data")
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--bits", type=int, default=384)
    p.add_argument("--views", type=int, default=3, help="distorted copies per recording")
    p.add_argument("--reg", type=float, default=1e-3, help="ridge on the distortion covariance")
    p.add_argument("--extra-data", action="append", default=[])
    p.add_argument("--extra-holdout-speaker", action="append", default=[])
    p.add_argument("--calib-speaker", action="append", default=[])
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    cmd = "python -m model_export.fingerprint " + " ".join(
        shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    add_fingerprint(a.model, a.data_dir, a.out, name=a.name, bits=a.bits, views=a.views, reg=a.reg,
                    extra_data=a.extra_data, extra_holdout=a.extra_holdout_speaker,
                    calib_speakers=a.calib_speaker or ["nicolas"], seed=a.seed, command=cmd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
