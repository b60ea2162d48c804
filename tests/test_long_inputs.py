"""Long and non-file inputs (issue 17, item 7): refused before they are read.

* a FIFO, ``/dev/zero`` and a directory given to ``ingest`` or as a ``search`` query: a one-line
  error at once (a FIFO used to hang ingest, ``/dev/zero`` to read until memory ran out);
* a recording longer than the limit is refused from its header, without reading the file
  (traced memory stays far below the file's size); a file larger than any recording of the
  limit's length could be (a header that lies) is refused by its size;
* the limits are options: ``ingest --max-duration`` (default 3600 s), ``search --max-duration``
  (default 600 s); nonsense values are one-line errors.
"""

from __future__ import annotations

import os
import struct
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import store.vault as sv
from speechvault.errors import AudioDecodeError
from store import sources
from store.vault import Vault
from tests.fakes import FakeEncoder, encoder_loader, tone_mix, wav_bytes, write_wav

PW = "long inputs passphrase"


@pytest.fixture(scope="module")
def enc():
    return FakeEncoder(K=128, C=3, seed=31)


@pytest.fixture
def vault(tmp_path, enc):
    v = Vault.create(tmp_path / "v.duckdb", PW, encoder=enc, kdf_log2_n=10)
    yield v
    v.close()


def _in_thread(fn, timeout: float = 60.0):
    """Run ``fn`` in a daemon thread; a hang fails the test instead of blocking the suite."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "hung (the input was read instead of refused)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _specials(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    d = tmp_path / "folder.wav"
    d.mkdir()
    return {"FIFO": fifo, "character device": Path("/dev/zero"), "directory": d}


def test_ingest_refuses_non_regular_files_before_reading(vault, tmp_path):
    good = tmp_path / "good.wav"
    write_wav(good, tone_mix(1, 0.3))
    specials = _specials(tmp_path)
    rep = _in_thread(lambda: vault.ingest([*specials.values(), good]))
    assert len(rep.added) == 1 and len(rep.errors) == 3
    for (path, msg), kind in zip(rep.errors, specials):
        assert kind in msg and "\n" not in msg, msg


def test_search_refuses_non_regular_queries(vault, tmp_path):
    for kind, p in _specials(tmp_path).items():
        with pytest.raises(AudioDecodeError, match=kind):
            _in_thread(lambda: vault.search(p))


def test_decoder_refuses_a_fifo_path(tmp_path):
    from hashing.audio import load_audio, read_info

    fifo = tmp_path / "p.wav"
    os.mkfifo(fifo)
    for fn in (read_info, load_audio):
        with pytest.raises(AudioDecodeError, match="not a regular file"):
            _in_thread(lambda: fn(fifo))


def _long_wav(path: Path, seconds: int, sr: int = 1000) -> None:
    """A real 16-bit WAV of ``seconds`` (a quiet tone), written in blocks."""
    n = seconds * sr
    with open(path, "wb") as f:
        f.write(wav_bytes(np.zeros(1, np.float32), sr)[:44])  # header, sizes patched below
        block = (np.sin(np.arange(sr * 60) * 0.3) * 1000).astype("<i2").tobytes()
        left = n
        while left:
            k = min(left, sr * 60)
            f.write(block[: 2 * k])
            left -= k
        f.seek(4)
        f.write(struct.pack("<I", 36 + 2 * n))
        f.seek(40)
        f.write(struct.pack("<I", 2 * n))


def test_too_long_is_refused_from_the_header_without_reading(vault, tmp_path):
    long = tmp_path / "two-hours.wav"
    _long_wav(long, 2 * 3600)  # 14.4 MB at 1 kHz
    size = long.stat().st_size
    tracemalloc.start()
    try:
        rep = vault.ingest([long])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rep.errors and "exceeds the limit of 3600 s" in rep.errors[0][1]
    assert peak < size / 4, (peak, size)  # the 14.4 MB were not read
    with pytest.raises(AudioDecodeError, match="exceeds the limit of 600 s"):
        vault.search(long)


def test_a_lying_header_is_refused_by_size(vault, tmp_path):
    liar = tmp_path / "liar.wav"
    liar.write_bytes(wav_bytes(tone_mix(3, 0.5)) + os.urandom(3 << 20))  # 0.5 s, 3 MB more
    vault.max_ingest_seconds = 1.0
    rep = vault.ingest([liar])
    assert rep.errors and "more than a 1 s recording can take" in rep.errors[0][1]
    assert sources.size_bound(1.0, 16000, 1) < liar.stat().st_size


def test_limits_are_options(vault, tmp_path):
    three = tmp_path / "three.wav"
    write_wav(three, tone_mix(4, 3.0))
    vault.max_ingest_seconds = 2.0
    assert "exceeds the limit of 2 s" in vault.ingest([three]).errors[0][1]
    vault.max_ingest_seconds = 5.0
    assert len(vault.ingest([three]).added) == 1
    vault.max_query_seconds = 2.0
    with pytest.raises(AudioDecodeError, match="exceeds the limit of 2 s"):
        vault.search(three)
    vault.max_query_seconds = 5.0
    assert vault.search(three).matched


def test_the_limit_reaches_the_decoder(vault, tmp_path, monkeypatch, enc):
    """A limit above the decoder's one-hour default is passed on (else it would still cap)."""
    seen = []
    real = enc.encode_file
    monkeypatch.setattr(enc, "encode_file",
                        lambda src, max_seconds=None: seen.append(max_seconds) or real(src))
    f = tmp_path / "a.wav"
    write_wav(f, tone_mix(5, 0.3))
    vault.max_ingest_seconds = 7200.0
    vault.ingest([f])
    vault.max_query_seconds = 30.0
    vault.search(f)
    assert seen == [7200.0, 30.0]


@pytest.mark.parametrize("bad", ["0", "-5", "nan", "inf"])
def test_cli_max_duration_nonsense_is_one_line(tmp_path, bad, enc, monkeypatch):
    from typer.testing import CliRunner

    import cli

    monkeypatch.setattr(sv, "_load_encoder_class", encoder_loader(enc))
    path = tmp_path / "v.duckdb"
    Vault.create(path, PW, encoder=enc, kdf_log2_n=10).close()
    f = tmp_path / "a.wav"
    write_wav(f, tone_mix(6, 0.3))
    env = {"SPEECHVAULT_PASSPHRASE": PW}
    for args in (["ingest", path, f, "--max-duration", bad], ["search", path, f, "--max-duration", bad]):
        r = CliRunner().invoke(cli.app, [str(a) for a in args], env=env)
        assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (args, r.output)
        assert "--max-duration must be a positive number" in r.stderr
    r = CliRunner().invoke(cli.app, ["ingest", str(path), str(f), "--max-duration", "0.1"], env=env)
    assert r.exit_code == 1 and "exceeds the limit of 0.1 s" in r.stderr
