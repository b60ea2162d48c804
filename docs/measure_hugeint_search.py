"""The one-window search statement on format 5's 6 BIGINT words against 3 HUGEINT words of the
same 384 bits, on the bench's vaults (issue 13, session 21): the case for a format 6, adopted in
session 25 (``store.schema._v5_to_v6``). It reads format-5 vaults (``*-v5.duckdb``: build them
with a format-5 tree, e.g. ``git archive b93546b``), as it compares against format 5's words.

    .venv/bin/python docs/measure_search_ab.py build --out /tmp/sv-ab
    .venv/bin/python docs/measure_search_ab.py run --tree . --vaults /tmp/sv-ab --upgrade
    nice -n 10 .venv/bin/python docs/measure_hugeint_search.py --vaults /tmp/sv-ab --work /tmp/sv-h

Unlike docs/measure_word_layout.py (random bits, the top bit of each pair dropped), the HUGEINT
words here hold every bit of the stored codes (high word * 2^64 + the low word's unsigned
value, two's complement in 128 bits), and the script checks that every distance and every
ranked row is the same in both layouts before timing. Each copy is ordered by category like a
compacted vault. One DuckDB thread; the statements of ``store.search.window_sql`` without the
labels; variants take turns in a shuffled order each round; median CPU ms.
"""
from __future__ import annotations

import argparse
import os
import pickle
import random
import statistics
import time
from pathlib import Path

import duckdb

_TWO64 = 1 << 64


def _pair(lo: str, hi: str) -> str:
    return (f"({hi}::HUGEINT * 18446744073709551616::HUGEINT + ({lo}::HUGEINT + "
            f"CASE WHEN {lo} < 0 THEN 18446744073709551616::HUGEINT ELSE 0::HUGEINT END))")


def build(vaults: Path, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    for name in ("t4", "big"):
        out = work / f"{name}.duckdb"
        if out.exists():
            continue
        con = duckdb.connect(str(out))
        con.execute(f"ATTACH '{vaults / (name + '-v5.duckdb')}' AS src (READ_ONLY)")
        con.execute("CREATE TABLE codes AS SELECT recording_id, win, category, "
                    "w0, w1, w2, w3, w4, w5, "
                    f"{_pair('w0', 'w1')} AS h0, {_pair('w2', 'w3')} AS h1, "
                    f"{_pair('w4', 'w5')} AS h2 "
                    "FROM src.codes ORDER BY category, recording_id, win")
        bad = con.execute(
            "SELECT count(*) FROM codes WHERE " + " + ".join(
                f"bit_count(h{i})::INTEGER" for i in range(3)) + " <> " + " + ".join(
                f"bit_count(w{i})::INTEGER" for i in range(6))).fetchone()[0]
        assert bad == 0, bad
        con.execute("CHECKPOINT")
        con.close()


def _signed(w: int) -> int:
    return w - _TWO64 if w >= (1 << 63) else w


def _huge(ws: list[int]) -> list[int]:
    return [ws[i + 1] * _TWO64 + (ws[i] % _TWO64) for i in range(0, 6, 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vaults", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    a = ap.parse_args()
    build(a.vaults, a.work)
    print("load", os.getloadavg())
    d6 = " + ".join(f"bit_count(xor(c.w{i}, ${i + 2}::BIGINT))::INTEGER" for i in range(6))
    d3 = " + ".join(f"bit_count(xor(c.h{i}, ${i + 2}::HUGEINT))::INTEGER" for i in range(3))
    tail = " AS dist, 0 AS qw, c.win FROM codes AS c {where} ORDER BY dist, recording_id, win LIMIT $1"
    for name, qfile, rounds in (("t4", "qs.pkl", 300), ("big", "qs1m.pkl", 40)):
        qs = pickle.loads((a.vaults / qfile).read_bytes())
        con = duckdb.connect(str(a.work / f"{name}.duckdb"), read_only=True)
        con.execute("SET threads = 1")
        W = [[_signed(int(x)) for x in q.words[0]] for q in qs]
        C = [int(q.category[0]) for q in qs]
        sql = {
            "two-stage, 6 BIGINT": (f"SELECT c.recording_id, {d6}" + tail.format(
                where="WHERE c.category IN ($8::SMALLINT)"), lambda i: [40, *W[i], C[i]]),
            "two-stage, 3 HUGEINT": (f"SELECT c.recording_id, {d3}" + tail.format(
                where="WHERE c.category IN ($5::SMALLINT)"), lambda i: [40, *_huge(W[i]), C[i]]),
            "traversal, 6 BIGINT": (f"SELECT c.recording_id, {d6}" + tail.format(where=""),
                                    lambda i: [40, *W[i]]),
            "traversal, 3 HUGEINT": (f"SELECT c.recording_id, {d3}" + tail.format(where=""),
                                     lambda i: [40, *_huge(W[i])]),
        }
        for i in range(len(qs)):
            for mode in ("two-stage", "traversal"):
                s6, p6 = sql[f"{mode}, 6 BIGINT"]
                s3, p3 = sql[f"{mode}, 3 HUGEINT"]
                assert con.execute(s6, p6(i)).fetchall() == con.execute(s3, p3(i)).fetchall()
        times: dict[str, list[float]] = {k: [] for k in sql}
        names = list(sql)
        rng = random.Random(0)
        for r in range(rounds):
            rng.shuffle(names)
            for k in names:
                s, p = sql[k]
                args = p(r % len(qs))
                c0 = time.process_time()
                con.execute(s, args).fetchall()
                times[k].append(time.process_time() - c0)
        n = con.execute("SELECT count(*) FROM codes").fetchone()[0]
        for k in sql:
            print(f"{n:>9,} rows  {k:22s} cpu p50 {1e3 * statistics.median(times[k]):7.3f} ms")
        con.close()
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()
