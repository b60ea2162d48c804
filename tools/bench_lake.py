"""Search p50 on the vault file vs DuckDB on the lake vs ClickHouse (chDB) vs Spark vs FAISS.

Builds a synthetic vault (K = 384, C = 10; ``--rows`` index rows, ``--windows`` per recording,
words from DuckDB's ``hash``, so the high bit is set in half of them; a 32-byte stand-in blob per
recording), clusters it, exports it with ``export-lake`` (timed), then runs the same queries --
stored rows with ``--flip`` bits flipped -- on every engine, category-filtered (two-stage) and
traversal, and checks every top-10 against numpy (exact: best window per recording, ordered by
distance then id). Prints one table, the bytes on disk and the load average before and after.

Two columns are not ``search`` calls: ``spark-batch`` answers every query of the mode in ONE
statement (``store.lake_batch``: the query windows joined to the codes), reported as the batch's
time divided by the number of queries (Spark is for batch; one statement per query costs seconds
of job overhead each); ``faiss`` is the hardware reference (pip ``faiss-cpu``, extra
``[bench]``): ``IndexBinaryFlat`` over every row (traversal) or one per category (two-stage),
top ``--faiss-k`` windows reduced to the best window per recording, in memory, no SQL,
``--faiss-threads`` (default 1: OpenMP threads spin on a shared machine).

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

from store import lake_batch, schema  # noqa: E402
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
    # format 6's HUGEINT words (store.schema): a signed high half * 2^64 + an unsigned low half
    words = ", ".join(f"((hash(i * 8 + {2 * j + 1}) >> 1)::BIGINT::HUGEINT * 18446744073709551616"
                      f"::HUGEINT + hash(i * 8 + {2 * j})::HUGEINT) AS w{j}"
                      for j in range(schema.n_words(K)))
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO recordings (id, name, category, sha256, sample_rate, channels, "
                "duration, size, added, n_windows, blob) "
                "SELECT r, 'rec' || r::VARCHAR, 'c' || (r % 10)::VARCHAR, sha256(r::VARCHAR), "
                f"16000, 1, 1.0, 32, now(), {per_rec}, unhex(sha256('blob' || r::VARCHAR)) "
                f"FROM range(1, {n_rec + 1}) t(r)")
    keys = "".join(f", {e}" for e in schema.stored_slice_keys_sql(K).values())  # format 7
    con.execute(f"INSERT INTO codes SELECT *{keys} FROM (SELECT i // {per_rec} + 1, "
                f"i % {per_rec}, (hash(i) % {C})::SMALLINT, NULL, {words} "
                f"FROM range(0, {rows}) t(i))")
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


class FaissReference:
    """Exact binary k-NN in memory (the hardware reference): one index over every row and one
    per category, each mapping its rows back to recording ids."""

    def __init__(self, rid: np.ndarray, cat: np.ndarray, words: np.ndarray, k: int,
                 threads: int) -> None:
        import faiss

        faiss.omp_set_num_threads(threads)  # OpenMP spinning on a loaded machine costs more
        self.k = k
        codes = np.ascontiguousarray(words).view(np.uint8)
        self.all = (faiss.IndexBinaryFlat(K), rid)
        self.all[0].add(codes)
        self.per_cat = {}
        for c in np.unique(cat):
            sel = cat == c
            index = faiss.IndexBinaryFlat(K)
            index.add(np.ascontiguousarray(codes[sel]))
            self.per_cat[int(c)] = (index, rid[sel])

    def search(self, q_words: np.ndarray, q_cat: int | None, top: int = 10):
        index, ids = self.all if q_cat is None else self.per_cat[q_cat]
        D, I = index.search(np.ascontiguousarray(q_words[None, :]).view(np.uint8), self.k)
        best: dict[int, int] = {}
        for d, i in zip(D[0], I[0]):
            if i >= 0:
                r = int(ids[i])
                best[r] = min(int(d), best.get(r, 1 << 30))
        return sorted(((r, d) for r, d in best.items()), key=lambda x: (x[1], x[0]))[:top]


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def spark_batch(lv, queries, mode: str, expect) -> tuple[float, int]:
    """ONE statement for every query of ``mode``; (seconds per query, exact top-10s)."""
    requests = [lake_batch.request_key(
        [[int(x) for x in q.words[0]]],
        None if mode == "traversal" else [[int(q.category[0])]], 10) for q in queries]
    answers, seconds = lake_batch.run_batch(lv._db().engine, K, requests)
    exact = sum([(n.recording_id, n.dist) for n in answers[r]] == e
                for r, e in zip(requests, expect))
    return seconds / len(queries), exact


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--windows", type=int, default=100, help="windows per recording")
    ap.add_argument("--queries", type=int, default=25)
    ap.add_argument("--flip", type=int, default=40, help="bits flipped in each query")
    ap.add_argument("--engines", default="vault,duckdb,clickhouse,spark-batch,faiss")
    ap.add_argument("--faiss-k", type=int, default=1000,
                    help="windows FAISS returns before the best window per recording is kept")
    ap.add_argument("--faiss-threads", type=int, default=1)
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
    lake_bytes = sum(f.stat().st_size for f in (work / "lake").rglob("*") if f.is_file())
    print(f"bytes: vault file {os.path.getsize(work / 'v.duckdb'):,}; lake codes {codes_bytes:,}; "
          f"whole lake {lake_bytes:,}")

    cols = ", ".join(schema.code_words_sql(K))
    res = v._con.execute(f"SELECT recording_id, category, {cols} FROM codes").fetchnumpy()
    rid = np.asarray(res["recording_id"], np.int64)
    cat = np.asarray(res["category"], np.int64)
    words = schema.code_words_array(res, K)
    rng = np.random.default_rng(0)
    queries = []
    for i in rng.choice(rid.shape[0], a.queries, replace=False):
        w = words[i].copy()
        for b in rng.choice(K, a.flip, replace=False):
            w[b // 64] ^= np.uint64(1) << np.uint64(b % 64)
        queries.append(QueryCode(category=[int(cat[i])], words=w, K=K))

    wanted = a.engines.split(",")
    engines = {"vault": v}
    for name in wanted:
        if name in ("duckdb", "clickhouse", "spark"):
            engines[name] = LakeVault.open_lake(work / "lake", engine=name)
    if "spark-batch" in wanted:
        engines["spark-batch"] = LakeVault.open_lake(work / "lake", engine="spark")
    if "faiss" in wanted:
        t = time.perf_counter()
        engines["faiss"] = FaissReference(rid, cat, words, a.faiss_k, a.faiss_threads)
        print(f"faiss: indexes built in {time.perf_counter() - t:.1f} s", flush=True)
    rows = []
    for mode in ("two-stage", "traversal"):
        expect = [truth(rid, cat, words, q.words[0], None if mode == "traversal"
                        else int(q.category[0])) for q in queries]
        for name, eng in engines.items():
            if name not in wanted:
                continue
            if name == "spark-batch":
                spark_batch(eng, queries[:1], mode, expect[:1])  # warm (session, file listing)
                per_query, exact = spark_batch(eng, queries, mode, expect)
                rows.append((mode, name, per_query, exact, len(queries)))
                print(f"{mode:10s} {name:10s} per query {1000 * per_query:8.1f} ms (one statement "
                      f"for {len(queries)})  exact top-10 {exact}/{len(queries)}  "
                      f"loadavg {_load()}", flush=True)
                continue
            if name == "faiss":
                times, exact = [], 0
                for q, e in zip(queries, expect):
                    t0 = time.perf_counter()
                    got = eng.search(q.words[0], None if mode == "traversal" else int(q.category[0]))
                    times.append(time.perf_counter() - t0)
                    exact += got == e
                rows.append((mode, name, statistics.median(times), exact, len(queries)))
                print(f"{mode:10s} {name:10s} p50 {1000 * rows[-1][2]:8.1f} ms  exact top-10 "
                      f"{exact}/{len(queries)}  loadavg {_load()}", flush=True)
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
    print("\n| mode | " + " | ".join(n for n in engines if n in wanted) + " |")
    for mode in ("two-stage", "traversal"):
        cells = [f"{1000 * p:.1f} ms ({x}/{n})" for m, _, p, x, n in rows if m == mode]
        print(f"| {mode} | " + " | ".join(cells) + " |")
    for eng in engines.values():
        if hasattr(eng, "close"):
            eng.close()


if __name__ == "__main__":
    main()
