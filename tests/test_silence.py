"""Silent recordings (issue 15, "Low"): silence matches silence at BER 0, so ingest (CLI and
TUI) and search warn about a recording that is (almost) all silence -- and stay quiet about
speech, quiet speakers included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_cli import EXAMPLES, PASS, digit_clips, run_cli

RATE = 16000


def _write(path: Path, y: np.ndarray) -> Path:
    sf.write(path, y.astype(np.float32), RATE, subtype="PCM_16")
    return path


@pytest.fixture
def quiet_files(tmp_path):
    rng = np.random.default_rng(0)
    silent = _write(tmp_path / "muted.wav", np.zeros(3 * RATE))
    hiss = _write(tmp_path / "hiss.wav", 0.001 * rng.standard_normal(3 * RATE))  # about -60 dBFS
    return silent, hiss


def test_level_tells_silence_from_speech(quiet_files):
    from speechvault.silence import measure, silence_warning

    silent, hiss = quiet_files
    assert measure(silent).almost_silent and measure(silent).digital_silence
    assert measure(hiss).almost_silent and not measure(hiss).digital_silence
    assert "all digital silence" in silence_warning(silent)
    for clip in EXAMPLES.glob("*.wav"):  # every shipped clip is speech
        assert silence_warning(clip) is None, clip


def test_quiet_speech_is_not_silence(tmp_path):
    """A speaker 35 dB below full scale is quiet, not silent."""
    from speechvault.silence import measure

    y, sr = sf.read(digit_clips()[0], dtype="float32")
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, y / np.max(np.abs(y)) * 10 ** (-35 / 20), sr)
    assert not measure(quiet).almost_silent


def test_mostly_silent_long_recording_warns(tmp_path):
    from speechvault.silence import measure

    y, _ = sf.read(digit_clips()[0], dtype="float32")
    long = np.zeros(120 * RATE, np.float32)
    long[:RATE // 20] = y[:RATE // 20]  # 50 ms of sound in two minutes
    assert measure(_write(tmp_path / "long.wav", long)).almost_silent


def test_cli_ingest_and_search_warn_about_silence(quiet_files, tmp_path):
    silent, _ = quiet_files
    vault = tmp_path / "v.duckdb"
    assert run_cli("init", vault, "--kdf-log2n", "10", passphrase=PASS).returncode == 0
    speech = digit_clips()[0]
    r = run_cli("ingest", vault, silent, speech, "--json", passphrase=PASS)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert len(rep["added"]) == 2  # stored all the same: it is the user's file
    assert [Path(w["path"]).name for w in rep["warnings"]] == ["muted.wav"]
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warned) == 1 and "muted.wav: almost all silence" in warned[0]
    r = run_cli("search", vault, silent)
    assert r.returncode == 0, r.stderr
    assert "silence matches silence" in r.stderr
    r = run_cli("search", vault, speech)
    assert r.returncode == 0 and "warning" not in r.stderr
