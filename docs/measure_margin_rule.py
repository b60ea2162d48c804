"""Measure two acceptance rules for identification on FSDD (issue 7): an absolute threshold
(D < tau) and "nearest, if clearly nearest" (D1 < t and D2 - D1 >= m).

    /work/venv/bin/python docs/measure_margin_rule.py hashing/models/default.tflite \
        [--calib nicolas] [--test theo] [--data ../shared/data/fsdd]

The library is all 3,000 FSDD recordings. Queries are CPO copies (-3 dB, +3 dB, MP3, R.Q,
noise at 20 dB SNR) of the calibration speaker's clips (to choose the rule's parameters) and of
the test speaker's clips (to measure them). "Open set" queries are the clean clips of the test
speaker with their own original removed from the library: a rule should return nothing for them,
and the share that returns something is its false-accept rate per query.

Parameters are chosen on the calibration speaker: the absolute tau with the highest recall at
precision >= 0.999, and (t, m) with the highest recall at precision >= 0.999 and open-set FAR
<= 1 %. numpy + the runtime only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hashing.audio import load_audio  # noqa: E402
from hashing.cpo import ALL_TEST_CPOS  # noqa: E402
from hashing.encoder import Encoder  # noqa: E402
from model_export import dataset as ds  # noqa: E402
from model_export.evaluate import encode_items, recording_distances  # noqa: E402

CPOS = ["-3dB", "+3dB", "MP3", "R.Q", "noise20dB"]


def distances(enc: Encoder, items, sig, lib, speaker: str) -> dict[str, np.ndarray]:
    """CPO-copy distances to the library, and the open-set distances (own original removed)."""
    q_idx = np.array([i for i, it in enumerate(items) if it.speaker == speaker])
    D, T, names = [], [], []
    for name in CPOS:
        op = ALL_TEST_CPOS[name]
        qc = encode_items(enc, [op(sig[i], enc.sample_rate) for i in q_idx])
        D.append(recording_distances(qc, lib, enc.meta.K))
        T.append(q_idx)
        names += [name] * len(q_idx)
    Do = recording_distances(encode_items(enc, [sig[i] for i in q_idx]), lib, enc.meta.K)
    Do[np.arange(len(q_idx)), q_idx] = np.inf
    return {"D": np.concatenate(D), "T": np.concatenate(T), "names": np.array(names), "Do": Do}


def two_nearest(D: np.ndarray):
    p = np.partition(D, 1, axis=1)
    return np.argmin(D, axis=1), p[:, 0], p[:, 1]


def absolute_rule(d: dict, tau: float, sel=slice(None)) -> tuple[float, float, float]:
    D, T = d["D"][sel], d["T"][sel]
    hit = D < tau
    tp = hit[np.arange(len(D)), T]
    fp = hit.sum(1) - tp
    return float(tp.mean()), float(tp.sum() / max(1, tp.sum() + fp.sum())), float((d["Do"] < tau).any(1).mean())


def margin_rule(d: dict, t: float, m: float, sel=slice(None)) -> tuple[float, float, float]:
    a, d1, d2 = two_nearest(d["D"][sel])
    acc = (d1 < t) & (d2 - d1 >= m)
    tp = acc & (a == d["T"][sel])
    _, o1, o2 = two_nearest(d["Do"])
    return float(tp.mean()), float(tp.sum() / max(1, acc.sum())), float(((o1 < t) & (o2 - o1 >= m)).mean())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fsdd"))
    ap.add_argument("--calib", default="nicolas")
    ap.add_argument("--test", default="theo")
    args = ap.parse_args()
    enc = Encoder.from_files(args.model, num_threads=2)
    items, _ = ds.list_items(args.data)
    sig = [load_audio(it.path, enc.sample_rate) for it in items]
    lib = encode_items(enc, sig)
    cal, test = (distances(enc, items, sig, lib, s) for s in (args.calib, args.test))
    K = enc.meta.K
    ts = (np.arange(K // 2) + 0.5) / K
    tau = max((t for t in ts if absolute_rule(cal, t)[1] >= 0.999), key=lambda t: absolute_rule(cal, t)[0])
    best = None
    for t in ts[::2]:
        for m in np.arange(60) / K:
            r, p, far = margin_rule(cal, t, m)
            if p >= 0.999 and far <= 0.01 and (best is None or r > best[0]):
                best = (r, t, m)
    _, t, m = best
    print(f"model {enc.meta.name}; calibrated on {args.calib}, tested on {args.test}; "
          f"library {len(items)} recordings")
    print(f"absolute: tau = {tau:.4f}; margin: t = {t:.4f}, m = {m:.4f}\n")
    print("| CPO | absolute R | P | margin R | P |\n|---|---|---|---|---|")
    for name in CPOS:
        sel = test["names"] == name
        a, b = absolute_rule(test, tau, sel), margin_rule(test, t, m, sel)
        print(f"| {name} | {a[0]:.4f} | {a[1]:.4f} | {b[0]:.4f} | {b[1]:.4f} |")
    a, b = absolute_rule(test, tau), margin_rule(test, t, m)
    print(f"| all | {a[0]:.4f} | {a[1]:.4f} | {b[0]:.4f} | {b[1]:.4f} |")
    print(f"| open-set false accepts per query | {a[2]:.4f} | | {b[2]:.4f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
