"""Cipher throughput (pytest-benchmark; not collected by default, no timing assertions).

    /work/venv/bin/pytest tests/bench_cipher.py --benchmark-enable -p no:cacheprovider

Targets from the issue: >= 100 MB/s on large files, <= 10 ms for a 10 s 16 kHz 16-bit WAV
(320 KB). ``extra_info["MB/s"]`` is computed from the benchmark's mean.
"""

from __future__ import annotations

import os

import pytest

from store.envelope import open_sealed, seal
from store.rossler import RosslerStream

KEY = bytes(range(32))
NONCE = bytes(16)
WAV_10S = 10 * 16_000 * 2 + 44   # 10 s, 16 kHz, 16-bit mono WAV
LARGE = 32 << 20                 # 32 MiB


def _record(benchmark, n: int) -> None:
    if benchmark.stats is not None and benchmark.stats.stats.mean:
        benchmark.extra_info["MB/s"] = round(n / benchmark.stats.stats.mean / 1e6, 1)


@pytest.mark.parametrize("n", [WAV_10S, LARGE], ids=["wav10s", "32MiB"])
def test_bench_rossler_keystream_xor(benchmark, n):
    data = os.urandom(n)
    rounds = 30 if n == WAV_10S else 3
    out = benchmark.pedantic(lambda: RosslerStream(KEY, NONCE).xor(data), rounds=rounds, iterations=1)
    assert len(out) == n
    _record(benchmark, n)


@pytest.mark.parametrize("cipher", ["rossler", "chacha20poly1305"])
@pytest.mark.parametrize("n", [WAV_10S, LARGE], ids=["wav10s", "32MiB"])
def test_bench_seal(benchmark, cipher, n):
    data = os.urandom(n)
    rounds = 30 if n == WAV_10S else 3
    blob = benchmark.pedantic(lambda: seal(data, KEY, cipher=cipher), rounds=rounds, iterations=1)
    assert open_sealed(blob, KEY) == data
    _record(benchmark, n)


@pytest.mark.parametrize("n", [WAV_10S, LARGE], ids=["wav10s", "32MiB"])
def test_bench_open_sealed_rossler(benchmark, n):
    data = os.urandom(n)
    blob = seal(data, KEY)
    rounds = 30 if n == WAV_10S else 3
    assert benchmark.pedantic(lambda: open_sealed(blob, KEY), rounds=rounds, iterations=1) == data
    _record(benchmark, n)
