"""Benchmark of excerpt search (issue 12): a 5 s excerpt against 10,000 recordings of 30 s.

    python -m model_export.bench_excerpt --out docs/results [--recordings 10000] [--real 12]

What it measures, on this machine, through the library (``Vault.ingest`` / ``Vault.search``):

* **ingest**: seconds per 30 s recording (decode, identification windows, fingerprint, model
  categories, sealing, insert), over ``--real`` real recordings (espeak-ng voices reading random
  sentences, ``model_export.long_speech``);
* **index size**: rows per hour of audio, bytes per row, and the growth of the vault file per
  hour of audio once the index holds ``--recordings`` recordings;
* **query**: p50 / p95 wall time of a warm 5 s excerpt query (features + inference + the one SQL
  statement) and of the statement alone, for both candidate strategies (``scan``: every pair,
  ``keys``: pairs sharing a 16-bit slice).

The vault is filled to ``--recordings`` with copies of the real recordings' index rows, each bit
flipped with probability 0.3 (other recordings that sound a little alike, so the candidate and
verification stages see realistic traffic, without 80 hours of synthesis).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["bench_excerpt", "to_markdown"]


def _fill(v, n_target: int, flip: float, rng: np.random.Generator) -> int:
    """Copy the index rows of the real recordings, with bits flipped, until ``n_target``
    recordings are indexed. Returns the rows added."""
    from store.schema import code_words_array, code_words_sql, insert_codes

    con = v._db()
    base = con.execute(f"SELECT recording_id, win, category, start, "
                       f"{', '.join(code_words_sql(v.K))} FROM codes "
                       "ORDER BY recording_id, win").fetchnumpy()
    n_real = len(np.unique(base["recording_id"]))
    words = code_words_array(base, v.K)
    added, next_id = 0, int(con.execute("SELECT max(id) FROM recordings").fetchall()[0][0]) + 1000
    chunk = max(1, 200_000 // max(1, len(words)))
    copies = -(-(n_target - n_real) // n_real)  # blocks of n_real recordings
    while copies > 0:
        k = min(chunk, copies)
        w = np.tile(words, (k, 1))
        mask = np.zeros_like(w)
        for b in range(64):
            mask |= (rng.random(w.shape) < flip).astype(np.uint64) << np.uint64(b)
        w ^= mask
        rid = (np.repeat(np.arange(k), len(words)) * n_real
               + np.tile(np.asarray(base["recording_id"]) - 1, k) + next_id)
        # the stored words and slice keys as every write makes them (store.schema)
        insert_codes(con, "codes", v.K, rid.astype(np.int64), np.tile(np.asarray(base["win"]), k),
                     np.tile(np.asarray(base["category"]), k), w,
                     np.tile(np.asarray(base["start"]), k))
        next_id += k * n_real
        copies -= k
        added += len(rid)
    con.execute("CHECKPOINT")
    v._rows_cache = None
    return added


def _time_queries(v, queries: Sequence[np.ndarray], candidates: str,
                  busy: bool = False) -> dict[str, Any]:
    """Warm p50 / p95 of ``queries`` with candidate strategy ``candidates``; ``busy``: with one
    core spinning for the whole run (``model_export.busy``), as a user's machine usually is."""
    if busy:
        from model_export.busy import busy_core

        with busy_core():
            return {**_time_queries(v, queries, candidates), "busy": True}
    rows = v._index_rows()
    if candidates.startswith("keys:"):  # keys:N - at most N 16-bit slices; keys:all - every
        import dataclasses                # slice for every query (no probe budget)

        fp = v.encoder._fp
        arg = candidates.split(":")[1]
        change = {"key_probes": 0} if arg == "all" else {"key_bands": int(arg)}
        object.__setattr__(v.encoder, "_fp", dataclasses.replace(
            fp, rule={**(fp.rule or {}), **change}))
    v._rows_cache = 0 if candidates == "scan" else 10**12  # force the strategy
    v.search(queries[0])  # warm: model loaded, statement planned once
    wall, sql, found = [], [], 0
    for q in queries:
        t = time.perf_counter()
        res = v.search(q)
        wall.append(time.perf_counter() - t)
        sql.append(res.timings["hamming_stage"])
        found += bool(res.matched)
    v._rows_cache = rows
    pct = lambda xs, p: float(np.percentile(xs, p))  # noqa: E731
    return {"candidates": candidates, "queries": len(queries), "matched": found,
            "wall_p50_ms": 1e3 * statistics.median(wall), "wall_p95_ms": 1e3 * pct(wall, 95),
            "sql_p50_ms": 1e3 * statistics.median(sql), "sql_p95_ms": 1e3 * pct(sql, 95)}


