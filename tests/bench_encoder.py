"""Encode-time benchmarks of the shipped model (not collected by default: bench_*.py).

    pytest tests/bench_encoder.py --benchmark-enable --benchmark-columns=min,median,mean,rounds

Encodes a 1 s clip and a 10 s recording (features + TFLite inference; decoding is not
included) with one interpreter thread, for the default model and every other model in
hashing/models/.
"""

from __future__ import annotations

import numpy as np
import pytest

from hashing.encoder import Encoder, shipped_models

SR = 16_000


def _signal(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * seconds)) / SR
    f = 200 + 100 * np.sin(2 * np.pi * 0.7 * t)
    y = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / SR) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module", params=shipped_models() or ["(none)"])
def encoder(request):
    if request.param == "(none)":
        pytest.skip("no model in hashing/models")
    return Encoder.shipped(request.param, num_threads=1)


@pytest.mark.parametrize("seconds", [1.0, 10.0], ids=["1s", "10s"])
def test_encode_time(benchmark, encoder, seconds):
    y = _signal(seconds)
    benchmark.group = f"encode {seconds:g} s"
    benchmark.extra_info["model"] = encoder.meta.name
    codes = benchmark(encoder.encode_audio, y)
    assert codes.n_windows == int(seconds)
    assert codes.bits.shape == (int(seconds), encoder.K)
