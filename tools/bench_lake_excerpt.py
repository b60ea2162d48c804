"""A 5 s excerpt against ~1M index windows on every lake engine, one query at a time and batched.

What it measures (issue 14): the default model codes a query as identification windows, so a
search is an excerpt search (``store.excerpt``). The vault is built as
``model_export.bench_excerpt`` builds it (``--real`` espeak-ng recordings of 30 s ingested with
the shipped model, then copies of their index rows with 30 % of the bits flipped up to
``--recordings`` recordings: ~112 rows per recording, so 9,000 recordings ~ 1M rows), exported
with ``export-lake``, and then, per engine (vault file, DuckDB on the lake, chDB, Spark local):

* **one at a time**: p50 of ``search`` of a coded 5 s excerpt (the statement, ``decide``, the
  labels; the query is coded once, outside the timing, as every engine gets the same code), and
  how many found their recording;
* **batched**: the ``--batch`` excerpts' statements run one by one (sum of the statements) and
  as ONE statement (``store.excerpt_batch``), with their rows checked equal to the
  one-at-a-time statements'. Spark runs the loop over ``--spark-loop`` queries only (each
  statement is a job of seconds) and reports the per-statement mean.

    nice -n 10 .venv/bin/python tools/bench_lake_excerpt.py --recordings 9000 --queries 10

The machine is shared: the load average is printed beside every figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_export.bench_excerpt import _fill  # noqa: E402
from store import excerpt_batch  # noqa: E402
from store.lake import LakeVault  # noqa: E402
from store.lake_export import export_lake  # noqa: E402
from store.vault import Vault  # noqa: E402

PW = "bench passphrase"


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def build(work: Path, n_recordings: int, n_real: int, seed: int):
    """The vault (real espeak-ng recordings + flipped copies) and the real recordings."""
    from hashing.audio import write_wav
    from model_export import long_speech as ls

    if not ls.espeak_available():
        raise SystemExit("espeak-ng is not installed (Debian package espeak-ng)")
    recs = ls.espeak_recordings(ls.ESPEAK_FIT_VOICES, n_real, seed=seed, min_s=30.0,
                                max_s=30.0, prefix="bench")
    paths = []
    for r in recs:
        p = work / f"{r.name}.wav"
        write_wav(p, r.samples, ls.SAMPLE_RATE)
        paths.append(p)
    v = Vault.create(work / "v.duckdb", PW, kdf_log2_n=10)
    v.ingest(paths)
    _fill(v, n_recordings, 0.3, np.random.default_rng(seed))
    return v, recs


def excerpts(v, recs, n: int, seed: int):
    """``n`` coded 5 s excerpts of the real recordings (random offsets)."""
    from model_export import long_speech as ls

    rng = np.random.default_rng(seed + 1)
    out = []
    for i in range(n):
        r = recs[i % len(recs)]
        off = int(rng.integers(r.samples.shape[0] - 5 * ls.SAMPLE_RATE))
        out.append((r.name, v.encode_query(r.samples[off: off + 5 * ls.SAMPLE_RATE])))
    return out


def one_at_a_time(eng, queries) -> tuple[float, float, int]:
    """(p50 of search, p50 of its statement, found) over the coded ``queries``."""
    eng.search(queries[0][1])  # warm: files listed, statement planned once
    wall, sql, found = [], [], 0
    for name, q in queries:
        t = time.perf_counter()
        res = eng.search(q)
        wall.append(time.perf_counter() - t)
        sql.append(res.timings["hamming_stage"])
        found += bool(res.matched) and str(res.hits[0].name).startswith(name)
    return statistics.median(wall), statistics.median(sql), found


def batched(lv, queries, loop_n: int) -> dict:
    """The excerpt statements of ``queries`` (mode auto) one by one (the first ``loop_n``) and
    as one statement; their rows compared."""
    requests = [r for _, q in queries for r in excerpt_batch.requests_for(lv, q, "auto", 2)]
    rule = lv._excerpt_rule()
    by_req = {r: q for (_, q), r in zip(queries, requests)} if len(requests) == len(queries) \
        else None
    if by_req is None:
        raise SystemExit("a 5 s excerpt is expected to make one request in mode auto")
    loop, alone = [], {}
    for r in requests[:loop_n]:
        cats = None if r.cats is None else np.array(r.cats)
        rows, seconds = Vault._excerpt_rows(lv, lv._db(), by_req[r], cats, r.keyed,
                                            r.bands, rule)
        loop.append(seconds)
        alone[r] = [tuple(int(x) for x in row) for row in rows]
    t = time.perf_counter()
    answers, _ = excerpt_batch.run_batch(lv._batch_runner(), lv.K, rule, lv._dialect, requests)
    one = time.perf_counter() - t
    same = sum(answers[r] == rows for r, rows in alone.items())
    jobs = getattr(lv._db(), "engine", None)
    return {"loop_per_query": statistics.mean(loop), "batch": one,
            "batch_per_query": one / len(requests), "same": same, "compared": len(alone),
            "jobs": len(getattr(jobs, "last_jobs", []) or []) if lv.engine == "spark" else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recordings", type=int, default=9000)
    ap.add_argument("--real", type=int, default=12)
    ap.add_argument("--queries", type=int, default=10, help="5 s excerpts, one at a time")
    ap.add_argument("--batch", type=int, default=10, help="excerpts in the batch")
    ap.add_argument("--spark-loop", type=int, default=3)
    ap.add_argument("--spark-queries", type=int, default=3)
    ap.add_argument("--engines", default="vault,duckdb,clickhouse,spark")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-lake-excerpt-"))
    print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    t = time.perf_counter()
    v, recs = build(work, a.recordings, a.real, a.seed)
    rows = v._index_rows()
    print(f"built {rows:,} rows ({a.recordings:,} recordings) in {time.perf_counter() - t:.0f} s",
          flush=True)
    v.unlock(PW)
    rep = export_lake(v, work / "lake")
    print(f"export-lake: {rep.windows:,} windows in {rep.seconds:.1f} s", flush=True)
    queries = excerpts(v, recs, max(a.queries, a.batch), a.seed)
    wanted = a.engines.split(",")
    for name in wanted:
        eng = v if name == "vault" else LakeVault.open_lake(work / "lake", engine=name)
        if name != "vault":
            eng._encoder = v.encoder  # the lake's model is the vault's (same sha)
        n = a.spark_queries if name == "spark" else a.queries
        wall, sql, found = one_at_a_time(eng, queries[:n])
        print(f"{name:10s} one 5 s excerpt: p50 {1e3 * wall:8.1f} ms (statement {1e3 * sql:8.1f} "
              f"ms), found {found}/{n}  loadavg {_load()}", flush=True)
        if name != "vault":
            b = batched(eng, queries[:a.batch], a.spark_loop if name == "spark" else a.batch)
            print(f"{name:10s} batch of {a.batch}: one by one {1e3 * b['loop_per_query']:8.1f} ms "
                  f"per statement; one statement {1e3 * b['batch']:8.1f} ms "
                  f"({1e3 * b['batch_per_query']:.1f} ms per query); rows equal "
                  f"{b['same']}/{b['compared']}; Spark jobs {b['jobs']}  loadavg {_load()}",
                  flush=True)
            eng.close()
    v.close()
    print(f"loadavg after: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
