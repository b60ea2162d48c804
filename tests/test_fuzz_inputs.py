"""The mutation fuzzer of tests/fuzz_inputs.py (issue 17, "Must show": >= 10^6 mutated inputs
through decode, ingest and search, 0 tracebacks, 0 hangs over 10 s). CI runs a few hundred
inputs to keep the harness honest; ``pytest -m slow`` runs the million
(``SPEECHVAULT_FUZZ_INPUTS`` to choose another count)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests import fuzz_inputs


def test_the_seeds_cover_the_formats_and_mutants_are_reproducible():
    seeds = fuzz_inputs.seed_files()
    assert {"wav", "flac", "ogg", "mp3", "aiff"} <= {ext for ext, _ in seeds}
    a = fuzz_inputs.mutate(np.random.default_rng([0, 123]), seeds)
    b = fuzz_inputs.mutate(np.random.default_rng([0, 123]), seeds)
    assert a == b and a[1] not in {data for _, data in seeds}


def test_a_short_fuzz_run_reaches_every_stage_without_a_failure(tmp_path):
    pytest.importorskip("ai_edge_litert")
    s = fuzz_inputs.run(300, tmp_path / "out", seed=5, sample_rest=20)
    assert s["inputs"] == 300
    assert s["decode_refused"] > 0 and s["decoded"] > 0  # both sides of the decoder
    assert s["ingested"] > 0 and s["searched"] == s["to_vault"] > 0
    assert s["failures"] == 0 and s["tracebacks"] == 0, (tmp_path / "out" / "failures.txt")


def test_a_failure_is_counted_and_its_input_kept(tmp_path, monkeypatch):
    """The harness can fail: a decoder that raises a non-SpeechVaultError is reported."""
    import hashing.audio

    real = hashing.audio.load_audio
    calls = []

    def broken(data, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("boom")
        return real(data, *a, **k)

    monkeypatch.setattr(hashing.audio, "load_audio", broken)
    s = fuzz_inputs.run(5, tmp_path / "out", seed=5, sample_rest=10 ** 9)
    assert s["failures"] == 1
    assert "decode: ValueError: boom" in (tmp_path / "out" / "failures.txt").read_text()
    assert len(list((tmp_path / "out").glob("fail-*"))) == 1


@pytest.mark.slow
def test_a_million_mutated_inputs(tmp_path):
    pytest.importorskip("ai_edge_litert")
    n = int(os.environ.get("SPEECHVAULT_FUZZ_INPUTS", "1000000"))
    s = fuzz_inputs.run(n, tmp_path / "out", seed=int(os.environ.get("SPEECHVAULT_FUZZ_SEED", "0")))
    assert s["inputs"] == n and s["failures"] == 0 and s["tracebacks"] == 0, s
