"""Search latency (pytest-benchmark): two-stage vs traversal vs multi-probe, K = 384, C = 10.

Synthetic index rows (one window per recording, uniformly random codes and categories, built in
SQL), clustered by category with ``Vault.compact`` unless marked "unclustered". The query is the
code of a stored row, so there is exactly one match.

    # quick (10k rows), as CI runs it (benchmarks disabled -> each runs once):
    /work/venv/bin/pytest tests/bench_search.py --benchmark-disable
    # numbers (p50 = "Median" column):
    /work/venv/bin/pytest tests/bench_search.py --benchmark-enable --benchmark-columns=median,mean,min,rounds
    # with 1M rows (about a minute to build):
    SPEECHVAULT_BENCH_LARGE=1 /work/venv/bin/pytest tests/bench_search.py --benchmark-enable \
        --benchmark-columns=median,mean,min,rounds
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from store import schema
from store.records import QueryCode
from store.vault import Vault
from tests.fakes import FakeEncoder

K, C = 384, 10
SIZES = [10_000] + ([1_000_000] if os.environ.get("SPEECHVAULT_BENCH_LARGE") else [])


def build(path, n: int, clustered: bool) -> Vault:
    enc = FakeEncoder(K=K, C=C, seed=1)
    v = Vault.create(path, "bench", encoder=enc, kdf_log2_n=10, cipher="chacha20poly1305")
    con = v._con
    words = ", ".join(f"hash(i * 8 + {k}) AS w{k}" for k in range(schema.n_words(K)))
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO recordings (id, name, category, sha256, sample_rate, channels, "
                "duration, size, added, n_windows, blob) "
                "SELECT i, 'rec' || i::VARCHAR, 'c' || (hash(i) % 10)::VARCHAR, "
                "sha256(i::VARCHAR), 16000, 1, 1.0, 0, now(), 1, ''::BLOB "
                f"FROM range(1, {n + 1}) t(i)")
    keys = ", ".join(f"{e} AS {c}" for c, e in schema.stored_slice_keys_sql(K).items())
    con.execute(f"INSERT INTO codes BY NAME SELECT *, {keys} FROM (SELECT i AS recording_id, "
                f"0 AS win, (hash(i) % 10)::SMALLINT AS category, {words} "
                f"FROM range(1, {n + 1}) t(i))")
    con.execute(f"UPDATE vault_meta SET codes_unclustered = {n}")
    con.execute("COMMIT")
    if clustered:
        v.compact()
    else:
        con.execute("CHECKPOINT")
    return v


@pytest.fixture(scope="module", params=[(n, cl) for n in SIZES for cl in (True, False)],
                ids=lambda p: f"{p[0]}-{'clustered' if p[1] else 'unclustered'}")
def bench_vault(request, tmp_path_factory):
    n, clustered = request.param
    v = build(tmp_path_factory.mktemp("bench") / "b.duckdb", n, clustered)
    target = n // 2
    codes = v.codes_of(target)
    probs = np.full((1, C), 0.5 / (C - 1), np.float32)
    probs[0, codes.category[0]] = 0.5
    q = QueryCode(category=codes.category, words=codes.words, K=K, probs=probs)
    yield v, q, target
    v.close()


@pytest.mark.parametrize("mode", ["two-stage", "traversal", "multi-probe"])
def test_search_latency(benchmark, bench_vault, mode):
    v, q, target = bench_vault
    res = benchmark(v.search, q, mode=mode, probe=2, top=10)
    assert res.matched and res.hits[0].recording_id == target and res.hits[0].ber == 0.0
    benchmark.extra_info.update(candidates=res.candidates, total_rows=res.total_rows,
                                category_stage=res.timings["category_stage"],
                                hamming_stage=res.timings["hamming_stage"])
