"""Large recordings are sealed and stored in chunks (store/blob_chunks.py, vault format 5; issue
17, item 7): the round trip is byte-identical, each chunk is bound to its place, its recording,
its vault and the chunk count (a swapped, moved, dropped or re-counted chunk is refused by export
and named by verify), delete and rekey carry the chunks, and a format-4 vault upgrades without
its passphrase and keeps verifying. ``CHUNK_BYTES`` and ``CHUNKED_ABOVE`` are made small so a
few-second WAV has many chunks; FakeEncoder keeps it fast."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from speechvault.errors import IntegrityError
from store import blob_chunks, schema
from store.vault import Vault
from tests.fakes import SR, FakeEncoder, tone_mix, wav_bytes

PW = "chunk test pw"
CHUNK = 4096


@pytest.fixture()
def small_chunks(monkeypatch):
    _small(monkeypatch)


def _small(monkeypatch) -> None:
    """Files over ``CHUNK`` bytes go to chunks of ``CHUNK`` bytes."""
    monkeypatch.setattr(blob_chunks, "CHUNK_BYTES", CHUNK)
    monkeypatch.setattr(blob_chunks, "CHUNKED_ABOVE", CHUNK)


@pytest.fixture()
def files(tmp_path) -> list[Path]:
    out = []
    for i, seconds in enumerate((2.0, 1.3, 0.1)):  # 64 KB, 42 KB: chunked; 3.2 KB: one blob
        p = tmp_path / f"rec{i}.wav"
        p.write_bytes(wav_bytes(tone_mix(40 + i, seconds), SR))
        out.append(p)
    return out


@pytest.fixture()
def vault(tmp_path, files, small_chunks):
    path = tmp_path / "v.duckdb"
    with Vault.create(path, PW, encoder=FakeEncoder(), kdf_log2_n=10) as v:
        rep = v.ingest(files)
        assert not rep.errors and len(rep.added) == 3
    return path


def _chunk_rows(path: Path) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT recording_id, idx, count, octet_length(chunk) FROM blob_chunks "
                           "ORDER BY recording_id, idx").fetchall()
    finally:
        con.close()


def _edit(path: Path, *sql: str) -> None:
    import duckdb

    con = duckdb.connect(str(path))
    try:
        for s in sql:
            con.execute(s)
    finally:
        con.close()


def test_large_files_go_to_chunks_and_come_back_byte_identical(vault, files, tmp_path):
    rows = _chunk_rows(vault)
    counts = {}
    for rid, idx, count, _ in rows:
        counts.setdefault(rid, []).append((idx, count))
    sizes = [p.stat().st_size for p in files]
    assert sorted(len(v) for v in counts.values()) == sorted(
        -(-n // CHUNK) for n in sizes if n > CHUNK)
    with Vault.open(vault, passphrase=PW) as v:
        assert v.info().format_version == schema.FORMAT_VERSION == 7
        for rid, p in zip((1, 2, 3), files):
            assert v.export(rid) == p.read_bytes()
            pieces = list(v.export_chunks(rid))
            assert b"".join(pieces) == p.read_bytes()
            assert len(pieces) == (len(counts[rid]) if rid in counts else 1)
            out = v.export_to(rid, tmp_path / f"out{rid}.wav")
            assert hashlib.sha256(out.read_bytes()).hexdigest() == v.get(rid).sha256
        rep = v.verify()
        assert rep.ok and rep.checked == 3, rep.failures


@pytest.mark.parametrize("edit, why", [
    (["UPDATE blob_chunks SET idx = 99 WHERE recording_id = 1 AND idx = 1",
      "UPDATE blob_chunks SET idx = 1 WHERE recording_id = 1 AND idx = 2",
      "UPDATE blob_chunks SET idx = 2 WHERE recording_id = 1 AND idx = 99"], "swapped"),
    (["DELETE FROM blob_chunks WHERE recording_id = 1 AND idx = "
      "(SELECT max(idx) FROM blob_chunks WHERE recording_id = 1)"], "dropped"),
    (["DELETE FROM blob_chunks WHERE recording_id = 1 AND idx = "
      "(SELECT max(idx) FROM blob_chunks WHERE recording_id = 1)",
      "UPDATE blob_chunks SET count = count - 1 WHERE recording_id = 1"], "cut short, recounted"),
    (["UPDATE blob_chunks SET chunk = (SELECT chunk FROM blob_chunks WHERE recording_id = 2 "
      "AND idx = 0) WHERE recording_id = 1 AND idx = 0"], "another recording's"),
    (["UPDATE blob_chunks SET chunk = chunk || '\\x00'::BLOB WHERE recording_id = 1 AND idx = 3"],
     "extended"),
])
def test_an_edited_chunk_sequence_is_refused_and_named(vault, edit, why):
    _edit(vault, *edit)
    with Vault.open(vault, passphrase=PW) as v:
        with pytest.raises(IntegrityError, match="recording 1"):
            v.export(1)
        with pytest.raises(IntegrityError):
            b"".join(v.export_chunks(1))
        assert v.export(2) and v.export(3)  # the others are untouched
        rep = v.verify()
        assert not rep.ok and [f[0] for f in rep.failures] == [1], (why, rep.failures)


def test_delete_and_rekey_carry_the_chunks(vault, files):
    with Vault.open(vault, read_only=False, passphrase=PW) as v:
        v.delete(2)
        assert {r[0] for r in _chunk_rows_live(v)} == {1}
        v.rekey(PW, "a new passphrase")
    with Vault.open(vault, passphrase="a new passphrase") as v:
        assert v.export(1) == files[0].read_bytes()
        assert v.verify().ok


def _chunk_rows_live(v) -> list[tuple]:
    return v._query("SELECT recording_id, idx FROM blob_chunks")


def test_a_format_4_vault_upgrades_without_its_passphrase_and_keeps_verifying(
        tmp_path, files, small_chunks, monkeypatch):
    path = tmp_path / "v4.duckdb"
    with monkeypatch.context() as m:  # a vault as format 4 made it: no blob_chunks table
        m.setattr(schema, "FORMAT_VERSION", 4)
        m.setattr(schema, "create_ddl", lambda K: [*schema._DDL_V1, schema.codes_ddl(K),
                                                   schema._RECORD_MACS_DDL])
        with Vault.create(path, PW, encoder=FakeEncoder(), kdf_log2_n=10) as v:
            assert not v.ingest(files[2:]).errors  # a small file: one blob
        assert not blob_chunks.has_table(_con(path))
    with Vault.open(path, read_only=False) as v:  # no passphrase: the upgrade needs none
        assert v.info().format_version == schema.FORMAT_VERSION == 7  # through 5 and 6
    with Vault.open(path, read_only=False, passphrase=PW, encoder=FakeEncoder()) as v:
        assert v.verify().ok
        assert not v.ingest(files[:2]).errors  # an ingest accepts the upgraded settings
        assert v.export(2) == files[0].read_bytes() and v.verify().ok


def _con(path: Path):
    import duckdb

    return duckdb.connect(str(path), read_only=True)


def test_chunks_are_committed_before_their_row_and_orphans_go_with_the_next_ingest(
        vault, files, tmp_path, monkeypatch):
    """An ingest that dies between its chunks and its recording row leaves orphan chunks (never
    a half recording); the next ingest deletes them."""
    import duckdb

    big = tmp_path / "big.wav"
    big.write_bytes(wav_bytes(tone_mix(77, 1.0), SR))
    with Vault.open(vault, read_only=False, passphrase=PW, encoder=FakeEncoder()) as v:
        def die(*a, **k):
            raise KeyboardInterrupt  # after the chunks, inside the recording's transaction
        monkeypatch.setattr(v, "_insert_items", die)
        with pytest.raises(KeyboardInterrupt):
            v.ingest([big])
    con = duckdb.connect(str(vault), read_only=True)
    orphans = con.execute("SELECT count(*) FROM blob_chunks WHERE recording_id NOT IN "
                          "(SELECT id FROM recordings)").fetchone()[0]
    n_rec = con.execute("SELECT count(*) FROM recordings").fetchone()[0]
    con.close()
    assert orphans == -(-big.stat().st_size // CHUNK) and n_rec == 3
    monkeypatch.undo()
    _small(monkeypatch)
    with Vault.open(vault, read_only=False, passphrase=PW, encoder=FakeEncoder()) as v:
        rep = v.ingest([big])
        assert not rep.errors and len(rep.added) == 1
        rid = rep.added[0].id
        assert v.export(rid) == big.read_bytes() and v.verify().ok
        assert v._query("SELECT count(*) FROM blob_chunks WHERE recording_id NOT IN "
                        "(SELECT id FROM recordings)")[0][0] == 0


def test_a_chunked_recording_reaches_a_lake_as_one_sealed_object(vault, files, tmp_path):
    from store import lake_export
    from store.exports import save_recording
    from store.lake import LakeVault

    with Vault.open(vault, passphrase=PW, encoder=FakeEncoder()) as v:
        lake_export.export_lake(v, tmp_path / "lake")
    with LakeVault.open_lake(tmp_path / "lake", passphrase=PW) as lv:
        for rid, p in zip((1, 2, 3), files):
            assert lv.export(rid) == p.read_bytes()
            out = save_recording(lv, rid, f"{tmp_path / 'out'}/", file_name=f"r{rid}.wav")
            assert out.path.read_bytes() == p.read_bytes()


def test_recordings_of_any_chunk_size_read_back_a_few_chunks_per_query(tmp_path, files,
                                                                       monkeypatch):
    """A vault holds recordings chunked at another size (4 MiB before session 21, 16 KiB now):
    each reads back byte-identical and verifies, fetched ``READ_BYTES`` at a time (several
    queries of several chunks here), and a gap found in a later query is still refused."""
    _small(monkeypatch)
    monkeypatch.setattr(blob_chunks, "CHUNK_BYTES", 3 * CHUNK)  # the "old", larger chunks
    path = tmp_path / "v.duckdb"
    with Vault.create(path, PW, encoder=FakeEncoder(), kdf_log2_n=10) as v:
        assert not v.ingest(files[:1]).errors
    monkeypatch.setattr(blob_chunks, "CHUNK_BYTES", CHUNK)
    monkeypatch.setattr(blob_chunks, "READ_BYTES", 5 * CHUNK)  # a few chunks per query
    queries: list[str] = []
    with Vault.open(path, read_only=False, passphrase=PW, encoder=FakeEncoder()) as v:
        assert not v.ingest(files[1:2]).errors
        sizes = dict(v._query("SELECT recording_id, max(octet_length(chunk)) FROM blob_chunks "
                              "GROUP BY ALL"))
        assert sizes[1] > 3 * CHUNK > CHUNK + 100 > sizes[2] > CHUNK  # sealed: + header, tag
        real = v._query
        monkeypatch.setattr(v, "_query", lambda sql, p=(): (queries.append(sql), real(sql, p))[1])
        for rid, p in zip((1, 2), files):
            queries.clear()
            assert b"".join(v.export_chunks(rid)) == p.read_bytes()
            n = -(-p.stat().st_size // (3 * CHUNK if rid == 1 else CHUNK))
            fetches = sum("idx >= ?" in q for q in queries)
            assert fetches == -(-n // max(1, (5 * CHUNK) // sizes[rid]))
            assert (1 < fetches < n) if rid == 2 else fetches == n  # large ones: one a query
        assert v.verify().ok
        # a chunk gone between the first query and a later one (a delete by another process):
        # in the middle of a fetch (5) or at its end (7, the fetch comes back short)
        for gone, why in ((5, "chunk 5 is not there"), (7, r"7 read, \d+ expected")):
            fetch = lambda sql, p, g=gone: [  # noqa: E731
                r for r in real(sql, p) if "idx >= ?" not in sql or r[0] != g]
            with pytest.raises(IntegrityError, match=f"recording 2: .*{why}"):
                b"".join(blob_chunks.open_chunks(fetch, blob_chunks.opener(v._master), v.vault_id,
                                                 2, v.get(2).sha256))
