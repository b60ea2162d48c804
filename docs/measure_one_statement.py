"""Measure the per-window search as one statement against the former per-window statements
(issue 13), in one process, on the same vault, the two taking turns query by query.

    .venv/bin/python docs/measure_one_statement.py [--queries 40] [--data /work/shared/data/fsdd]

The vault is the bench's Table 4 vault (10,000 recordings of real codes of the Table 4 model,
``model_export.bench.real_codes``, cached after the first run). Queries: stored codes with 5 %
of their bits flipped (one window each), and a 10 s recording coded once (10 windows).
"old" is ``tests.test_search_statement.reference_search`` (per query window: count(*) of its
categories and the ranked statement, growing L; merged in Python; then the labels); "new" is
``Vault.search`` (one statement). Prints the median wall and CPU time (process_time: every
thread of the process) per search in ms and the load average; the results are compared too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = ("two-stage", "traversal", "multi-probe", "auto")


def _vault(tmp: Path, data):
    from hashing.encoder import Encoder
    from model_export import bench as b

    enc = Encoder.shipped(b.TABLE4_MODEL, num_threads=1)
    files, labels, _ = b._find_data(data)
    rc = b.real_codes(enc, files, labels, 1000, cache_dir=b._default_cache(), log=lambda s: None)
    v = b._new_vault(tmp / "t4.duckdb", enc)
    b.bulk_insert_codes(v, rc["words"], rc["category"], owner=rc["owner"],
                        labels=list(rc["labels"]), names=list(rc["names"]))
    return v, rc, b._long_recording(files, enc.sample_rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--data", default=None)
    a = ap.parse_args()
    from model_export.bench import _flip
    from store.records import QueryCode
    from tests.test_search_statement import reference_auto, reference_search

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="sv-one-stmt-") as tmp:
        v, rc, wav10 = _vault(Path(tmp), a.data)
        firsts = np.searchsorted(rc["owner"], np.arange(int(rc["owner"].max()) + 1))
        one = [QueryCode(category=np.array([rc["category"][i]]), K=v.K,
                         words=_flip(rc["words"][i], v.K, 0.05, rng)[None, :])
               for i in rng.choice(firsts, a.queries, replace=False)]
        q10 = v.encode_query(wav10)
        print(f"load {os.getloadavg()}; vault {v.info().windows} rows")

        def old(q, mode):
            if mode == "auto":
                return reference_auto(v, q, v.tau, 2, 10)[0]
            return reference_search(v, q, mode, 2, 10)[0]

        def new(q, mode):
            return [(h.recording_id, h.name, h.category, h.distance, h.query_window, h.window)
                    for h in v.search(q, mode=mode).nearest]

        for label, queries in (("1 window", one), (f"10 s ({q10.n_windows} windows)",
                                                   [q10] * max(10, a.queries // 3))):
            for mode in MODES:
                wall: dict[str, list[float]] = {"old": [], "new": []}
                cpu: dict[str, list[float]] = {"old": [], "new": []}
                for q in queries[:2]:
                    assert old(q, mode) == new(q, mode)
                for q in queries:
                    for k, f in (("old", old), ("new", new)):
                        c0, t0 = time.process_time(), time.perf_counter()
                        f(q, mode)
                        wall[k].append(time.perf_counter() - t0)
                        cpu[k].append(time.process_time() - c0)
                print(f"{label:18s} {mode:11s} " + "  ".join(
                    f"{k}: wall p50 {1e3 * np.median(wall[k]):6.2f} cpu p50 "
                    f"{1e3 * np.median(cpu[k]):6.2f}" for k in wall)
                    + f"  new/old cpu {np.median(cpu['new']) / np.median(cpu['old']):.2f}")
        v.close()
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
