"""A long recording's sealed bytes as a sequence of chunks (issue 17, item 7; vault format 5).

Why: a recording used to be one sealed BLOB in ``recordings.blob``: ingesting a 60-minute WAV
held the file's bytes, the sealed copy and DuckDB's copy of that value at once (115 MB each),
and exporting it held the whole plaintext. A file larger than ``CHUNKED_ABOVE`` is now read
from its open file ``CHUNK_BYTES`` at a time, each piece sealed on its own into a row of
``blob_chunks`` (recording id, index, count, sealed chunk); its ``recordings.blob`` is empty (the
marker). Export and verify read the chunks back a few at a time.

Each chunk is sealed (``store.envelope``) with associated data = the recording's blob binding
(``store.integrity.blob_ad``: vault id, record id, SHA-256 of the whole original) followed by the
chunk's index and the chunk count. So a chunk cannot be moved to another place, another recording
or another vault, the sequence cannot be cut short or extended (every chunk names the count) and
the SHA-256 of the joined plaintext -- itself covered by the recording's listing MAC
(``store.integrity``) -- is checked at the end. Small files keep the one-BLOB layout.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from typing import Any, BinaryIO, Callable, Iterator

import duckdb

from speechvault.errors import AudioDecodeError, IntegrityError
from store import integrity as _integrity

__all__ = ["CHUNK_BYTES", "CHUNKED_ABOVE", "COMMIT_BYTES", "READ_BYTES", "DDL", "chunk_ad",
           "is_chunked", "sha256_of", "store", "open_chunks",
           "reseal", "delete", "discard_orphans", "has_table"]

#: a file larger than this is stored in chunks; a smaller one stays one sealed BLOB
CHUNKED_ABOVE = 4 << 20
#: plaintext bytes per chunk of a new recording. Small, because what DuckDB pins to checkpoint
#: stored chunks grows with the size of each value: with 4 MiB chunks (format 5 as first
#: shipped; they still read) an hour of WAV took 564 MB and a second hour 1,249 MB; under the
#: 64 MB ingest limit (``store.connection``) 64 KiB and 32 KiB chunks made DuckDB fail a
#: checkpoint, 16 KiB ones held two hours at ~250 MB (docs/results/long_inputs_memory.md).
#: Readers take any size: each row holds what it holds.
CHUNK_BYTES = 16 << 10
#: chunks committed per transaction (a transaction's rows stay in memory until it commits;
#: one commit per 16 KiB chunk would be an fsync per chunk)
COMMIT_BYTES = 4 << 20
#: plaintext bytes a reader fetches per query (several small chunks, or one large old one)
READ_BYTES = 1 << 20
_LABEL = b"|chunk"

DDL = """CREATE TABLE blob_chunks (
    recording_id BIGINT NOT NULL,
    idx INTEGER NOT NULL,
    count INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    PRIMARY KEY (recording_id, idx)
)"""


def is_chunked(blob: bytes | None) -> bool:
    """``recordings.blob`` of a recording stored in chunks: empty (a sealed blob never is)."""
    return blob is not None and len(blob) == 0


def has_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'blob_chunks' "
        "AND table_schema = 'main' AND table_catalog = current_database()").fetchone()[0])


def chunk_ad(vault_id: str, record_id: int, sha256_hex: str, index: int, count: int) -> bytes:
    """Associated data of chunk ``index`` of ``count``: the recording's blob binding + both."""
    return (_integrity.blob_ad(vault_id, record_id, sha256_hex) + _LABEL
            + struct.pack(">II", int(index), int(count)))


def sha256_of(f: BinaryIO) -> tuple[str, int]:
    """(SHA-256 hex, size) of an open file read ``READ_BYTES`` at a time; left at offset 0."""
    f.seek(0)
    h, n = hashlib.sha256(), 0
    for block in iter(lambda: f.read(READ_BYTES), b""):
        h.update(block)
        n += len(block)
    f.seek(0)
    return h.hexdigest(), n


def store(con: duckdb.DuckDBPyConnection, seal: Callable[[bytes, bytes], bytes], f: BinaryIO,
          size: int, vault_id: str, record_id: int, sha256_hex: str, name: str) -> int:
    """Seal ``f`` (``size`` bytes, SHA-256 ``sha256_hex`` when it was coded) into chunk rows of
    ``record_id``, ``CHUNK_BYTES`` each, committed ``COMMIT_BYTES`` at a time (``con`` in
    auto-commit), before the recording's row: DuckDB keeps a transaction's rows in memory until
    it commits, and a checkpoint (every 16 MB of log) can only fold committed ones into the file
    -- one transaction for an hour of WAV held all of its 110 MB. Until the recording's own
    transaction commits the chunks are
    orphans (``discard_orphans``); on any error here they are deleted again. A file that changed
    since it was coded (other bytes or length) raises ``AudioDecodeError``."""
    try:
        return _store(con, seal, f, size, vault_id, record_id, sha256_hex, name)
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            delete(con, record_id)
        raise


def discard_orphans(con: duckdb.DuckDBPyConnection) -> int:
    """Delete chunks whose recording was never committed (an ingest that failed or was killed
    between its chunks and its recording row); the writer calls it before an ingest."""
    if not has_table(con):
        return 0
    n = con.execute("SELECT count(*) FROM blob_chunks WHERE recording_id NOT IN "
                    "(SELECT id FROM recordings)").fetchone()[0]
    if n:
        con.execute("DELETE FROM blob_chunks WHERE recording_id NOT IN (SELECT id FROM recordings)")
    return int(n)


