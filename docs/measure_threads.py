"""Measure the encoder's numeric stages with 1 vs 2 BLAS threads and 1 vs 2 vs default LiteRT
threads, idle and with the other core busy (issue 13): the numbers behind ``hashing/threads.py``.

    .venv/bin/python docs/measure_threads.py            # idle
    .venv/bin/python docs/measure_threads.py --busy     # one spinning process pinned to core 0

Stages timed on a 10 s recording (FSDD clips joined, else the bundled examples), median of
``--reps`` calls after 3 warm-ups, in ms, the configurations taking turns:

* ``features``: ``model_windows`` (FFT, Mel filter bank product ``fb @ pw.T``, normalisation);
* ``fingerprint``: ``Fingerprint.bits`` (one (n, 4096) x (4096, 384) product);
* ``inference``: ``Encoder.run_windows`` with LiteRT ``num_threads`` 1 or 2 (LiteRT's default is 1);
* ``encode``: ``Encoder.encode_audio`` end to end (what a query or an ingested file costs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hashing.encoder import Encoder  # noqa: E402
from hashing import threads  # noqa: E402
from hashing.features import model_windows  # noqa: E402


def ten_seconds(sr: int) -> np.ndarray:
    from hashing.audio import load_audio

    root = Path(__file__).resolve().parents[1]
    fsdd = root.parent / "shared" / "data" / "fsdd"
    files = sorted(fsdd.glob("*/*.wav"))[:40] or sorted((root / "speechvault" / "examples").glob("*.wav"))
    parts, n = [], 0
    for f in files * 10:
        y = load_audio(f, sr)
        parts += [y, np.zeros(sr // 5, np.float32)]
        n += len(y) + sr // 5
        if n >= 10 * sr:
            break
    return np.concatenate(parts)[: 10 * sr]


def interleaved_ms(fns: dict, reps: int) -> dict:
    """Median ms of each (setup, fn) in ``fns``, the configurations taking turns rep by rep so
    that a change in the machine's load hits them all alike."""
    ts = {k: [] for k in fns}
    pinned = threads.BLAS_THREADS
    try:
        for r in range(reps + 3):
            for k, (limit, fn) in fns.items():
                # the coding path pins BLAS to threads.BLAS_THREADS itself: set what it pins to
                threads.BLAS_THREADS = limit
                with threadpool_limits(limits=limit, user_api="blas"):
                    t0 = time.perf_counter()
                    fn()
                    dt = time.perf_counter() - t0
                if r >= 3:
                    ts[k].append(dt)
    finally:
        threads.BLAS_THREADS = pinned
    return {k: 1e3 * statistics.median(v) for k, v in ts.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--busy", action="store_true", help="spin one process pinned to core 0")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    spinner = None
    if args.busy:
        spinner = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
    try:
        run(args.reps, args.busy)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def run(reps: int, busy: bool) -> None:
    encs = {nt: Encoder.default(num_threads=nt) for nt in (1, 2)}
    enc = encs[1]
    fp = enc._fp
    print(f"{'busy' if busy else 'idle'}: load {tuple(round(x, 2) for x in os.getloadavg())}, "
          f"model {enc.meta.name}, median of {reps} (ms)")
    for secs in (10, 1):
        y = ten_seconds(enc.sample_rate)[: secs * enc.sample_rate]
        win, _ = model_windows(y, enc.feature_spec, return_starts=True)
        fns = {}
        for b in (1, 2):
            fns[f"features blas={b}"] = (b, lambda: model_windows(y, enc.feature_spec, return_starts=True))
            fns[f"fingerprint blas={b}"] = (b, lambda: fp.bits(win))
        for nt, e in encs.items():
            fns[f"inference litert={nt}"] = (1, lambda e=e: e.run_windows(win))
        for b in (1, 2):
            for nt, e in encs.items():
                fns[f"encode blas={b} litert={nt}"] = (b, lambda e=e: e.encode_audio(y))
        res = interleaved_ms(fns, reps)
        print(f"  {secs} s recording, {len(win)} windows: "
              + ", ".join(f"{k} {v:.2f}" for k, v in res.items()))


if __name__ == "__main__":
    main()