def bench_excerpt(n_recordings: int = 10_000, n_real: int = 12, seconds: float = 30.0,
                  n_queries: int = 20, seed: int = 0, strategies: Sequence[str] = ("keys", "scan"),
                  busy: bool = False, log=print) -> dict[str, Any]:
    from hashing.audio import write_wav
    from model_export import long_speech as ls
    from store.vault import Vault

    if not ls.espeak_available():
        return {"skipped": "espeak-ng is not installed (Debian package espeak-ng): the excerpt "
                           "bench synthesises its recordings with it"}
    rng = np.random.default_rng(seed)
    recs = ls.espeak_recordings(ls.ESPEAK_FIT_VOICES, n_real, seed=seed, min_s=seconds,
                                max_s=seconds, prefix="bench")
    out: dict[str, Any] = {"recordings": n_recordings, "real": n_real, "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="sv-bench-excerpt-") as tmp:
        paths = []
        for r in recs:
            p = Path(tmp) / f"{r.name}.wav"
            write_wav(p, r.samples, ls.SAMPLE_RATE)
            paths.append(p)
        path = Path(tmp) / "bench.duckdb"
        with Vault.create(path, "bench", kdf_log2_n=10) as v:
            t = time.perf_counter()
            v.ingest(paths)
            out["ingest_s_per_recording"] = (time.perf_counter() - t) / n_real
            real_rows = v._index_rows()
            size0 = os.path.getsize(path)
            log(f"ingest: {out['ingest_s_per_recording']:.2f} s per {seconds:.0f} s recording")
            added = _fill(v, n_recordings, 0.3, rng)
            hours = n_recordings * seconds / 3600
            out["index_rows"] = real_rows + added
            out["rows_per_hour"] = (real_rows + added) / hours
            # ids, window, category, start, the code words, the 16-bit slice keys (format 7)
            out["row_bytes_raw"] = 8 + 4 + 2 + 4 + 8 * v.W + 2 * (v.K // 16)
            n_recordings = n_real * (1 + -(-(n_recordings - n_real) // n_real))
            out["recordings"] = n_recordings
            added_hours = (n_recordings - n_real) * seconds / 3600
            out["file_bytes_per_hour"] = ((os.path.getsize(path) - size0) / added_hours
                                          if added_hours > 0 else None)
            log(f"index: {out['index_rows']} rows for {hours:.0f} h of audio")
            queries = []
            for i in range(n_queries):
                y = recs[i % n_real].samples
                off = int(rng.integers(y.shape[0] - 5 * ls.SAMPLE_RATE))
                queries.append(y[off: off + 5 * ls.SAMPLE_RATE])
            out["query"] = [_time_queries(v, queries, s, b) for s in strategies
                            for b in ((False, True) if busy else (False,))]
            for q in out["query"]:
                log(f"5 s excerpt, {q['candidates']}{_BUSY[q.get('busy', False)]}: p50 {q['wall_p50_ms']:.0f} ms "
                    f"(SQL {q['sql_p50_ms']:.0f} ms), {q['matched']}/{q['queries']} found")
    return out


#: how a figure measured with one core spinning is labelled
_BUSY = {False: "", True: ", one core busy"}


def to_markdown(r: dict[str, Any], command: str) -> str:
    if "skipped" in r:
        return f"# Excerpt search benchmark (issue 12)\n\nCommand: `{command}`\n\nNot run: {r['skipped']}.\n"
    lines = ["# Excerpt search benchmark (issue 12)", "", f"Command: `{command}`", "",
             f"{r['recordings']:,} recordings of {r['seconds']:.0f} s "
             f"({r['recordings'] * r['seconds'] / 3600:.0f} h of audio, {r['index_rows']:,} index "
             f"rows; {r['real']} real espeak-ng recordings, the rest their index rows with 30 % of "
             "the bits flipped).", "",
             "| figure | value | target |", "|---|---|---|",
             f"| ingest per {r['seconds']:.0f} s recording | {r['ingest_s_per_recording']:.2f} s | - |",
             f"| index rows per hour of audio | {r['rows_per_hour']:,.0f} | - |",
             f"| bytes per index row (raw columns) | {r['row_bytes_raw']} | - |"]
    if r.get("file_bytes_per_hour"):
        lines.append(f"| vault file growth per hour of audio | {r['file_bytes_per_hour'] / 1e6:.2f} MB | - |")
    for q in r["query"]:
        lines.append(f"| 5 s excerpt, warm, candidates `{q['candidates']}`"
                     f"{_BUSY[q.get('busy', False)]}: p50 / p95 | "
                     f"{q['wall_p50_ms']:.0f} / {q['wall_p95_ms']:.0f} ms (SQL {q['sql_p50_ms']:.0f} / "
                     f"{q['sql_p95_ms']:.0f} ms), {q['matched']}/{q['queries']} found | <= 100 ms |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.bench_excerpt")
    p.add_argument("--out", required=True)
    p.add_argument("--recordings", type=int, default=10_000)
    p.add_argument("--real", type=int, default=12)
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--strategies", default="keys,scan")
    p.add_argument("--busy", action="store_true",
                   help="time each strategy twice: idle, then with one core spinning")
    a = p.parse_args(argv)
    r = bench_excerpt(a.recordings, a.real, n_queries=a.queries,
                      strategies=tuple(a.strategies.split(",")), busy=a.busy)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python -m model_export.bench_excerpt " + " ".join(
        argv if argv is not None else sys.argv[1:])
    (out / "bench_excerpt.json").write_text(json.dumps(r, indent=1))
    (out / "bench_excerpt.md").write_text(to_markdown(r, cmd.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
