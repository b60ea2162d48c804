"""How fast can a traversal over 1M index rows be in DuckDB at all (issue 13, session 31)?

    nice -n 0 .venv/bin/python docs/measure_traversal_floor.py --work /tmp/sv-floor

Issue 13 asks, at 1M rows, for traversal <= 2x FAISS ``IndexBinaryFlat`` (one thread) *and* for
every figure with one core busy <= 1.5x the idle one. On a 2-core machine with one core busy, a
query has about one core, so the two together ask for a traversal that is within 2x FAISS on
one core (or within 3x with the busy core's leftover share). This script measures the parts of
that cost on a vault the product builds (``model_export.bench``'s synthetic K = 384 codes,
1,000,000 rows, compacted by category), all with the product's distance spelling
(``store.search.distance_expr``: ``bit_count(xor(c.w, $q::HUGEINT))`` over 3 HUGEINT words):

* ``scan``: the bare distance of every row, reduced to its minimum (no ranking: the floor of
  any exact traversal in SQL);
* ``ranked``: the product's one-window traversal statement (``store.search.rows_sql``: the
  nearest L = 50 rows, ordered by distance, recording, window);
* ``faiss``: ``IndexBinaryFlat`` over the same bits, one thread, top 50.

Each at 1 and 2 DuckDB threads, idle and with a ``while True: pass`` pinned to core 1 (taskset),
p50 wall ms over the rounds, and ns of CPU per row on one thread.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = 1_000_000
K = 384
L = 50


def build(work: Path) -> Path:
    """The vault of 1M synthetic rows, as ``speechvault bench`` makes its large vault."""
    from hashing.encoder import Encoder
    from model_export import bench as B

    path = work / "floor-1m.duckdb"
    if path.exists():
        return path
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    v = B._new_vault(path, Encoder.default())
    try:
        B.bulk_insert_codes(v, B.synthetic_words(ROWS, K, rng), rng.integers(0, 10, ROWS))
    finally:
        v.close()
    return path


def words_of(path: Path) -> np.ndarray:
    """The stored codes as (n, 6) unsigned 64-bit words (as ``codes_of`` reads them)."""
    import duckdb

    from store.schema import code_words_array, code_words_sql

    con = duckdb.connect(str(path), read_only=True)
    res = con.execute(f"SELECT {', '.join(code_words_sql(K))} FROM codes").fetchnumpy()
    con.close()
    return code_words_array(res, K)


def p50_ms(fn, rounds: int) -> float:
    fn()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def measure(path: Path, words: np.ndarray, rounds: int) -> list[tuple[str, int, bool, float]]:
    import duckdb
    import faiss

    from store.schema import query_word_values
    from store.search import distance_expr, rows_sql

    q = words[12345]
    qv = query_word_values(q)
    scan = f"SELECT min({distance_expr(K)}) FROM codes AS c"
    ranked = rows_sql(K, None)
    con = duckdb.connect(str(path), read_only=True)
    index = faiss.IndexBinaryFlat(K)
    index.add(np.ascontiguousarray(words).view(np.uint8))
    faiss.omp_set_num_threads(1)
    xq = np.ascontiguousarray(q[None, :]).view(np.uint8)
    out = []
    for busy in (False, True):
        spin = (subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
                if busy else None)
        time.sleep(0.5)
        try:
            for threads in (1, 2):
                con.execute(f"SET threads = {threads}")
                out.append(("scan", threads, busy,
                            p50_ms(lambda: con.execute(scan, list(qv)).fetchall(), rounds)))
                out.append(("ranked", threads, busy,
                            p50_ms(lambda: con.execute(ranked, [*qv, L]).fetchall(), rounds)))
            out.append(("faiss", 1, busy, p50_ms(lambda: index.search(xq, L), rounds)))
        finally:
            if spin is not None:
                spin.kill()
                spin.wait()
    con.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=30)
    a = ap.parse_args()
    path = build(a.work)
    words = words_of(path)
    res = measure(path, words, a.rounds)
    faiss_idle = next(ms for what, _, busy, ms in res if what == "faiss" and not busy)
    print(f"load {os.getloadavg()}; {ROWS:,} rows, K = {K}, L = {L}")
    print("| what | DuckDB threads | idle p50 ms | busy p50 ms | busy / idle | idle / FAISS idle "
          "| ns per row (1 thread) |")
    print("|---|---|---|---|---|---|---|")
    for what in ("scan", "ranked", "faiss"):
        for threads in ((1, 2) if what != "faiss" else (1,)):
            idle = next(ms for w, t, b, ms in res if (w, t, b) == (what, threads, False))
            busy = next(ms for w, t, b, ms in res if (w, t, b) == (what, threads, True))
            per_row = f"{idle * 1e6 / ROWS:.1f}" if threads == 1 else "-"
            print(f"| {what} | {threads if what != 'faiss' else '-'} | {idle:.2f} | {busy:.2f} | "
                  f"{busy / idle:.2f}x | {idle / faiss_idle:.2f}x | {per_row} |")


if __name__ == "__main__":
    main()
