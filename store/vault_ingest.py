"""The ingest room of ``Vault``: encode, seal and store recordings in batched transactions, and
keep the index clustered by category (``compact``).

Why a module of its own: ingest is the vault's one long write path (each file read whole or kept
open for its chunks, coded, sealed; one transaction per batch, a transaction per file when the
batch fails; DuckDB's memory limit; the checkpoint after it), apart from the handle in
``store.vault``. ``VaultIngest`` is a mixin: its methods run on a ``Vault`` (``self._lock``,
``self._db()``, ``self._require_key``, ``self._seal_blob``, ...), and stay reachable (and
replaceable, as tests do) as ``Vault._insert_batch``, ``Vault._insert_recording``, ...
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

import duckdb
import numpy as np

from speechvault.errors import InvalidInputError, ModelError, SpeechVaultError
from store import access as _access
from store import blob_chunks as _chunks
from store import connection as _conn
from store import damage as _damage
from store import integrity as _integrity
from store import schema as _schema
from store import search as _search
from store import sources as _sources
from store.records import IngestEvent, IngestReport, RecordingRow
from store.vault_common import DEFAULT_BATCH_SIZE, _REC_COLS, _private_writes
from store.vault_common import chmod_private as _chmod_private


def _check_category_label(category: str | None) -> str | None:
    if category is None:
        return None
    if not isinstance(category, str) or not category.strip():
        raise InvalidInputError("category must be a non-empty text")
    return category


class VaultIngest:
    """``Vault.ingest`` and ``Vault.compact`` with their steps (mixed into ``store.vault.Vault``)."""

    @_private_writes
    @_damage.guarded
    def ingest(self, sources: Iterable[str | os.PathLike], *, category: str | None = None,
               progress: Callable[[IngestEvent], None] | None = None,
               cancel: threading.Event | None = None,
               batch_size: int = DEFAULT_BATCH_SIZE) -> IngestReport:
        """Encode, seal and store files. ``batch_size`` files per transaction; a duplicate (same
        SHA-256 as a stored or earlier file) is skipped; a bad file is reported in ``errors`` and
        skipped (it never leaves rows behind); ``cancel`` is checked between files and what was
        processed before it is committed."""
        self._require_writable("ingest")
        master = self._require_key("ingest")
        label = _check_category_label(category)
        if int(batch_size) < 1:
            raise InvalidInputError("batch_size must be >= 1")
        self._ingest_mb = _conn.ingest_memory_mb()  # DuckDB's memory while storing (refused early)
        self.bind()  # a legacy vault first (no-op once bound)
        _integrity.check_for_write(self, master)  # refuses changed settings or model
        enc = self.encoder
        try:
            total = len(sources)  # type: ignore[arg-type]
        except TypeError:
            total = None
        report = IngestReport()
        with self._lock:  # the stored SHA-256s once: a shared writer then needs no session per file
            known = dict(self._db().execute("SELECT sha256, id FROM recordings").fetchall())
            _chunks.discard_orphans(self._db())  # of an ingest that died before its rows
        pending: list[dict[str, Any]] = []
        pending_sha: dict[str, str] = {}
        pending_path: dict[str, str] = {}
        index = 0

        def emit(kind: str, path: str | None = None, rid: int | None = None,
                 message: str | None = None, at: int | None = None) -> None:
            if progress is not None:
                progress(IngestEvent(kind, index if at is None else at, total, path, rid, message))

        def flush() -> None:
            if not pending:
                return
            n_err = len(report.errors)
            try:
                added = self._insert_batch(pending, report)
            finally:
                for it in pending:  # a large file kept open for its chunks
                    if it.get("file") is not None:
                        it["file"].close()
            known.update((row.sha256, row.id) for row in added)
            for row in added:
                emit("added", pending_path[row.sha256], row.id, at=pending_index[row.sha256])
            for path, msg in report.errors[n_err:]:  # a file the database refused
                emit("error", path, None, msg)
            emit("committed", None, None, f"{len(added)} recording(s) committed")
            pending.clear()
            pending_sha.clear()
            pending_path.clear()
            pending_index.clear()

        pending_index: dict[str, int] = {}
        for src in sources:
            if cancel is not None and cancel.is_set():
                report.cancelled = True
                break
            index += 1
            spath = str(src)
            try:
                item = self._prepare(src, enc, master, label, pending_sha, known)
            except SpeechVaultError as exc:
                report.errors.append((spath, exc.message))
                emit("error", spath, None, exc.message)
                continue
            except (OSError, ValueError, RuntimeError, MemoryError) as exc:
                msg = f"{spath}: {' '.join(str(exc).split()) or type(exc).__name__}"
                report.errors.append((spath, msg))
                emit("error", spath, None, msg)
                continue
            if "pending_duplicate" in item:  # same bytes earlier in this batch: commit, look up
                flush()
                item = {"duplicate_of": int(known.get(item["pending_duplicate"], -1))}
            if "duplicate_of" in item:
                report.skipped_duplicates.append((spath, item["duplicate_of"]))
                emit("duplicate", spath, item["duplicate_of"], None)
                continue
            pending.append(item)
            pending_sha[item["sha256"]] = spath
            pending_path[item["sha256"]] = spath
            pending_index[item["sha256"]] = index
            if len(pending) >= int(batch_size):
                flush()
        flush()
        try:
            with self._lock, _conn.memory_limited(self._db(), self._ingest_mb):
                self._db().execute("CHECKPOINT")  # fold the WAL into the 0600 main file
            _chmod_private(self.path)
            if report.cancelled:
                emit("cancelled", None, None, "ingest cancelled; files processed before stay in the vault")
            self._maybe_compact()
        except duckdb.Error as exc:
            err = _conn.write_error(exc, self.path, self._ingest_mb)
            if err is None:
                raise
            self._invalidate()
            raise err from None
        return report


    def _prepare(self, src, enc, master: bytes, label: str | None,
                 pending_sha: dict[str, str], known: dict[str, int]) -> dict[str, Any]:
        from hashing.audio import read_info

        p = Path(src)
        # a large file stays on disk, read a chunk at a time (store.blob_chunks); a small one is read
        data, f, size, sha = _sources.read_or_keep_open(p, self.max_ingest_seconds,
                                                        _chunks.CHUNKED_ABOVE)
        if sha in known or sha in pending_sha:  # known: read at the start of this ingest
            if f is not None:
                f.close()
            return ({"duplicate_of": int(known[sha])} if sha in known
                    else {"pending_duplicate": sha})
        source = f if f is not None else _named_buffer(data, p)
        try:
            info = read_info(source)
            source.seek(0)
            codes = enc.encode_file(source, max_seconds=self.max_ingest_seconds)
        except BaseException:
            if f is not None:
                f.close()
            raise
        words = np.asarray(codes.words)
        cats = np.asarray(codes.category, dtype=np.int64).reshape(-1)
        if words.ndim != 2 or words.shape[1] != self.W or words.shape[0] != cats.shape[0] \
                or words.shape[0] < 1:
            raise ModelError(f"{p}: the encoder returned codes of shape {words.shape}, "
                             f"expected (n, {self.W})")
        if np.any(cats < 0) or np.any(cats >= self.C):
            raise ModelError(f"{p}: the encoder returned a category outside 0..{self.C - 1}")
        name_label = label if label is not None else self.class_names[int(cats[0])]
        return {
            "name": p.name, "category": name_label, "sha256": sha,
            "sample_rate": int(info.sample_rate), "channels": int(info.channels),
            "duration": float(info.duration), "size": size, "file": f,
            "words": words.astype(np.uint64, copy=False), "cats": cats, "data": data,
            "path": str(src), "frames": getattr(codes, "frames", None),
        }

    def _insert_recording(self, con: duckdb.DuckDBPyConnection, item: dict[str, Any]) -> RecordingRow:
        """Sealed here, inside the batch's transaction: the record id (drawn from the sequence
        without a commit of its own) is part of the blob's associated data."""
        now = _dt.datetime.now(_dt.timezone.utc)
        rid = item.get("rid") or int(con.execute("SELECT nextval('recordings_id_seq')").fetchone()[0])
        master = self._require_key("ingest")
        blob = (b"" if item.get("file") is not None  # empty: stored in chunks, below
                else self._seal_blob(item["data"], item["sha256"], rid, master))
        r = con.execute(
            "INSERT INTO recordings (id, name, category, sha256, sample_rate, channels, duration, "
            "size, added, n_windows, blob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"RETURNING {_REC_COLS}",
            [rid, item["name"], item["category"], item["sha256"], item["sample_rate"],
             item["channels"], item["duration"], item["size"], now, int(item["words"].shape[0]),
             blob]).fetchone()
        return self._row(r)

    def _store_chunks(self, con: duckdb.DuckDBPyConnection, items: list[dict[str, Any]]) -> None:
        """The chunks of the large files among ``items``, committed before their batch's
        transaction (``store.blob_chunks.store`` says why), each under the id its row gets."""
        for it in items:
            if it.get("file") is not None and "rid" not in it:
                rid = int(con.execute("SELECT nextval('recordings_id_seq')").fetchone()[0])
                _chunks.store(con, _chunks.seal_with(self, self._require_key("ingest")),
                              it["file"], it["size"], self.vault_id, rid, it["sha256"], it["path"])
                it["rid"] = rid

    def _insert_items(self, con: duckdb.DuckDBPyConnection,
                      items: list[dict[str, Any]]) -> list[RecordingRow]:
        """Recording rows (one statement each, for their ids), then all their index rows in one
        statement, inside the caller's transaction."""
        rows = [self._insert_recording(con, it) for it in items]
        rid = np.concatenate([np.full(it["words"].shape[0], r.id, dtype=np.int64)
                              for r, it in zip(rows, items)])
        framed = all(it.get("frames") is not None for it in items)  # identification windows
        _schema.insert_codes(
            con, "codes", self.K, rid,
            np.concatenate([np.arange(it["words"].shape[0]) for it in items]),
            np.concatenate([it["cats"] for it in items]),
            np.concatenate([it["words"] for it in items], axis=0),
            np.concatenate([it["frames"] for it in items]) if framed else None)
        con.execute("UPDATE vault_meta SET codes_unclustered = codes_unclustered + ?",
                    [int(rid.shape[0])])
        _integrity.add_records(con, self, items, rows)
        return rows

    def _insert_batch(self, items: list[dict[str, Any]], report: IngestReport) -> list[RecordingRow]:
        """All items in one transaction; if that fails, each item in its own transaction so one
        bad row costs only itself (never partial rows: recording + codes commit together)."""
        self._rows_cache = self._label_cache = None
        with self._lock:
            con = self._db()
            try:
                with _conn.memory_limited(con, self._ingest_mb):
                    self._store_chunks(con, items)
                    con.execute("BEGIN TRANSACTION")
                    rows = self._insert_items(con, items)
                    con.execute("COMMIT")
                _chmod_private(self.path)  # the WAL is (re)created with the process umask
                report.added.extend(rows)
                return rows
            except duckdb.Error as exc:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                err = _conn.write_error(exc, self.path, self._ingest_mb)
                if err is not None:
                    self._invalidate()
                    raise err from None
                if _conn.is_lock_error(exc) or len(items) == 1:
                    if _conn.is_lock_error(exc):
                        raise _access.busy_error(self.path) from None
                    it = items[0]
                    report.errors.append((it["path"], f"{it['path']}: could not be stored "
                                          f"({str(exc).splitlines()[0]})"))
                    return []
            except BaseException:  # KeyboardInterrupt etc.: leave no open transaction behind
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            rows = []
            for it in items:
                rows.extend(self._insert_batch([it], report))
            return rows

    def _maybe_compact(self) -> None:
        with self._lock:
            con = self._db()
            uncl = con.execute("SELECT codes_unclustered FROM vault_meta").fetchone()[0]
            total = con.execute("SELECT count(*) FROM codes").fetchone()[0]
            if _search.needs_compaction(int(uncl), int(total)):
                _search.compact(con, self.K)

    @_private_writes
    @_damage.guarded
    def compact(self) -> None:
        """Re-cluster the index by category now (ingest does it when the unsorted tail is large)."""
        self._require_writable("compact")
        with self._lock:
            _search.compact(self._db(), self.K)


def _named_buffer(data: bytes, path: Path) -> io.BytesIO:
    """In-memory copy of a file that keeps its name, so decode errors name the file, not a byte count."""
    buf = io.BytesIO(data)
    buf.name = str(path)
    return buf
