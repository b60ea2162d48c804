"""Encode time of several models, measured interleaved so that they share the same machine load.

    python -m model_export.timing hashing/models/default.tflite hashing/models/fsdd-crnn-k384.tflite \\
        --rounds 30 --out docs/results/model_timing

For each round and each model (in turn): encode a 1 s clip and a 10 s recording with
``Encoder.encode_audio`` (features + TFLite inference, decoding excluded), one interpreter
thread. Reports the minimum and the median per model; on a shared machine the minimum is the
better estimate of the cost, the median of what a user sees under that load.
Runtime only (no TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from hashing.encoder import Encoder
from model_export.evaluate import _timing_signals

__all__ = ["compare", "main"]


def compare(paths: Sequence[str | Path], rounds: int = 30, num_threads: int = 1) -> dict:
    encs = [Encoder.from_files(p, num_threads=num_threads) for p in paths]
    sr = encs[0].sample_rate
    sig = {1: _timing_signals(sr, 1.0, 0), 10: _timing_signals(sr, 10.0, 0)}
    t: dict[tuple[int, int], list[float]] = {(i, s): [] for i in range(len(encs)) for s in sig}
    parts: dict[tuple[int, int], list[tuple[float, float]]] = {k: [] for k in t}
    for e in encs:
        for y in sig.values():
            e.encode_audio(y)  # warm up
    for r in range(int(rounds)):
        for s, y in sig.items():
            if s == 10 and r % 3:
                continue  # 10 s runs: every third round
            for i, e in enumerate(encs):
                t0 = time.perf_counter()
                c = e.encode_audio(y)
                t[(i, s)].append(time.perf_counter() - t0)
                parts[(i, s)].append((c.timings["features"], c.timings["inference"]))
    out = {"rounds": int(rounds), "num_threads": num_threads, "machine": platform.machine(),
           "cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
           "python": platform.python_version(), "models": []}
    for i, e in enumerate(encs):
        row = {"name": e.meta.name, "arch": e.meta.arch, "input_mode": e.meta.features.get("input_mode"),
               "path": str(paths[i]), "tflite_bytes": len(e.tflite_bytes)}
        for s in sig:
            ts = np.array(t[(i, s)]) * 1000
            pf = np.array(parts[(i, s)]) * 1000
            k = np.argmin(ts)
            row[f"encode_{s}s_ms_min"] = float(ts.min())
            row[f"encode_{s}s_ms_median"] = float(np.median(ts))
            row[f"encode_{s}s_features_ms_at_min"] = float(pf[k, 0])
            row[f"encode_{s}s_inference_ms_at_min"] = float(pf[k, 1])
            row[f"encode_{s}s_features_ms_median"] = float(np.median(pf[:, 0]))
            row[f"encode_{s}s_inference_ms_median"] = float(np.median(pf[:, 1]))
        out["models"].append(row)
    return out


def to_markdown(res: dict, command: str) -> str:
    lines = [
        "# Encode time per model (features + inference, decode excluded)",
        "",
        f"Command: `{command}`",
        "",
        f"{res['rounds']} interleaved rounds, {res['num_threads']} interpreter thread, {res['cpus']} CPUs "
        f"shared with other work (load average {', '.join(f'{x:.1f}' for x in res['load_average'])} at the end).",
        "",
        "| model | arch | input | MB | 1 s min ms | 1 s median ms | of which features / inference (median) | "
        "10 s min ms | 10 s median ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in res["models"]:
        lines.append(
            f"| {m['name']} | {m['arch']} | {m['input_mode']} | {m['tflite_bytes'] / 1e6:.2f} | "
            f"{m['encode_1s_ms_min']:.2f} | {m['encode_1s_ms_median']:.2f} | "
            f"{m['encode_1s_features_ms_median']:.2f} / {m['encode_1s_inference_ms_median']:.2f} | "
            f"{m['encode_10s_ms_min']:.1f} | {m['encode_10s_ms_median']:.1f} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.timing")
    p.add_argument("models", nargs="+", help=".tflite files (their .json next to them)")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write <out>.json and <out>.md")
    args = p.parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = "python -m model_export.timing " + " ".join(shlex.quote(a) for a in argv_list)
    res = compare(args.models, args.rounds, args.threads)
    res["command"] = command
    md = to_markdown(res, command)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
        out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
