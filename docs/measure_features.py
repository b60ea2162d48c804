"""Measure how alike model inputs of different recordings are, and how stable they are under CPOs.

Run (reads 60 FSDD clips, ~1 min on one core):

    /work/venv/bin/python docs/measure_features.py [--speakers 6] [--take 0]

For each variant of the feature pipeline it prints, on the first model window of each FSDD clip:

* cross:  mean / 95th percentile cosine similarity between windows of *different* recordings
          (all pairs; lower is better: codes of different recordings should differ);
* same-digit: mean cosine between recordings of the same digit by different speakers;
* per CPO: mean cosine between a clip and its CPO copy (higher is better);
* lead0.25s / lead+noise20: the clip with 0.25 s of digital silence in front (then plus noise),
          i.e. the same words recorded with a different lead-in;
* nn@CPO: fraction of clips whose CPO copy has the clip itself as the nearest clean window
          (cosine), a model-free proxy for retrieval under that CPO.

FSDD is found via $SPEECHVAULT_FSDD, else ../shared/data/fsdd relative to the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hashing.audio import load_audio  # noqa: E402
from hashing.cpo import ALL_TEST_CPOS  # noqa: E402
from hashing.features import FeatureSpec, _normalise, log_mel_spectrogram, model_windows  # noqa: E402


def fsdd_dir() -> Path | None:
    for c in (os.environ.get("SPEECHVAULT_FSDD"), REPO.parent / "shared" / "data" / "fsdd"):
        if c and Path(c).is_dir():
            return Path(c)
    return None


def naive(spec: FeatureSpec, floor_db: float | None):
    """What one gets without silence handling: zero-pad the raw clip to 1 s (digital silence),
    log-Mel with only the absolute floor (or a top_db floor), standardise the whole window."""
    s = spec.replace(top_db=floor_db)

    def f(y):
        n = s.clip_samples
        y = np.pad(y, (0, max(0, n - y.shape[0])))[:n]
        return _normalise(log_mel_spectrogram(y, s).astype(np.float64), s).ravel()

    return f


def ours(spec: FeatureSpec):
    return lambda y: model_windows(y, spec)[0].ravel().astype(np.float64)


def cos_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speakers", type=int, default=6)
    ap.add_argument("--take", type=int, default=0)
    args = ap.parse_args()
    root = fsdd_dir()
    if root is None:
        sys.exit("FSDD not found (set SPEECHVAULT_FSDD)")
    speakers = sorted({p.stem.split("_")[1] for p in root.glob("0/*.wav")})[: args.speakers]
    files = [root / str(d) / f"{d}_{sp}_{args.take}.wav" for sp in speakers for d in range(10)]
    files = [f for f in files if f.exists()]
    ys = [load_audio(f) for f in files]
    digits = np.array([int(f.stem.split("_")[0]) for f in files])
    spk = np.array([f.stem.split("_")[1] for f in files])
    cpos = {k: [ALL_TEST_CPOS[k](y, 16000) for y in ys] for k in ("-3dB", "MP3", "R.Q", "noise20dB", "noise10dB")}
    # a query recorded with 0.25 s more lead-in (digital silence, then with 20 dB noise on top)
    cpos["lead0.25s"] = [np.concatenate([np.zeros(4000, np.float32), y]) for y in ys]
    cpos["lead+noise20"] = [ALL_TEST_CPOS["noise20dB"](z, 16000) for z in cpos["lead0.25s"]]
    base = FeatureSpec()
    variants = {
        "naive: pad digital silence, floor 1e-10 only": naive(base, None),
        "naive + top_db=80 floor": naive(base, 80.0),
        "pre-emph .97, pad 0, top_db 80, no trim": ours(base.replace(top_db=80.0, trim_top_db=None)),
        "pad 0, top_db 30, no trim": ours(base.replace(trim_top_db=None)),
        "DEFAULT (no pre-emph, pad 0, top_db 30, trim)": ours(base),
        "default, top_db 80": ours(base.replace(top_db=80.0)),
        "default, top_db 50": ours(base.replace(top_db=50.0)),
        "default, top_db 20": ours(base.replace(top_db=20.0)),
        "default, trim 25 dB": ours(base.replace(trim_top_db=25.0)),
        "default, trim margin 0.05 s": ours(base.replace(trim_margin_seconds=0.05)),
        "default, pre-emphasis 0.97": ours(base.replace(pre_emphasis=0.97)),
        "default, pre-emphasis 0.5": ours(base.replace(pre_emphasis=0.5)),
        "default, fmax 4 kHz": ours(base.replace(fmax=4000.0)),
        "default, fmax 4 kHz, pre-emphasis 0.97": ours(base.replace(fmax=4000.0, pre_emphasis=0.97)),
    }
    off = ~np.eye(len(ys), dtype=bool)
    diff = off & (digits[:, None] != digits[None, :])
    same = off & (digits[:, None] == digits[None, :]) & (spk[:, None] != spk[None, :])
    print(f"{len(ys)} FSDD clips ({len(speakers)} speakers x 10 digits, take {args.take})")
    print(f"{'variant':46s} {'cross':>12s} {'same-dig':>8s} " + " ".join(f"{k:>13s}" for k in cpos))
    print(f"{'':46s} {'mean/p95':>12s} {'mean':>8s} " + " ".join(f"{'cos   nn@':>13s}" for k in cpos))
    for name, f in variants.items():
        X = np.stack([f(y) for y in ys])
        C = cos_matrix(X, X)
        row = f"{name:46s} {C[diff].mean():5.3f}/{np.percentile(C[diff], 95):5.3f} {C[same].mean():8.3f} "
        for k, zs in cpos.items():
            Z = np.stack([f(z) for z in zs])
            Q = cos_matrix(Z, X)
            nn = float(np.mean(np.argmax(Q, axis=1) == np.arange(len(ys))))
            row += f" {np.mean(np.diag(Q)):6.3f} {nn:5.2f} "
        print(row)


if __name__ == "__main__":
    main()