def _store(con: duckdb.DuckDBPyConnection, seal: Callable[[bytes, bytes], bytes], f: BinaryIO,
           size: int, vault_id: str, record_id: int, sha256_hex: str, name: str) -> int:
    count = max(1, -(-int(size) // CHUNK_BYTES))
    per_commit = max(1, COMMIT_BYTES // CHUNK_BYTES)
    f.seek(0)
    h = hashlib.sha256()
    for first in range(0, count, per_commit):
        con.execute("BEGIN TRANSACTION")
        try:
            for index in range(first, min(count, first + per_commit)):
                data = f.read(CHUNK_BYTES)
                h.update(data)
                con.execute("INSERT INTO blob_chunks VALUES (?, ?, ?, ?)",
                            [int(record_id), index, count,
                             seal(data, chunk_ad(vault_id, record_id, sha256_hex, index, count))])
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
    if f.read(1) or h.hexdigest() != sha256_hex:
        raise AudioDecodeError(f"{name}: changed while being read (its SHA-256 differs)")
    return count


def open_chunks(fetch: Callable[[str, list], list[tuple]], open_sealed: Callable[[bytes, bytes], bytes],
                vault_id: str, record_id: int, sha256_hex: str) -> Iterator[bytes]:
    """The plaintext chunks of ``record_id`` in order, each tag checked, and the SHA-256 of all
    of them at the end (``IntegrityError`` naming the recording). ``fetch(sql, params)`` runs one
    query (the caller's lock per chunk); ``open_sealed(blob, associated_data)``."""
    rid = int(record_id)
    n, lo, hi, c_lo, c_hi, longest = fetch(
        "SELECT count(*), min(idx), max(idx), min(count), max(count), max(octet_length(chunk)) "
        "FROM blob_chunks WHERE recording_id = ?", [rid])[0]
    if not n or c_lo != c_hi or lo != 0 or hi != n - 1 or c_lo != n:
        raise IntegrityError(f"recording {rid}: its stored chunks are missing or out of order "
                             f"({n} stored, {c_lo} expected)")
    step = max(1, READ_BYTES // max(1, int(longest)))  # 64 of 16 KiB, 1 of an old 4 MiB
    h = hashlib.sha256()
    for first in range(0, n, step):
        rows = fetch("SELECT idx, chunk FROM blob_chunks WHERE recording_id = ? AND idx >= ? "
                     "AND idx < ? ORDER BY idx", [rid, first, first + step])
        for index, (stored_idx, blob) in enumerate(rows, start=first):
            if stored_idx != index:  # the counts above were read in another query
                raise IntegrityError(f"recording {rid}: its stored chunks are missing or out of "
                                     f"order (chunk {index} is not there)")
            try:
                data = open_sealed(bytes(blob), chunk_ad(vault_id, rid, sha256_hex, index, n))
            except IntegrityError as exc:
                raise IntegrityError(f"recording {rid}: chunk {index}: {exc.message}") from None
            h.update(data)
            yield data
        if len(rows) != min(step, n - first):
            raise IntegrityError(f"recording {rid}: its stored chunks are missing or out of order "
                                 f"({first + len(rows)} read, {n} expected)")
    if h.hexdigest() != sha256_hex:
        raise IntegrityError(f"recording {rid}: decrypted bytes do not match the stored SHA-256")


def reseal(con: duckdb.DuckDBPyConnection, open_sealed: Callable[[bytes, bytes], bytes],
           seal: Callable[[bytes, bytes], bytes], vault_id: str, record_id: int,
           sha256_hex: str) -> int:
    """Re-seal every chunk of ``record_id`` (``passwd --rekey``), inside the caller's
    transaction, one chunk in memory at a time; returns the count."""
    fetch: Callable[[str, list], list[tuple]] = lambda sql, p: con.execute(sql, p).fetchall()  # noqa: E731
    n = 0
    for index, data in enumerate(open_chunks(fetch, open_sealed, vault_id, record_id, sha256_hex)):
        count = fetch("SELECT count FROM blob_chunks WHERE recording_id = ? AND idx = ?",
                      [int(record_id), index])[0][0]
        con.execute("UPDATE blob_chunks SET chunk = ? WHERE recording_id = ? AND idx = ?",
                    [seal(data, chunk_ad(vault_id, record_id, sha256_hex, index, count)),
                     int(record_id), index])
        n += 1
    return n


def delete(con: duckdb.DuckDBPyConnection, record_id: int) -> None:
    """The chunks of a deleted recording (nothing for a vault before format 5)."""
    if has_table(con):
        con.execute("DELETE FROM blob_chunks WHERE recording_id = ?", [int(record_id)])


def seal_with(vault: Any, master: bytes) -> Callable[[bytes, bytes], bytes]:
    """``seal(data, associated_data)`` with ``vault``'s cipher under ``master``."""
    from store.envelope import seal

    return lambda data, ad: seal(data, master, cipher=vault.cipher, associated_data=ad)


def opener(master: bytes) -> Callable[[bytes, bytes], bytes]:
    from store.envelope import open_sealed

    return lambda blob, ad: open_sealed(blob, master, associated_data=ad)
