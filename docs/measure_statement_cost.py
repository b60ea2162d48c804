"""Where a search statement's time goes in DuckDB (issue 13, session 20): the profile figures
quoted in store/search.py and the session-20 section of docs/results/bench.md.

    .venv/bin/python docs/measure_statement_cost.py --vaults /tmp/sv-ab   # after measure_search_ab build/run --upgrade

On the format-5 copy of the 10k real-code vault (``t4-v5.duckdb``), one DuckDB thread:

* DuckDB's profile (``PRAGMA enable_profiling='json'``) of the 10 s recording's two-stage
  search, as the former per-window-column text (``search_sql``) and as ``windows_sql``:
  ``planner.binding_time``, ``optimizer.total_time`` and the median CPU per statement;
* the one-window statement run as is, without its label join, and as SQL ``PREPARE`` +
  ``EXECUTE`` with its values;
* the ranked statement with and without the grouping in SQL (``search_sql``) for one window.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import search as S  # noqa: E402
from store.sql_dialects import DUCKDB  # noqa: E402
from store.vault import Vault  # noqa: E402


def _cpu(con, sql, params, n=60) -> float:
    ts = []
    for _ in range(n):
        t0 = time.process_time()
        con.execute(sql, params).fetchall()
        ts.append(time.process_time() - t0)
    return 1e3 * float(np.median(ts))


def _profile(con, sql, params) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp()) / "p.json"
    con.execute("PRAGMA enable_profiling='json'")
    con.execute(f"PRAGMA profiling_output='{out}'")
    b, o = [], []
    for _ in range(15):
        con.execute(sql, params).fetchall()
        d = json.loads(out.read_text())
        b.append(d["planner"]["binding_time"])
        o.append(d["optimizer"]["total_time"])
    con.execute("PRAGMA disable_profiling")
    return 1e3 * float(np.median(b)), 1e3 * float(np.median(o))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vaults", type=Path, required=True)
    a = ap.parse_args()
    print("load", os.getloadavg())
    with Vault.open(a.vaults / "t4-v5.duckdb") as v:
        q = v.encode_query((a.vaults / "q10s.wav").read_bytes())
        con = v._db()
        con.execute("SET threads = 1")
        words = [[int(x) for x in w] for w in q.words]
        probes = [[int(c)] for c in q.category]
        params, groups = S.search_params(words, probes, 40 * len(words), 10)
        old = S.search_sql(v.K, len(words), groups)
        new, new_p = S.ranked_statement(v.K, words, probes, 40 * len(words))
        for name, sql, p in (("per-window columns (search_sql)", old, params),
                             ("windows as list parameters", new, new_p)):
            bind, opt = _profile(con, sql, p)
            print(f"10 s recording, two-stage, {name}: binding {bind:.2f} ms, optimizer "
                  f"{opt:.2f} ms, CPU {_cpu(con, sql, p):.2f} ms")
        q1 = pickle.loads((a.vaults / "qs.pkl").read_bytes())[0]
        w1, p1 = [[int(x) for x in q1.words[0]]], [[int(q1.category[0])]]
        one, one_p = S.ranked_statement(v.K, w1, p1, 40)
        con.execute("PREPARE sv_one AS " + one)
        execute = f"EXECUTE sv_one({', '.join(str(x) for x in one_p)})"
        grouped_p, g = S.search_params(w1, p1, 40, 10)
        bare = one.replace(S._LABEL_ROWS, "SELECT * FROM top_rows")
        print(f"1 window, two-stage: as is {_cpu(con, one, one_p, 200):.2f} ms CPU, "
              f"without the label join {_cpu(con, bare, one_p, 200):.2f} ms, "
              f"PREPARE + EXECUTE {_cpu(con, execute, None, 200):.2f} ms, "
              f"grouped in SQL (search_sql) {_cpu(con, S.search_sql(v.K, 1, g), grouped_p, 200):.2f} ms")
        print("(words bound signed:", DUCKDB.word_values(w1[0])[:1], "...)")
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()
