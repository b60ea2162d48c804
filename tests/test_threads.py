"""hashing.threads: the coding path runs numpy's BLAS on the pinned thread count and gives the
caller's count back (issue 13: two BLAS threads are many times slower on a busy machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import hashing.encoder as encoder_mod
import hashing.features as features_mod
from hashing import threads
from hashing.encoder import Encoder

from tests.conftest import make_speech_like


def _numpy_blas_paths() -> set[str]:
    """The BLAS libraries numpy itself loads (a fresh interpreter: other tests may have loaded
    scipy's or another BLAS into this one, which the coding path never calls)."""
    code = ("import json, numpy, threadpoolctl; print(json.dumps([d['filepath'] for d in "
            "threadpoolctl.threadpool_info() if d['user_api'] == 'blas']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {os.path.realpath(p) for p in json.loads(out.stdout)}


NUMPY_BLAS = _numpy_blas_paths()


def _blas_counts() -> list[int]:
    """Thread counts of numpy's BLAS libraries, as threadpoolctl reads them now."""
    return [int(d["num_threads"]) for d in threadpool_info()
            if d["user_api"] == "blas" and os.path.realpath(d["filepath"]) in NUMPY_BLAS]


@pytest.fixture
def spies(monkeypatch):
    """Record the BLAS thread counts seen inside the Mel product and the hash binarisation."""
    seen: dict[str, list[list[int]]] = {"mel": [], "codes": []}
    mel, hash_bits = features_mod._mel_power, encoder_mod.codes.hash_bits

    def mel_spy(*a, **k):
        seen["mel"].append(_blas_counts())
        return mel(*a, **k)

    def bits_spy(*a, **k):
        seen["codes"].append(_blas_counts())
        return hash_bits(*a, **k)

    monkeypatch.setattr(features_mod, "_mel_power", mel_spy)
    monkeypatch.setattr(encoder_mod.codes, "hash_bits", bits_spy)
    return seen


def test_numpy_has_a_blas_to_pin():
    assert _blas_counts(), "threadpoolctl finds no BLAS in numpy: the pinning would be a no-op"


def test_encode_runs_blas_on_the_pinned_count_and_restores_the_callers(spies):
    enc = Encoder.default()
    y = make_speech_like(enc.sample_rate, seconds=2.5, seed=3)
    with threadpool_limits(limits=2, user_api="blas"):  # what a 2-core machine starts with
        assert set(_blas_counts()) == {2}
        codes = enc.encode_audio(y)
        after = _blas_counts()
    assert codes.n_windows >= 2
    assert spies["mel"] and spies["codes"], "the spies were not called: nothing was checked"
    for seen in spies["mel"] + spies["codes"]:
        assert seen and set(seen) == {threads.BLAS_THREADS}
    assert set(after) == {2}, "the caller's BLAS thread count was not restored"


def test_feature_and_fingerprint_calls_are_pinned_on_their_own(spies):
    enc = Encoder.shipped("fsdd-crnn-k384-dda")  # a fingerprint of whole model windows
    y = make_speech_like(enc.sample_rate, seconds=1.0, seed=4)
    with threadpool_limits(limits=2, user_api="blas"):
        win = features_mod.model_windows(y, enc.feature_spec)
        assert set(_blas_counts()) == {2}
    assert spies["mel"] and all(set(s) == {threads.BLAS_THREADS} for s in spies["mel"])
    fp = enc._fp
    if fp is None:
        pytest.skip("the default model has no fingerprint")
    seen = []

    class Spy(np.ndarray):  # the projection matrix, recording the count when it is used
        def __rmatmul__(self, other):
            seen.append(_blas_counts())
            return np.asarray(other) @ np.asarray(self)

    spied = type(fp)(mean=fp.mean, projection=fp.projection)
    object.__setattr__(spied, "_p32", fp._p32.view(Spy))
    with threadpool_limits(limits=2, user_api="blas"):
        bits = spied.bits(win)
        assert set(_blas_counts()) == {2}
    assert seen and set(seen[0]) == {threads.BLAS_THREADS}
    assert np.array_equal(bits, fp.bits(win))


def test_concurrent_pins_restore_only_when_the_last_leaves():
    inside_a, release_a, inside_b, release_b = (threading.Event() for _ in range(4))
    seen = {}

    def worker(name, inside, release):
        with threads.pinned_blas():
            inside.set()
            release.wait(10)
            seen[name] = _blas_counts()

    with threadpool_limits(limits=2, user_api="blas"):
        a = threading.Thread(target=worker, args=("a", inside_a, release_a))
        b = threading.Thread(target=worker, args=("b", inside_b, release_b))
        a.start()
        inside_a.wait(10)
        b.start()
        inside_b.wait(10)
        release_a.set()
        a.join(10)
        mid = _blas_counts()  # b is still inside: a leaving must not restore
        release_b.set()
        b.join(10)
        end = _blas_counts()
    assert set(seen["a"]) == set(seen["b"]) == {threads.BLAS_THREADS}
    assert set(mid) == {threads.BLAS_THREADS}
    assert set(end) == {2}


def test_encoder_passes_the_litert_thread_count(monkeypatch):
    real = encoder_mod.load_interpreter_class()
    kwargs = []

    def recording(**kw):
        kwargs.append(kw)
        return real(**kw)

    monkeypatch.setattr(encoder_mod, "load_interpreter_class", lambda: recording)
    Encoder.default()
    first = len(kwargs)
    Encoder.default(num_threads=2)
    # the model, and a learned fingerprint's network when the model has one: the same count
    assert first in (1, 2) and len(kwargs) == 2 * first
    assert [k["num_threads"] for k in kwargs] == [threads.LITERT_THREADS] * first + [2] * first
