"""Measure the ranked Hamming statement on three word layouts of the same 384-bit codes
(issue 13): the numbers behind the word-layout recommendation in docs/results/bench.md.

    .venv/bin/python docs/measure_word_layout.py [--rows 1000000] [--reps 7] [--threads 1]

DuckDB has no ``bit_count(UBIGINT)``: today's 6 UBIGINT words are each cast to HUGEINT before
the count (EXPLAIN shows ``bit_count(CAST(xor(w0, ...) AS HUGEINT))``). The layouts, in one
in-memory database, the same top-40 traversal statement, the layouts taking turns:

* ``UBIGINT x6``: today's columns;
* ``BIGINT x6``: the same 64 bits stored signed (two's complement): ``bit_count(BIGINT)`` is
  native, and the distances are identical (checked);
* ``HUGEINT x3``: 128-bit words (2 UBIGINT words per column; the top bit of each pair is
  dropped here to stay in HUGEINT's range, so the distances differ: a speed figure only).

Prints the median and minimum wall time per statement and the load average.
"""

from __future__ import annotations

import argparse
import os
import time

import duckdb
import numpy as np

_U63 = 2**63


def _tables(con: duckdb.DuckDBPyConnection, n: int) -> None:
    words = ", ".join(f"hash(i * 7 + {k}) AS w{k}" for k in range(6))
    con.execute(f"CREATE TABLE cu AS SELECT i AS recording_id, {words} FROM range({n}) t(i)")
    signed = ", ".join(
        f"(CASE WHEN w{k} >= {_U63}::UBIGINT THEN (w{k} - {_U63}::UBIGINT)::BIGINT "
        f"- 9223372036854775807 - 1 ELSE w{k}::BIGINT END) AS w{k}" for k in range(6))
    con.execute(f"CREATE TABLE cb AS SELECT recording_id, {signed} FROM cu")
    wide = ", ".join(f"((w{2 * k} >> 1)::HUGEINT << 64 | w{2 * k + 1}::HUGEINT) AS h{k}"
                     for k in range(3))
    con.execute(f"CREATE TABLE ch AS SELECT recording_id, {wide} FROM cu")


def _statements(q: list[int]) -> dict[str, tuple[str, list]]:
    def ranked(dist: str, table: str) -> str:
        return f"SELECT recording_id, {dist} AS d FROM {table} ORDER BY d, recording_id LIMIT 40"

    signed = [x - 2**64 if x >= _U63 else x for x in q]
    wide = [str(((q[2 * k] >> 1) << 64) | q[2 * k + 1]) for k in range(3)]
    return {
        "UBIGINT x6 (today)": (ranked(" + ".join(
            f"bit_count(xor(w{k}, ${k + 1}::UBIGINT))::INTEGER" for k in range(6)), "cu"), q),
        "BIGINT x6": (ranked(" + ".join(
            f"bit_count(xor(w{k}, ${k + 1}::BIGINT))::INTEGER" for k in range(6)), "cb"), signed),
        "HUGEINT x3": (ranked(" + ".join(
            f"bit_count(xor(h{k}, ${k + 1}::HUGEINT))::INTEGER" for k in range(3)), "ch"), wide),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    con = duckdb.connect()
    con.execute(f"SET threads = {int(a.threads)}")
    _tables(con, a.rows)
    q = [int(x) for x in np.random.default_rng(0).integers(0, 2**64, 6, dtype=np.uint64)]
    stmts = _statements(q)
    got = {k: con.execute(sql, p).fetchall() for k, (sql, p) in stmts.items()}
    same = [r[1] for r in got["UBIGINT x6 (today)"]] == [r[1] for r in got["BIGINT x6"]]
    print(f"load {os.getloadavg()}; {a.rows} rows, {a.threads} thread(s); "
          f"BIGINT distances identical to UBIGINT: {same}")
    times: dict[str, list[float]] = {k: [] for k in stmts}
    for _ in range(a.reps):
        for k, (sql, p) in stmts.items():
            t0 = time.perf_counter()
            con.execute(sql, p).fetchall()
            times[k].append(time.perf_counter() - t0)
    base = float(np.median(times["UBIGINT x6 (today)"]))
    for k, ts in times.items():
        med = float(np.median(ts))
        print(f"{k:20s} p50 {1e3 * med:7.1f} ms  min {1e3 * min(ts):7.1f} ms  "
              f"{med / base:.2f}x today")
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
