"""The ranked statement's distance summed as INTEGER, DOUBLE or FLOAT, and ``auto``'s two
statements against one (issue 13, session 22): the numbers of the "Issue 13, session 22" section
of docs/results/bench.md.

    .venv/bin/python docs/measure_search_ab.py build --out V   # once: the 10k and 1M vaults
    .venv/bin/python docs/measure_rank_sum.py --vaults V
    .venv/bin/python docs/measure_rank_sum.py --vaults V --gate 10000:1 10000:10 30000:1 100000:1

Every variant runs on the same connection and query, the variants taking turns (``--rounds``
rounds of ``--reps`` each), and must return the same rows as the INTEGER text; printed: the
median CPU ms (``time.process_time``) per statement, one DuckDB thread, and the load average
(on a shared machine CPU time is the steadier figure).

- ``10 s``: the 10 windows of ``V/q10s.wav`` coded by the vault's model, at 10k rows:
  two-stage and traversal (``store.search.windows_sql``), and ``auto``'s fall-back as the
  two statements in turn or as ``store.search.nearest_both``'s one statement.
- ``1M``: one window of ``V/qs1m.pkl``, two-stage and traversal (``window_sql``).
- ``--gate ROWS:WINDOWS ...``: instead, the bound of ``store.search.auto_one_scan``: a vault of
  ROWS random codes in 10 categories (made once as ``V/gate-ROWS.duckdb``), a query of WINDOWS
  stored codes with random categories: two-stage, traversal and ``nearest_both``'s statement.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import search as S  # noqa: E402
from store.vault import Vault  # noqa: E402

SUMS = ("INTEGER", "DOUBLE", "FLOAT")


def _as(sql: str, sum_type: str) -> str:
    return sql.replace(f"::{S.RANK_SUM_TYPE}", f"::{sum_type}")


def _cpu(con, sql: str, params: list, reps: int) -> tuple[list[float], list]:
    ts, rows = [], None
    for _ in range(reps):
        c0 = time.process_time()
        rows = con.execute(sql, params).fetchall()
        ts.append(time.process_time() - c0)
    return ts, [tuple(int(x) if isinstance(x, float) else x for x in r) for r in rows]


def _compare(con, variants: dict[str, list[tuple[str, list]]], rounds: int, reps: int,
             same_rows: bool = True) -> None:
    """``variants``: name -> statements run in turn (their CPU summed); ``same_rows``: the
    variants are one statement each that must return the first one's rows."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    first: dict[str, list] = {}
    for _ in range(rounds):
        for name, stmts in variants.items():
            total = np.zeros(reps)
            got = []
            for sql, params in stmts:
                ts, rows = _cpu(con, sql, params, reps)
                total += np.array(ts)
                got.append(rows)
            times[name] += list(total)
            first.setdefault(name, got)
    ref = None
    for name in variants:
        same = ""
        if same_rows and len(first[name]) == 1 and ref is not None and len(ref) == 1:
            same = "  same rows" if first[name] == ref else "  ROWS DIFFER"
        ref = ref if ref is not None else first[name]
        print(f"  {name:38s} {1e3 * np.median(times[name]):7.3f} ms CPU{same}")


def _gate(vaults: Path, rows: int, windows: int, rounds: int, reps: int) -> None:
    from hashing.encoder import Encoder
    from model_export import bench as B

    path = vaults / f"gate-{rows}.duckdb"
    rng = np.random.default_rng(0)
    if not path.exists():
        v = B._new_vault(path, Encoder.shipped(B.TABLE4_MODEL, num_threads=1))
        B.bulk_insert_codes(v, B.synthetic_words(rows, 384, rng), rng.integers(0, 10, rows))
        v.close()
    with Vault.open(path) as v:
        con = v._db()
        con.execute("SET threads = 1")
        ws = [[int(x) for x in v.codes_of(int(r)).words[0]] for r in rng.integers(1, rows, windows)]
        cats = [[int(c)] for c in rng.integers(0, 10, windows)]
        pairs = max(S.FIRST_L_FACTOR * 10, S.MIN_FIRST_L) * windows
        one = ((S.window_sql(v.K, None, labels=False, category=True),
                [pairs, *S.DUCKDB.word_values(ws[0])]) if windows == 1 else
               (S.windows_sql(v.K, traversal=True, labels=False, category=True),
                S.windows_params(ws, None, pairs)))
        print(f"{rows:,} rows, {windows} windows")
        _compare(con, {"two-stage": [S.ranked_statement(v.K, ws, cats, pairs, labels=False)],
                       "traversal": [S.ranked_statement(v.K, ws, None, pairs, labels=False)],
                       "one statement (nearest_both)": [one]}, rounds, reps, same_rows=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vaults", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--gate", nargs="+", metavar="ROWS:WINDOWS")
    a = ap.parse_args()
    print("load", os.getloadavg())
    if a.gate:
        for g in a.gate:
            rows, windows = (int(x) for x in g.split(":"))
            _gate(a.vaults, rows, windows, a.rounds, a.reps)
        print("load", os.getloadavg())
        return
    with Vault.open(a.vaults / "t4.duckdb") as v:
        q = v.encode_query((a.vaults / "q10s.wav").read_bytes())
        con = v._db()
        con.execute("SET threads = 1")
        words = [[int(x) for x in w] for w in q.words]
        probes = [[int(c)] for c in q.category]
        L = max(S.FIRST_L_FACTOR * 10, S.MIN_FIRST_L)  # top 10, as the bench
        pairs = L * len(words)
        two = S.ranked_statement(v.K, words, probes, pairs, labels=False)
        trav = S.ranked_statement(v.K, words, None, pairs, labels=False)
        one = (S.windows_sql(v.K, traversal=True, labels=False, category=True),
               S.windows_params(words, None, pairs))
        print(f"10 s query ({len(words)} windows), {v.info().windows:,} rows")
        for name, (sql, params) in (("two-stage", two), ("traversal", trav)):
            _compare(con, {f"{name}, {t}": [(_as(sql, t), params)] for t in SUMS},
                     a.rounds, a.reps)
        _compare(con, {"auto fall-back, two statements (FLOAT)": [two, trav],
                       "auto, one statement (nearest_both)": [one]}, a.rounds, a.reps,
                 same_rows=False)
    qs = pickle.loads((a.vaults / "qs1m.pkl").read_bytes())
    with Vault.open(a.vaults / "big.duckdb") as v:
        con = v._db()
        con.execute("SET threads = 1")
        print(f"1M rows, one window ({len(qs)} queries, the first)")
        w = [[int(x) for x in qs[0].words[0]]]
        for name, probes in (("two-stage", [[int(qs[0].category[0])]]), ("traversal", None)):
            sql, params = S.ranked_statement(v.K, w, probes, max(S.FIRST_L_FACTOR * 10, S.MIN_FIRST_L),
                                             labels=False)
            _compare(con, {f"{name}, {t}": [(_as(sql, t), params)] for t in SUMS},
                     max(2, a.rounds // 3), max(2, a.reps // 3))
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()
