"""An ingest bounds DuckDB's memory while it stores a recording (issue 17, item 7): DuckDB's
``memory_limit`` is held at ``store.connection.INGEST_MEMORY_MB`` (or
``$SPEECHVAULT_INGEST_MEMORY_MB``) for the store and its checkpoint and given back afterwards,
and an ingest that needs more fails in one line with everything committed before intact.
Small chunks and FakeEncoder keep it fast; the memory figures themselves are in
``model_export.bench_memory`` (docs/results/long_inputs_memory.md)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from speechvault.errors import InvalidInputError, MemoryLimitError
from store import blob_chunks
from store import connection as conn
from store.vault import Vault
from tests.fakes import SR, FakeEncoder, tone_mix, wav_bytes

PW = "memory test pw"
CHUNK = 4096


@pytest.fixture()
def small_chunks(monkeypatch):
    monkeypatch.setattr(blob_chunks, "CHUNK_BYTES", CHUNK)
    monkeypatch.setattr(blob_chunks, "CHUNKED_ABOVE", CHUNK)


def _wav(path: Path, seed: int, seconds: float) -> Path:
    path.write_bytes(wav_bytes(tone_mix(seed, seconds), SR))
    return path


def _setting(con) -> str:
    return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_the_limit_holds_while_chunks_are_stored_and_is_given_back(tmp_path, small_chunks,
                                                                   monkeypatch):
    seen: list[str] = []
    real = blob_chunks.store

    def spy(con, *a, **k):
        seen.append(_setting(con))
        return real(con, *a, **k)

    monkeypatch.setattr(blob_chunks, "store", spy)
    monkeypatch.setenv(conn.MEMORY_ENV, "48")
    with Vault.create(tmp_path / "v.duckdb", PW, encoder=FakeEncoder(), kdf_log2_n=10) as v:
        default = _setting(v._con)
        assert not v.ingest([_wav(tmp_path / "a.wav", 1, 2.0)]).errors
        scratch = duckdb.connect()
        scratch.execute("SET memory_limit = '48MB'")
        assert seen and set(seen) == {_setting(scratch)}, seen
        assert _setting(v._con) == default != seen[0]  # a search afterwards is not held to it


def test_an_ingest_over_the_limit_fails_in_one_line_and_loses_nothing(tmp_path, small_chunks,
                                                                      monkeypatch):
    path = tmp_path / "v.duckdb"
    first = _wav(tmp_path / "a.wav", 1, 2.0)
    big = _wav(tmp_path / "b.wav", 2, 20.0)  # 640 KB in 157 chunks: more than 1 MB of pages
    with Vault.create(path, PW, encoder=FakeEncoder(), kdf_log2_n=10) as v:
        assert not v.ingest([first]).errors
    monkeypatch.setenv(conn.MEMORY_ENV, "1")
    with Vault.open(path, read_only=False, passphrase=PW, encoder=FakeEncoder()) as v:
        with pytest.raises(MemoryLimitError) as err:
            v.ingest([big])
    msg = str(err.value)
    assert "\n" not in msg and "1 MB memory limit" in msg and conn.MEMORY_ENV in msg
    assert "Possible solutions" not in msg  # DuckDB's advice is not the user's next step
    monkeypatch.delenv(conn.MEMORY_ENV)
    with Vault.open(path, read_only=False, passphrase=PW, encoder=FakeEncoder()) as v:
        assert [r.name for r in v.list()] == ["a.wav"]
        assert v.export(1) == first.read_bytes() and v.verify().ok
        rep = v.ingest([big])  # the limit raised: the same file goes in, no orphans left
        assert not rep.errors and v.export(rep.added[0].id) == big.read_bytes()
        assert v._query("SELECT count(*) FROM blob_chunks WHERE recording_id NOT IN "
                        "(SELECT id FROM recordings)")[0][0] == 0
        assert v.verify().ok


def test_the_cli_reports_the_limit_in_one_line(tmp_path, small_chunks, monkeypatch):
    from typer.testing import CliRunner

    import cli

    path = tmp_path / "v.duckdb"
    with Vault.create(path, PW, encoder=FakeEncoder(), kdf_log2_n=10) as v:
        assert not v.ingest([_wav(tmp_path / "a.wav", 1, 2.0)]).errors
    monkeypatch.setattr("store.vault._load_encoder_class", lambda: _FakeFromBytes)
    env = {"SPEECHVAULT_PASSPHRASE": PW, "COLUMNS": "200"}
    for value, kind in (("1", "memory limit"), ("lots", "must be a whole number")):
        big = _wav(tmp_path / "b.wav", 2, 20.0)
        r = CliRunner().invoke(cli.app, ["ingest", str(path), str(big)],
                               env={**env, conn.MEMORY_ENV: value})
        assert r.exit_code != 0 and (r.exception is None or isinstance(r.exception, SystemExit))
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and kind in lines[0], r.stderr
    with Vault.open(path, passphrase=PW, encoder=FakeEncoder()) as v:
        assert len(v.list()) == 1 and v.verify().ok


class _FakeFromBytes(FakeEncoder):
    """The stored FakeEncoder "model", as ``Vault.encoder`` loads a vault's own model."""

    @classmethod
    def from_bytes(cls, tflite, meta, **kw):
        return cls()


def test_a_bad_limit_is_refused_before_anything_is_read(monkeypatch):
    for raw in ("0", "-5", "64MB", "x"):
        monkeypatch.setenv(conn.MEMORY_ENV, raw)
        with pytest.raises(InvalidInputError, match=conn.MEMORY_ENV):
            conn.ingest_memory_mb()
    monkeypatch.setenv(conn.MEMORY_ENV, " 96 ")
    assert conn.ingest_memory_mb() == 96
    monkeypatch.delenv(conn.MEMORY_ENV)
    assert conn.ingest_memory_mb() == conn.INGEST_MEMORY_MB
