"""Search p50 on the vault file vs DuckDB on the lake vs ClickHouse (chDB) on the same lake.

Builds a synthetic vault (K = 384, C = 10; ``--rows`` index rows, ``--windows`` per recording,
words from DuckDB's ``hash``, so the high bit is set in half of them; a 32-byte stand-in blob per
recording), clusters it, exports it with ``export-lake`` (timed), then runs the same queries --
stored rows with ``--flip`` bits flipped -- on every engine, category-filtered (two-stage) and
traversal, and checks every top-10 against numpy (exact: best window per recording, ordered by
distance then id). Prints one table, the bytes on disk and the load average before and after.

    nice -n 10 .venv/bin/python tools/bench_lake.py --rows 1000000 --queries 25
    nice -n 10 .venv/bin/python tools/bench_lake.py --rows 1000000 --engines vault,duckdb

The machine is shared: give ``cat /proc/loadavg`` beside any figure (printed here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import schema  # noqa: E402
from store.lake import LakeVault  # noqa: E402
from store.lake_export import export_lake  # noqa: E402
from store.records import QueryCode  # noqa: E402
from store.vault import Vault  # noqa: E402
from tests.fakes import FakeEncoder  # noqa: E402

K, C = 384, 10
PW = "bench passphrase"


def build(path: Path, rows: int, per_rec: int) -> Vault:
    """A vault with ``rows`` synthetic index rows, clustered by category."""
    v = Vault.create(path, PW, encoder=FakeEncoder(K=K, C=C, seed=1), kdf_log2_n=10,
                     cipher="chacha20poly1305")
    n_rec = (rows + per_rec - 1) // per_rec
    con = v._con
    words = ", ".join(f"hash(i * 8 + {k}) AS w{k}" for k in range(schema.n_words(K)))
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO recordings (id, name, category, sha256, sample_rate, channels, "
                "duration, size, added, n_windows, blob) "
                "SELECT r, 'rec' || r::VARCHAR, 'c' || (r % 10)::VARCHAR, sha256(r::VARCHAR), "
                f"16000, 1, 1.0, 32, now(), {per_rec}, unhex(sha256('blob' || r::VARCHAR)) "
                f"FROM range(1, {n_rec + 1}) t(r)")
    con.execute(f"INSERT INTO codes SELECT i // {per_rec} + 1, i % {per_rec}, "
                f"(hash(i) % {C})::SMALLINT, NULL, {words} FROM range(0, {rows}) t(i)")
    con.execute(f"UPDATE vault_meta SET codes_unclustered = {rows}")
    con.execute("COMMIT")
    v.compact()
    return v


def truth(rid, cat, words, q_words, q_cat, top=10):
    """numpy: best window per recording, top by (distance, id)."""
    sel = np.ones(rid.shape[0], bool) if q_cat is None else cat == q_cat
    d = np.bitwise_count(words[sel] ^ q_words[None, :]).sum(axis=1).astype(np.int64)
    r = rid[sel]
    order = np.lexsort((r, d))
    out, seen = [], set()
    for i in order:
        if r[i] not in seen:
            seen.add(r[i])
            out.append((int(r[i]), int(d[i])))
            if len(out) == top:
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--windows", type=int, default=100, help="windows per recording")
    ap.add_argument("--queries", type=int, default=25)
    ap.add_argument("--flip", type=int, default=40, help="bits flipped in each query")
    ap.add_argument("--engines", default="vault,duckdb,clickhouse")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp one)")
    a = ap.parse_args()
    work = a.dir or Path(tempfile.mkdtemp(prefix="bench-lake-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()}")
    t = time.perf_counter()
    v = build(work / "v.duckdb", a.rows, a.windows)
    print(f"built {a.rows:,} rows in {time.perf_counter() - t:.1f} s")
    v.unlock(PW)
    rep = export_lake(v, work / "lake")
    print(f"export-lake: {rep.windows:,} windows, {rep.recordings:,} recordings in "
          f"{rep.seconds:.1f} s ({rep.seconds / (rep.windows / 1e6):.1f} s per million windows)")
    codes_bytes = sum(f.stat().st_size for f in (work / "lake" / "codes").rglob("*.parquet"))
    print(f"bytes: vault file {os.path.getsize(work / 'v.duckdb'):,}; lake codes {codes_bytes:,}")

    cols = ", ".join(schema.word_columns(K))
    res = v._con.execute(f"SELECT recording_id, category, {cols} FROM codes").fetchnumpy()
    rid = np.asarray(res["recording_id"], np.int64)
    cat = np.asarray(res["category"], np.int64)
    words = np.stack([np.asarray(res[c], np.uint64) for c in schema.word_columns(K)], axis=1)
    rng = np.random.default_rng(0)
    queries = []
    for i in rng.choice(rid.shape[0], a.queries, replace=False):
        w = words[i].copy()
        for b in rng.choice(K, a.flip, replace=False):
            w[b // 64] ^= np.uint64(1) << np.uint64(b % 64)
        queries.append(QueryCode(category=[int(cat[i])], words=w, K=K))

    engines = {"vault": v}
    for name in a.engines.split(","):
        if name in ("duckdb", "clickhouse", "spark"):
            engines[name] = LakeVault.open_lake(work / "lake", engine=name)
    rows = []
    for mode in ("two-stage", "traversal"):
        expect = [truth(rid, cat, words, q.words[0], None if mode == "traversal"
                        else int(q.category[0])) for q in queries]
        for name, eng in engines.items():
            if name not in a.engines.split(","):
                continue
            eng.search(queries[0], mode=mode, top=10)  # warm (files, model of the engine)
            times, exact = [], 0
            for q, e in zip(queries, expect):
                t0 = time.perf_counter()
                r = eng.search(q, mode=mode, top=10)
                times.append(time.perf_counter() - t0)
                exact += [(h.recording_id, h.distance) for h in r.nearest] == e
            rows.append((mode, name, statistics.median(times), exact, len(queries)))
            print(f"{mode:10s} {name:10s} p50 {1000 * rows[-1][2]:8.1f} ms  exact top-10 "
                  f"{exact}/{len(queries)}  loadavg {Path('/proc/loadavg').read_text().split()[0]}",
                  flush=True)
    print(f"loadavg after: {Path('/proc/loadavg').read_text().strip()}")
    for eng in engines.values():
        eng.close()


if __name__ == "__main__":
    main()
