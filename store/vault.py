"""``Vault``: a private, searchable vault of speech recordings in one DuckDB file.

Threat model (the paper's): the hash codes are the index an untrusted server searches, so
``search``, ``list``, ``info``, ``category_counts``, ``get`` and ``codes_of`` work without the
passphrase; ``ingest`` (sealing), ``export`` and ``verify`` (opening blobs) need it, and
``change_passphrase`` needs the old one. The passphrase is never stored; the master key lives in
memory only while the vault is open and unlocked.

Concurrency: DuckDB allows one read-write process or many read-only processes per file. Open
read-only (the default) for search/list/info/export; read-write for ingest/delete/passwd. A
*shared* handle (``open(..., shared=True)``, what the CLI, TUI and SSH use) holds the file only
for one operation at a time, so searches go on during an ingest and an ingest starts while
searchers are open (``store.access``); a held handle (the default) keeps it open. A lock held
longer than ``wait`` seconds is reported as ``VaultBusyError`` naming the holder.

Category label of an ingested recording: ``category=`` if given, else the model's predicted class
name of the recording's first window. (The index's ``codes.category`` is always the model's class
id per window, h1, which is what the two-stage search filters on.)
"""

from __future__ import annotations

import dataclasses

import contextlib
import datetime as _dt
import functools
import hashlib
import io
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import duckdb
import numpy as np

import speechvault
from speechvault.errors import (
    IntegrityError,
    InvalidInputError,
    ModelError,
    ModelMismatchError,
    NotFoundError,
    PassphraseRequiredError,
    SpeechVaultError,
    StorageError,
    VaultFormatError,
)
from store import access as _access
from store import blob_chunks as _chunks
from store import connection as _conn
from store import damage as _damage
from store import encrypted_index as _ei
from store import integrity as _integrity
from store import labels as _labels
from store import private_files as _private
from store import rekey as _rekey
from store import schema as _schema
from store import sources as _sources
from store import search as _search
from store import sql_dialects as _dialects
from store.records import (
    Hit,
    IngestEvent,
    IngestReport,
    QueryCode,
    RecordingRow,
    SearchResult,
    StoredCodes,
    VaultInfo,
    VerifyReport,
)

__all__ = [
    "Vault",
    "CIPHERS",
    "MODES",
    "DEFAULT_BATCH_SIZE",
    "RecordingRow",
    "IngestEvent",
    "IngestReport",
    "QueryCode",
    "Hit",
    "SearchResult",
    "VaultInfo",
    "VerifyReport",
    "StoredCodes",
]

CIPHERS = ("rossler", "chacha20poly1305")
#: "auto": two-stage, and when no recording of the query's category is within tau, traversal of
#: every row (issue 7: a noisy copy may change category - 3.4 % of noise-20-dB copies with the
#: default model - and the identification code still finds its original among all rows).
MODES = ("auto", "two-stage", "traversal", "multi-probe")
#: files per ingest transaction
DEFAULT_BATCH_SIZE = 32
_REC_COLS = "id, name, category, sha256, sample_rate, channels, duration, size, added, n_windows"


def _check_category_label(category: str | None) -> str | None:
    if category is None:
        return None
    if not isinstance(category, str) or not category.strip():
        raise InvalidInputError("category must be a non-empty text")
    return category


def _load_encoder_class():
    from hashing.encoder import Encoder  # lazy: TFLite runtime only when encoding

    return Encoder


def _model_name(meta_json: str) -> str:
    try:
        return str(json.loads(meta_json).get("name", ""))
    except (ValueError, AttributeError):
        return ""


def _build_new_vault(dest: Path, index_key: str | None, meta_row: list, model_row: list,
                     K: int) -> None:
    """Build a complete vault in a private (0700) temporary folder next to ``dest`` and only then
    link it to ``dest``: a failure (full disk, ...) leaves nothing at ``dest`` to block a retry,
    and nothing is ever written through a symbolic link planted at ``dest``."""
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".init", dir=dest.parent))
    tmp = work / dest.name
    try:
        con = (_conn.connect(str(tmp), read_only=False) if index_key is None else
               _conn.connect_encrypted(str(tmp), index_key, read_only=False, create=True))
        try:
            con.execute("BEGIN TRANSACTION")
            for stmt in _schema.create_ddl(K):
                con.execute(stmt)
            con.execute(
                "INSERT INTO vault_meta (magic, format_version, created, app_version, cipher, "
                "key_wrap, model_sha256, k, c, class_names, tau, vault_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", meta_row)
            con.execute("INSERT INTO model (sha256, meta_json, tflite, fingerprint) "
                        "VALUES (?, ?, ?, ?)", model_row)
            con.execute("INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
                        [_schema.FORMAT_VERSION, "created"])
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        if Path(str(tmp) + ".wal").exists():
            raise StorageError(f"{dest}: the new vault's write-ahead log was not folded in")
        _private.publish_new(tmp, dest)
    except duckdb.Error as exc:
        raise (_conn.storage_error(exc, dest) if _conn.is_storage_error(exc)
               else _conn.translate_connect_error(exc, str(dest))) from None
    except OSError as exc:
        raise _conn.storage_error(exc, dest) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _private_writes(method: Callable) -> Callable:
    """Run ``method`` under umask 077: DuckDB creates the WAL (and temporary files) at a commit,
    with the process umask, so a chmod afterwards would leave them briefly world-readable."""
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _private.private_umask():
            return method(*args, **kwargs)

    return wrapper


def _chmod_private(path: Path) -> None:
    for p in (path, Path(str(path) + ".wal")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(p, 0o600)


# ----------------------------------------------------------------------------- the vault
class Vault:
    """One vault file. Use ``Vault.create`` or ``Vault.open``; close it (or use ``with``)."""

    #: longest recording ``ingest`` accepts (seconds, checked from the header before reading;
    #: None: no limit) and longest search query; the CLI's ``--max-duration`` sets them
    max_ingest_seconds: float | None = _sources.DEFAULT_MAX_INGEST_SECONDS
    max_query_seconds: float | None = _sources.DEFAULT_MAX_QUERY_SECONDS
    #: how the search statements are spelled (a lake read by another engine: ``store.lake``)
    _dialect: _dialects.Dialect = _dialects.DUCKDB

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, *, read_only: bool,
                 encoder: Any | None, index_encrypted: bool = False,
                 access: "_access.VaultAccess | None" = None) -> None:
        self.path = Path(path)
        #: the whole file is under DuckDB's database encryption (``init --encrypt-index``)
        self.index_encrypted = bool(index_encrypted)
        self._con: duckdb.DuckDBPyConnection | None = con
        self.read_only = bool(read_only)
        self._encoder = encoder
        self._encoder_given = encoder is not None
        self._master: bytes | None = None
        self._closed = False
        self._access = access or _access.VaultAccess(self.path, lambda: con, read_only=read_only,
                                                     shared=False)
        self._lock = _access.Sessions(self._begin_session, self._end_session,
                                      shared=self._access.shared)
        self._load_meta()
        if encoder is not None:
            self._check_encoder(encoder)

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path, passphrase: str, *, encoder: Any | None = None, cipher: str = "rossler",
               kdf_log2_n: int = 17, tau: float | None = None,
               encrypt_index: bool = False) -> "Vault":
        """Create a new vault file (mode 0600), opened read-write and unlocked. ``encrypt_index``
        puts the whole file under DuckDB's database encryption (``store.encrypted_index``)."""
        from store import keys  # lazy

        p = Path(path)
        _private.refuse_existing(p, "choose another path (or delete it)")
        if not p.parent.exists():
            raise NotFoundError(f"{p.parent}: no such directory")
        if cipher not in CIPHERS:
            raise InvalidInputError(f"unknown cipher {cipher!r}; choose one of {', '.join(CIPHERS)}")
        if not isinstance(passphrase, str) or not passphrase:
            raise InvalidInputError("the passphrase must not be empty")
        if encoder is None:
            encoder = _load_encoder_class().default()
        meta = encoder.meta
        K, C = int(encoder.K), int(meta.C)  # K: bits of the indexed code (h2 or fingerprint)
        class_names = [str(c) for c in meta.class_names]
        if len(class_names) != C:
            raise ModelError("model metadata: class_names does not list C names")
        if C > 32767:
            raise ModelError(f"too many categories ({C}) for the index")
        tau = float(meta.tau if tau is None else tau)
        if not 0.0 < tau < 0.5:
            raise InvalidInputError(f"tau must be in (0, 0.5), got {tau}")
        master = keys.new_master_key()
        wrap = keys.wrap_master_key(master, passphrase, log2_n=kdf_log2_n)
        tflite = bytes(encoder.tflite_bytes)
        sha = str(encoder.sha256)
        meta_json = meta.to_json() if hasattr(meta, "to_json") else json.dumps(meta.to_dict())

        index_key = _ei.derive_index_key(passphrase) if encrypt_index else None
        meta_row = [_schema.MAGIC, _schema.FORMAT_VERSION, _dt.datetime.now(_dt.timezone.utc),
                    speechvault.__version__, cipher, json.dumps(wrap.to_dict()), sha, K, C,
                    class_names, tau, secrets.token_hex(16)]
        model_row = [sha, meta_json, tflite, getattr(encoder, "fingerprint_bytes", None)]
        try:
            with _private.private_umask():
                _build_new_vault(p, index_key, meta_row, model_row, K)
                con = (_conn.connect(str(p), read_only=False) if index_key is None else
                       _conn.connect_encrypted(str(p), index_key, read_only=False))
        finally:
            del index_key
        _chmod_private(p)
        access = _access.VaultAccess(p, lambda: con, read_only=False, shared=False)
        access.open_handle()  # records this process as the vault's writer
        v = cls(p, con, read_only=False, encoder=encoder, index_encrypted=encrypt_index,
                access=access)
        v._master = master
        v.bind()  # no blobs yet: signs the integrity record of the new vault
        return v

    @classmethod
    @_private_writes
    def open(cls, path, *, read_only: bool = True, passphrase: str | None = None,
             encoder: Any | None = None, index_passphrase: str | None = None,
             shared: bool = False, wait: float = 0.0) -> "Vault":
        """Open an existing vault. ``encoder`` None -> the model stored in the vault (loaded only
        when something must be encoded); an encoder of another model -> ``ModelMismatchError``.

        ``passphrase`` also unlocks the vault. A vault whose index is encrypted cannot even be
        read without one: ``index_passphrase`` (else ``passphrase``) opens it without unlocking;
        neither -> ``PassphraseRequiredError``, a wrong one -> ``WrongPassphraseError``.

        ``shared``: hold the file only during each operation (``store.access``); ``wait``: seconds
        to wait for another process's session or writer before ``VaultBusyError``."""
        p = Path(path)
        if not p.exists():
            raise NotFoundError(f"{p}: no such vault")
        if p.is_dir():
            raise VaultFormatError(f"{p} is a directory, not a speechvault vault")
        encrypted = _ei.is_encrypted_file(p)
        if encrypted:
            key = _ei.derive_index_key(passphrase if index_passphrase is None else index_passphrase)
            connector = functools.partial(_conn.connect_encrypted, str(p), key, read_only=read_only)
            del key
        else:
            connector = functools.partial(_conn.connect, str(p), read_only=read_only)
        access = _access.VaultAccess(p, connector, read_only=read_only, shared=shared, wait=wait)
        access.open_handle()
        try:
            con = access.connect()
        except BaseException:
            access.close()
            raise
        if not shared:
            access.connector = None  # a held handle never reconnects: keep no key for it
        try:
            version = _schema.read_format_version(con, str(p))
            if version < _schema.FORMAT_VERSION:
                if read_only:
                    raise VaultFormatError(
                        f"{p} is vault format version {version}; open it read-write once to "
                        f"upgrade it to version {_schema.FORMAT_VERSION}")
                _schema.upgrade(con, str(p), version)
            v = cls(p, con, read_only=read_only, encoder=encoder, index_encrypted=encrypted,
                    access=access)
        except duckdb.Error as exc:
            with contextlib.suppress(Exception):
                access.disconnect(con)
            access.close()
            if _damage.is_lock_error(exc):
                raise _access.busy_error(p) from None
            raise _damage.damaged(p, exc) from None
        except BaseException:
            with contextlib.suppress(Exception):
                access.disconnect(con)
            access.close()
            raise
        if shared:
            v._end_session()  # the first session ends here; each operation opens its own
        return v.unlocked_or_closed(passphrase)

    def unlocked_or_closed(self, passphrase: str | None) -> "Vault":
        """This vault unlocked with ``passphrase`` (as it is when None); closed if that fails."""
        if passphrase is not None:
            try:
                self.unlock(passphrase)
            except BaseException:
                self.close()
                raise
        return self

    @staticmethod
    def index_is_encrypted(path) -> bool:
        """Whether the vault file at ``path`` is under DuckDB's database encryption (read from
        DuckDB's plain main header; no passphrase needed)."""
        return _ei.is_encrypted_file(path)

    def _load_meta(self) -> None:
        self._rows_cache = self._label_cache = None  # another process may have written
        self._search_threads = None  # DuckDB's default until a search chooses
        row = self._con.execute(
            "SELECT format_version, created, app_version, cipher, key_wrap, model_sha256, k, c, "
            "class_names, tau FROM vault_meta").fetchone()
        m = _damage.check_meta(str(self.path), row)
        (self.format_version, self.created, self.app_version, self.cipher, self._key_wrap,
         self.model_sha256, self.K, self.C, self.class_names, self.tau) = (
            m["format_version"], m["created"], m["app_version"], m["cipher"], m["key_wrap"],
            m["model_sha256"], m["K"], m["C"], m["class_names"], m["tau"])
        self.vault_id, self.bound = _integrity.load_state(self._con, str(self.path))
        if self.cipher not in CIPHERS:
            raise VaultFormatError(f"{self.path}: unknown cipher {self.cipher!r}")
        self.W = _schema.n_words(self.K)

    def _check_encoder(self, encoder: Any) -> None:
        sha = str(encoder.sha256)
        if sha != self.model_sha256:
            name = getattr(getattr(encoder, "meta", None), "name", "?")
            raise ModelMismatchError(
                f"this vault was coded by model {self.model_sha256[:12]} "
                f"({self.model_name or 'unnamed'}), not by the given model {sha[:12]} ({name}); "
                "its codes are not comparable: use the vault's own model")
        _integrity.keyless_check(str(self.path), {"K": self.K, "C": self.C, "tau": self.tau,
                                                  "class_names": self.class_names}, encoder)

    @property
    @_damage.guarded
    def model_name(self) -> str:
        with self._lock:
            row = self._db().execute("SELECT meta_json FROM model WHERE sha256 = ?",
                                     [self.model_sha256]).fetchone()
        return _model_name(row[0]) if row else ""

    @property
    @_damage.guarded
    def encoder(self):
        """The vault's encoder: the one given to ``open``/``create``, else the stored model."""
        if self._encoder is not None:  # no session needed (a shared handle would connect)
            return self._encoder
        with self._lock:
            if self._encoder is None:
                row = self._db().execute(
                    "SELECT tflite, meta_json, fingerprint FROM model WHERE sha256 = ?",
                    [self.model_sha256]).fetchone()
                if row is None:
                    raise VaultFormatError(f"{self.path}: the vault's model is missing")
                from hashing.model_meta import ModelMeta

                kw = {} if row[2] is None else {"fingerprint": bytes(row[2])}
                enc = _load_encoder_class().from_bytes(bytes(row[0]), ModelMeta.from_json(row[1]),
                                                       **kw)
                self._check_encoder(enc)
                self._encoder = enc
            return self._encoder

    @_damage.guarded
    def model_bytes(self) -> tuple[bytes, str]:
        """The stored model: (TFLite bytes, metadata JSON)."""
        with self._lock:
            row = self._db().execute("SELECT tflite, meta_json FROM model WHERE sha256 = ?",
                                     [self.model_sha256]).fetchone()
        if row is None:
            raise VaultFormatError(f"{self.path}: the vault's model is missing")
        return bytes(row[0]), str(row[1])

    # ------------------------------------------------------------------ lifecycle
    def _db(self) -> duckdb.DuckDBPyConnection:
        if self._closed or (self._con is None and not self._access.shared):
            raise InvalidInputError("the vault is closed")
        if self._con is None:  # a shared handle outside ``with self._lock``: until the next end
            self._begin_session()
        return self._con

    def _begin_session(self) -> None:
        """Connect a shared handle for one operation, and see what other processes changed."""
        if self._closed or self._con is not None:
            return
        self._con = self._access.connect()
        if not self._access.fresh:  # an idle connection kept under DuckDB's lock: unchanged
            return
        try:
            self._refresh_meta()
        except BaseException:
            self._end_session()
            raise

    def _end_session(self) -> None:
        con, self._con = self._con, None
        self._access.disconnect(con)

    def _refresh_meta(self) -> None:
        """Between two sessions another process may have changed the passphrase (the cached
        unwrapped key may be stale: locked again) or re-indexed the vault (the cached model and
        a query coded by it are of the old model: refused once, then the new one is loaded)."""
        model, wrap = self.model_sha256, self._key_wrap
        self._load_meta()
        if wrap != self._key_wrap:
            self._master = None
        if model != self.model_sha256:
            if not self._encoder_given:
                self._encoder = None
            raise ModelMismatchError(
                f"{self.path}: the vault was re-indexed by another process (model "
                f"{model[:12]} -> {self.model_sha256[:12]}) while it was open; run it again")

    @property
    def unlocked(self) -> bool:
        return self._master is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def unlock(self, passphrase: str) -> None:
        """Unwrap the master key; ``WrongPassphraseError`` (key check, before any decryption)."""
        from store import keys

        if not isinstance(passphrase, str) or not passphrase:
            raise PassphraseRequiredError("a passphrase is required to unlock the vault")
        wrap = keys.KeyWrap.from_dict(self._key_wrap)
        self._master = keys.unwrap_master_key(wrap, passphrase)

    def lock(self) -> None:
        self._master = None

    def close(self) -> None:
        self._closed = True  # no new session from here on
        with self._lock.held():
            self._master = None
            try:
                if self._con is not None:
                    self._end_session()
            finally:
                self._con = None
                self._access.close()

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "ro" if self.read_only else "rw"
        return f"<Vault {str(self.path)!r} {mode} K={self.K} {'unlocked' if self.unlocked else 'locked'}>"

    def _require_writable(self, what: str) -> None:
        if self.read_only:
            raise InvalidInputError(f"{what} needs the vault opened read-write (read_only=False)")

    def _require_key(self, what: str) -> bytes:
        if self._master is None:
            raise PassphraseRequiredError(f"{what} needs the passphrase: unlock the vault first")
        return self._master

    # ------------------------------------------------------------------ read side
    @_damage.guarded
    def info(self) -> VaultInfo:
        with self._lock:
            con = self._db()
            n_rec = con.execute("SELECT count(*) FROM recordings").fetchone()[0]
            n_win = con.execute("SELECT count(*) FROM codes").fetchone()[0]
            uncl = con.execute("SELECT codes_unclustered FROM vault_meta").fetchone()[0]
            counts = self.category_counts()
            name = self.model_name
        kdf = {k: self._key_wrap.get(k) for k in ("kdf", "log2_n", "r", "p") if k in self._key_wrap}
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        return VaultInfo(
            path=str(self.path), format_version=int(self.format_version), created=self.created,
            app_version=str(self.app_version), cipher=self.cipher, kdf=kdf,
            model_sha256=self.model_sha256, model_name=name, K=self.K, C=self.C,
            class_names=list(self.class_names), tau=self.tau, recordings=int(n_rec),
            windows=int(n_win), size_bytes=int(size), read_only=self.read_only,
            unlocked=self.unlocked, category_counts=counts, unclustered_windows=int(uncl),
            index_encrypted=self.index_encrypted)

    @staticmethod
    def _row(r) -> RecordingRow:
        return RecordingRow(id=int(r[0]), name=r[1], category=r[2], sha256=r[3],
                            sample_rate=int(r[4]), channels=int(r[5]), duration=float(r[6]),
                            size=int(r[7]), added=r[8], n_windows=int(r[9]))

    @_damage.guarded
    def list(self, *, category: str | None = None, name_like: str | None = None,
             limit: int | None = None) -> list[RecordingRow]:
        """Recordings by id. ``name_like``: a case-insensitive substring of the name (literal:
        ``%`` and ``_`` match themselves)."""
        where, params = [], []
        if category is not None:
            where.append("category = ?")
            params.append(category)
        if name_like is not None:
            where.append("contains(lower(name), lower(?))")
            params.append(str(name_like))
        sql = f"SELECT {_REC_COLS} FROM recordings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit is not None:
            if int(limit) < 0:
                raise InvalidInputError("limit must be >= 0")
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            rows = self._db().execute(sql, params).fetchall()
        return [self._row(r) for r in rows]

    @_damage.guarded
    def category_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db().execute(
                "SELECT category, count(*) FROM recordings GROUP BY category ORDER BY category"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    @_damage.guarded
    def get(self, recording_id: int) -> RecordingRow:
        with self._lock:
            r = self._db().execute(f"SELECT {_REC_COLS} FROM recordings WHERE id = ?",
                                   [int(recording_id)]).fetchone()
        if r is None:
            raise NotFoundError(f"no recording with id {recording_id}")
        return self._row(r)

    @_damage.guarded
    def codes_of(self, recording_id: int) -> StoredCodes:
        cols = ", ".join(_schema.word_columns(self.K))
        with self._lock:
            self.get(recording_id)
            res = self._db().execute(
                f"SELECT win, category, {cols} FROM codes WHERE recording_id = ? ORDER BY win",
                [int(recording_id)]).fetchnumpy()
        words = np.stack([_schema.unsigned_words(res[c]) for c in _schema.word_columns(self.K)],
                         axis=1) if len(res["win"]) else np.zeros((0, self.W), np.uint64)
        return StoredCodes(recording_id=int(recording_id),
                           category=np.asarray(res["category"], dtype=np.int64),
                           words=words, K=self.K, window=np.asarray(res["win"], dtype=np.int64))

    # ------------------------------------------------------------------ ingest
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

    def _invalidate(self) -> None:
        """After a failed write DuckDB may have invalidated the database: close the connection
        (the file keeps every committed transaction; reopening replays the WAL)."""
        with self._lock.held():
            self._master = None
            if self._con is not None:
                with contextlib.suppress(Exception):
                    self._con.close()
                self._con = None

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

    # ------------------------------------------------------------------ search
    @_damage.guarded
    def encode_query(self, source) -> QueryCode:
        """Code a query: an audio path, audio bytes, or float32 mono samples at the model rate."""
        if isinstance(source, QueryCode):
            return source
        enc = self.encoder
        kw = {"purpose": "query"} if getattr(enc, "windowing", None) is not None else {}
        if isinstance(source, np.ndarray):
            wc = enc.encode_audio(source, **kw)
            name = None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            wc = enc.encode_file(bytes(source), max_seconds=self.max_query_seconds, **kw)
            name = None
        elif isinstance(source, (str, os.PathLike)):
            with _sources.open_source(source, self.max_query_seconds)[0] as f:  # checked first
                wc = enc.encode_file(f, max_seconds=self.max_query_seconds, **kw)
            name = Path(source).name
        else:
            raise InvalidInputError(
                f"a query must be a path, bytes, samples or a QueryCode, not {type(source).__name__}")
        return QueryCode.from_window_codes(wc, name=name)

    def _as_query(self, query) -> QueryCode:
        if isinstance(query, QueryCode):
            q = query
        elif hasattr(query, "words") and hasattr(query, "category") and hasattr(query, "K"):
            q = QueryCode.from_window_codes(query)
        else:
            q = self.encode_query(query)
        if q.K != self.K or q.words.shape[1] != self.W:
            raise InvalidInputError(f"the query is a {q.K}-bit code; this vault holds {self.K}-bit codes")
        if q.n_windows < 1 or q.category.shape[0] != q.n_windows:
            raise InvalidInputError("the query code has no windows (or mismatched categories)")
        if np.any(q.category < 0) or np.any(q.category >= self.C):
            raise InvalidInputError(f"query category outside 0..{self.C - 1}")
        return q

    def _probes(self, q: QueryCode, w: int, mode: str, probe: int) -> list[int] | None:
        if mode == "traversal":
            return None
        first = int(q.category[w])
        if mode == "two-stage":
            return [first]
        m = max(1, min(int(probe), self.C))
        if q.probs is None or q.probs.shape[0] <= w or q.probs.shape[1] != self.C:
            return [first]
        order = [int(i) for i in np.argsort(-q.probs[w], kind="stable")]
        cats = [first] + [c for c in order if c != first]
        return cats[:m]

    @_damage.guarded
    def search(self, query, *, tau: float | None = None, mode: str = "auto",
               probe: int = 2, top: int = 10) -> SearchResult:
        """Retrieve the recordings whose code is within normalized Hamming distance ``tau`` of the
        query's (eq. 16), best first, each recording once (its best window pair). No passphrase.

        ``mode``: "two-stage" (the paper: the query's category h1 first, then Hamming distance),
        "traversal" (every row), "multi-probe" (the ``probe`` most probable categories), or
        "auto" (default): two-stage, then traversal if nothing in the category is within tau;
        an excerpt longer than one window (identification windows) searches every row at once."""
        if mode not in MODES:
            raise InvalidInputError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        t_total = time.perf_counter()
        tau = self.tau if tau is None else float(tau)
        if not (0.0 < tau <= 1.0) or tau != tau:
            raise InvalidInputError(f"tau must be in (0, 1], got {tau}")
        top = int(top)
        if top < 1:
            raise InvalidInputError("top must be >= 1")
        if mode == "multi-probe" and int(probe) < 1:
            raise InvalidInputError("probe must be >= 1")
        coded_here = not isinstance(query, QueryCode) and not hasattr(query, "words")
        model_loaded = self._encoder is not None
        t_code = time.perf_counter()
        q = self._as_query(query)
        t_code = time.perf_counter() - t_code
        timings = {k: float(q.timings.get(k, 0.0)) for k in ("decode", "features", "inference")}
        if coded_here and not model_loaded:
            # the first query of a session also loads the model from the vault: its own stage
            timings["model_load"] = max(0.0, t_code - sum(timings.values()))
        with self._lock:  # one session for every stage (the query was coded outside it)
            res = self._search_in_mode(q, tau, mode, probe, top)
        timings.update(res.timings)
        # wall clock of this call; a code made elsewhere adds the stages it reports
        timings["total"] = time.perf_counter() - t_total
        if not coded_here:
            timings["total"] += timings["decode"] + timings["features"] + timings["inference"]
        res.timings = timings
        return res

    def _search_in_mode(self, q: QueryCode, tau: float, mode: str, probe: int,
                        top: int) -> SearchResult:
        if mode == "auto" and self._is_long_excerpt(q):
            # the category of a window of arbitrary speech says little: every row at once
            res = self._search_coded(q, tau, "traversal", probe, top)
            res.mode = "auto"
        elif mode == "auto":
            both = self._auto_one_scan(q, top)  # (two-stage, traversal) from one statement
            res = self._search_coded(q, tau, "two-stage", probe, top, both and both[0])
            if not res.matched:  # nothing in the category: every row, the same code
                again = self._search_coded(q, tau, "traversal", probe, top, both and both[1])
                res = dataclasses.replace(
                    again, fell_back=True, query_categories=res.query_categories,
                    probed_categories=res.probed_categories,
                    candidates=res.candidates + again.candidates,
                    timings={k: res.timings[k] + again.timings[k] for k in res.timings})
            res.mode = "auto"
        else:
            res = self._search_coded(q, tau, mode, probe, top)
        return res

    def _auto_one_scan(self, q: QueryCode, top: int):
        """``auto``'s two answers from one statement (``store.search.nearest_both``), as
        ``(found, seconds)`` per stage (found None: not decided by it, the stage runs its own
        statement), or None where auto runs its statements in turn: a large index
        (``store.search.auto_one_scan``), an excerpt, a lake."""
        if (self._dialect is not _dialects.DUCKDB or q.frames is not None
                or not _search.auto_one_scan(self._index_rows(), q.n_windows)):
            return None
        with self._lock:
            con = self._db()
            seconds = self._set_search_threads(con, self._index_rows())
            two, every, more = _search.nearest_both(
                con, self.K, [[int(x) for x in w] for w in q.words], q.category, top,
                self._recording_labels())
        # each statement's time is reported once: with the first stage (even if undecided)
        return (two, seconds + more), (every, [])

    def _set_search_threads(self, con, scanned: int) -> list[float]:
        """DuckDB threads for a scan of ``scanned`` rows (``store.search.threads_for``); the
        time of the ``SET`` if one was sent."""
        threads = _search.threads_for(scanned)
        if threads == getattr(self, "_search_threads", None):
            return []
        self._search_threads = threads
        return [_search.set_threads(con, threads)]

    def _search_coded(self, q: QueryCode, tau: float, mode: str, probe: int, top: int,
                      ranked: tuple[list, list[float]] | None = None) -> SearchResult:
        """One SQL search of a coded query in ``mode`` (not "auto"); timings: the two stages.
        ``ranked``: its nearest recordings (None: not found yet) and the seconds of statements
        already run for it (``_auto_one_scan``)."""
        if q.frames is not None and self._excerpt_rule() is not None:
            return self._search_excerpt(q, tau, mode, probe, top)
        probes = None if mode == "traversal" else [
            self._probes(q, w, mode, probe) for w in range(q.n_windows)]
        per_cat = self._category_rows()
        total_rows = sum(per_cat.values())
        candidates = (total_rows * q.n_windows if probes is None
                      else sum(per_cat.get(c, 0) for p in probes for c in p))
        scanned = total_rows if probes is None else sum(
            per_cat.get(c, 0) for c in {c for p in probes for c in p})
        found: list = []
        seconds: list[float] = []
        words = [[int(x) for x in w] for w in q.words]
        if ranked is not None:
            seconds += ranked[1]
        if ranked is not None and ranked[0] is not None:
            found = ranked[0]
        elif candidates:
            with self._lock:
                con = self._db()
                if self._dialect is _dialects.DUCKDB:  # a vault file: one statement (issue 13)
                    seconds += self._set_search_threads(con, scanned)
                    found, more = _search.nearest_recordings(con, self.K, words, probes, top,
                                                             self._recording_labels())
                else:  # a lake engine (store.sql_dialects): one statement per query window
                    found, more = self._nearest_on_engine(con, words, probes, top)
                seconds += more
        nearest = [Hit(recording_id=n.recording_id, name=n.name, category=n.category,
                       ber=n.dist / self.K, window=n.window, is_match=(n.dist / self.K) < tau,
                       query_window=n.query_window, distance=n.dist) for n in found]
        matches = [h for h in nearest if h.is_match]
        qcats = [self.class_names[int(c)] for c in q.category]
        probed = sorted({c for p in probes for c in p}) if probes else []
        return SearchResult(
            hits=matches if matches else list(nearest), matched=bool(matches), tau=tau, mode=mode,
            query_category=qcats[0] if qcats else None,
            # one statement: the category filter runs inside it (stage 1 has no time of its own)
            timings={"category_stage": 0.0, "hamming_stage": sum(seconds)}, nearest=nearest,
            query_categories=qcats,
            probed_categories=[self.class_names[c] for c in probed],
            candidates=candidates, total_rows=total_rows)

    def _nearest_on_engine(self, con, words, probes, top: int):
        """A lake engine's nearest recordings (``LakeVault`` may have them from a batch)."""
        return _search.nearest_per_window(con, self.K, words, probes, top, self._dialect)

    def _category_rows(self) -> dict[int, int]:
        """Index rows per category, read once per vault open and after this process writes (a
        write elsewhere needs the file, so a session's counts stay true). Search reports its
        candidates from it without a count statement per query; ``_rows_cache`` is their sum
        (every write resets it, which is what makes this re-read)."""
        if getattr(self, "_rows_cache", None) is None or getattr(self, "_cat_rows", None) is None:
            with self._lock:
                self._cat_rows = {int(c): int(n) for c, n in self._db().execute(
                    "SELECT category, count(*) FROM codes GROUP BY category").fetchall()}
                self._rows_cache = sum(self._cat_rows.values())
        return self._cat_rows

    def _index_rows(self) -> int:
        """Rows of the index, read once per session and after this process writes (it only
        chooses how candidates are found)."""
        if getattr(self, "_rows_cache", None) is None:
            self._category_rows()
        return self._rows_cache

    def _is_long_excerpt(self, q: QueryCode) -> bool:
        """A query coded with identification windows that spans more than one stored window
        (a short clip is tried at most ``2 * query_slack_frames + 1`` starts)."""
        if q.frames is None:  # coded per model window (no need to load the model)
            return False
        w = getattr(self.encoder, "windowing", None)
        return w is not None and q.n_windows > 2 * w.query_slack_frames + 1

    def _excerpt_rule(self):
        """The excerpt decision rule of the vault's model, or None when its codes are per model
        window (a format-2 vault, or a model without identification windows)."""
        if getattr(self.encoder, "windowing", None) is None:
            return None
        from store.excerpt import ExcerptRule

        return ExcerptRule.from_dict(self.encoder.excerpt_rule)

    def _excerpt_plan(self, q: QueryCode, mode: str, probe: int):
        """What the excerpt statement of ``q`` in ``mode`` binds: (categories or None, the set
        probed, keyed, key slices). A lake's batch (``store.excerpt_batch``) asks the same."""
        rule = self._excerpt_rule()
        cats = None
        probed: set[int] = set()
        if mode != "traversal":
            probed = {c for w in range(q.n_windows) for c in self._probes(q, w, mode, probe)}
            cats = np.array(sorted(probed))
        span = int(q.frames.max() - q.frames.min()) if len(q.frames) else 0
        bands = rule.bands_for(self.K, span, self.encoder.windowing.store_hop_frames)
        return cats, probed, rule.keyed(self._index_rows()), bands

    def _excerpt_rows(self, con, q: QueryCode, cats, keyed: bool, bands: int, rule):
        """The excerpt statement's verification rows and its seconds (a ``LakeVault`` may
        have them from a batch)."""
        from store import excerpt as _ex

        sql = _ex.excerpt_sql(self.K, cats is not None, keyed, bands, self._dialect)
        params = _ex.excerpt_params(q.frames, q.words, cats, self.K, rule, keyed, self._dialect)
        t0 = time.perf_counter()
        rows = con.execute(sql, params).fetchall()
        return rows, time.perf_counter() - t0

    def _recording_labels(self) -> "_labels.RecordingLabels":
        """This handle's label cache (``store.labels``), made again after it was dropped with
        the row counts (a new session, an ingest, a delete)."""
        if getattr(self, "_label_cache", None) is None:
            self._label_cache = _labels.RecordingLabels()
        return self._label_cache

    def _hit_labels(self, con, ids: list[int]) -> dict[int, tuple]:
        """{recording id: (name, category)} of the hits: from the label cache on a vault file,
        by one statement on a lake engine (a ``LakeVault`` may have them from a batch)."""
        if self._dialect is _dialects.DUCKDB:
            return self._recording_labels().of(con, ids)
        return {r[0]: (r[1], r[2]) for r in con.execute(
            _dialects.labels_sql(self._dialect), self._dialect.bind([list(ids)])).fetchall()}

    def _search_excerpt(self, q: QueryCode, tau: float, mode: str, probe: int,
                        top: int) -> SearchResult:
        """Excerpt search (``store.excerpt``): one statement, offset voting, evidence. ``tau``
        is the per-window threshold of the evidence (default: the model's calibrated one)."""
        from store import excerpt as _ex

        rule = self._excerpt_rule()
        # an explicit threshold also bounds the best window's BER of a match (what is shown)
        max_ber = None if tau == self.tau else float(tau)
        cats, probed, keyed, bands = self._excerpt_plan(q, mode, probe)
        with self._lock:
            con = self._db()
            rows, t_ham = self._excerpt_rows(con, q, cats, keyed, bands, rule)
            found = _ex.decide(rows, self.K, rule)[:top]
            labels = self._hit_labels(con, [h.recording_id for h in found]) if found else {}
        frame_s = self.encoder.windowing.frame_seconds
        nearest = [Hit(recording_id=h.recording_id, name=labels.get(h.recording_id, ("", ""))[0],
                       category=labels.get(h.recording_id, ("", ""))[1], ber=h.best_ber,
                       window=h.best_window,
                       is_match=(rule.accepts(h) and not q.silent
                                 and (max_ber is None or h.best_ber < max_ber)),
                       query_window=h.best_query_window, distance=round(h.best_ber * self.K),
                       offset=max(0.0, h.offset_frames * frame_s), evidence=h.evidence,
                       windows=h.windows, near_identical=h.strong) for h in found]
        matches = [h for h in nearest if h.is_match]
        qcats = [self.class_names[int(c)] for c in q.category]
        return SearchResult(
            hits=matches if matches else list(nearest), matched=bool(matches),
            tau=self.tau if max_ber is None else max_ber, mode=mode,
            query_category=qcats[0] if qcats else None,
            timings={"category_stage": 0.0, "hamming_stage": t_ham}, nearest=nearest,
            query_categories=sorted(set(qcats), key=qcats.index),
            probed_categories=[self.class_names[c] for c in sorted(probed)],
            candidates=len({(r[0], r[1]) for r in rows}), total_rows=0)

    @_private_writes
    @_damage.guarded
    def reindex(self, encoder: Any | None = None,
                progress: Callable[[int, int], None] | None = None):
        """Re-code every recording with ``encoder`` (default: the shipped default model) and make
        it the vault's model (``store.reindex``: crash-safe, one final swap). Passphrase needed."""
        from store.reindex import reindex as _reindex

        self._require_writable("reindex")
        self._require_key("reindex")
        self.bind()  # a legacy vault first: the new index is authenticated with its blobs
        enc = encoder if encoder is not None else _load_encoder_class().default()
        with self._lock:
            report = _reindex(self, enc, progress=progress, open_blob=self.export)
            self._encoder = enc
            self._load_meta()
        return report

    # ------------------------------------------------------------------ export / verify
    def _open_blob(self, master: bytes, blob: bytes, sha: str, rid: int) -> bytes:
        from store.envelope import open_sealed

        if not isinstance(sha, str) or not _damage.HEX64.fullmatch(sha):
            raise IntegrityError(f"recording {rid}: its stored SHA-256 is malformed")
        ad = (_integrity.blob_ad(self.vault_id, rid, sha) if self.bound
              else _integrity.legacy_ad(sha))
        try:
            data = open_sealed(bytes(blob), master, associated_data=ad)
        except IntegrityError as exc:
            raise IntegrityError(f"recording {rid}: {exc.message}") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise IntegrityError(f"recording {rid}: decrypted bytes do not match the stored SHA-256")
        return data

    @_damage.guarded
    def export(self, recording_id: int) -> bytes:
        """The original bytes of a recording, decrypted and checked (tag, then SHA-256)."""
        return b"".join(self.export_chunks(recording_id))

    @_damage.guarded
    def export_chunks(self, recording_id: int) -> Iterator[bytes]:
        """The original bytes in pieces, each checked as it is read (``store.blob_chunks``):
        a long recording is never held whole. The SHA-256 is checked after the last piece."""
        master = self._require_key("export")
        with self._lock:
            r = self._db().execute("SELECT blob, sha256 FROM recordings WHERE id = ?",
                                   [int(recording_id)]).fetchone()
        if r is None:
            raise NotFoundError(f"no recording with id {recording_id}")
        return self._plain_chunks(master, r[0], r[1], int(recording_id))

    def _plain_chunks(self, master: bytes, blob: bytes, sha: str, rid: int) -> Iterator[bytes]:
        if not _chunks.is_chunked(blob):
            yield self._open_blob(master, blob, sha, rid)
            return
        if not isinstance(sha, str) or not _damage.HEX64.fullmatch(sha):
            raise IntegrityError(f"recording {rid}: its stored SHA-256 is malformed")
        try:
            yield from _chunks.open_chunks(self._query, _chunks.opener(master), self.vault_id,
                                           rid, sha)
        except duckdb.Error as exc:  # read lazily: outside the guard of export_chunks
            raise _damage.damaged(self.path, exc) from None

    @_damage.guarded
    def export_to(self, recording_id: int, path) -> Path:
        """Write the original bytes to ``path`` (a directory -> the recording's own name in it).
        Refuses to overwrite an existing file."""
        data = self.export_chunks(recording_id)
        dest = Path(path)
        if dest.is_dir():
            dest = dest / _private.safe_file_name(self.get(recording_id).name,
                                                  f"recording-{int(recording_id)}")
        if os.path.lexists(dest):
            raise InvalidInputError(f"{dest} already exists; not overwriting it")
        if not dest.parent.exists():
            raise NotFoundError(f"{dest.parent}: no such directory")
        return _private.write_private(dest, data)  # 0600, O_EXCL|O_NOFOLLOW temp, atomic

    @_damage.guarded
    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Check every blob's tag and SHA-256 and that each recording has all its index rows.
        Never raises on a bad blob: failures are listed with the recording's id and name."""
        master = self._require_key("verify")
        report = VerifyReport()
        unreadable = lambda what, exc: report.failures.append(  # noqa: E731
            (-1, "", f"could not read {what}: {_damage.damaged(self.path, exc).message}"))
        try:
            ids = [r[0] for r in self._query("SELECT id FROM recordings ORDER BY id")]
        except duckdb.Error as exc:  # the id column is damaged: the index still names them
            unreadable("the list of recordings", exc)
            try:
                ids = [r[0] for r in self._query(
                    "SELECT DISTINCT recording_id FROM codes ORDER BY recording_id")]
            except duckdb.Error:
                return report
        counts: dict | None = None
        try:
            counts = dict(self._query(
                "SELECT recording_id, count(*) FROM codes GROUP BY recording_id"))
            orphans = self._query("SELECT count(*) FROM codes WHERE recording_id NOT IN "
                                  "(SELECT id FROM recordings)")[0][0]
            if orphans:
                report.failures.append((-1, "", f"{orphans} index rows belong to no recording"))
        except duckdb.Error as exc:
            unreadable("the index (codes)", exc)
        for i, rid in _access.in_sessions(self._lock, ids):  # shared: writers get in between
            report.checked += 1
            name = "?"
            try:
                name, sha, blob, n_win = self._query(
                    "SELECT name, sha256, blob, n_windows FROM recordings WHERE id = ?", [rid])[0]
                for _ in self._plain_chunks(master, blob, sha, int(rid)):
                    pass  # every tag and the SHA-256 checked, one chunk in memory at a time
                if counts is not None and int(counts.get(rid, 0)) != int(n_win):
                    raise IntegrityError(f"recording {rid}: {counts.get(rid, 0)} index rows, "
                                         f"expected {n_win}")
            except SpeechVaultError as exc:
                report.failures.append((int(rid), name, exc.message))
            except duckdb.Error as exc:  # a damaged block: this recording could not be read
                report.failures.append((int(rid), name, f"recording {rid}: could not be read "
                                        f"({_damage.damaged(self.path, exc).message})"))
            except Exception as exc:  # a malformed blob must never abort verify
                report.failures.append((int(rid), name, f"recording {rid}: {type(exc).__name__}: "
                                        f"{' '.join(str(exc).split())}"))
            if progress is not None:
                progress(i + 1, len(ids))
        self._verify_integrity(master, report)
        return report

    def _verify_integrity(self, master: bytes, report: VerifyReport) -> None:
        """The settings, model, record set and per-recording MACs (``store.integrity``)."""
        try:
            with self._lock:
                found = _integrity.verify_integrity(self._db(), master, self.vault_id, self.K,
                                                    self.bound)
        except duckdb.Error as exc:
            report.failures.append((-1, "", "could not check the integrity MACs: "
                                    f"{_damage.damaged(self.path, exc).message}"))
            return
        except Exception as exc:  # malformed stored values must never abort verify
            report.failures.append((-1, "", f"could not check the integrity MACs: "
                                    f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"))
            return
        report.failures.extend(found.problems)
        report.notes.extend(found.notes)

    def _query(self, sql: str, params: list | None = None) -> list[tuple]:
        with self._lock:
            return self._db().execute(sql, params or []).fetchall()

    # ------------------------------------------------------------------ write side
    @_private_writes
    @_damage.guarded
    def delete(self, recording_id: int) -> None:
        """Delete a recording and its index rows (one transaction)."""
        self._rows_cache = self._label_cache = None
        self._require_writable("delete")
        with self._lock:
            self.get(recording_id)
            con = self._db()
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("DELETE FROM codes WHERE recording_id = ?", [int(recording_id)])
                con.execute("DELETE FROM recordings WHERE id = ?", [int(recording_id)])
                _chunks.delete(con, int(recording_id))
                _integrity.after_delete(con, self, int(recording_id))
                con.execute("COMMIT")
                _chmod_private(self.path)
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise

    @_private_writes
    @_damage.guarded
    def change_passphrase(self, old: str, new: str) -> None:
        """Re-wrap the master key under ``new`` (``WrongPassphraseError`` if ``old`` is wrong).
        The blobs are unchanged: they are sealed with the master key, not the passphrase. A vault
        whose index is encrypted is also re-encrypted under the new passphrase's DuckDB key
        (``_reencrypt``): the DuckDB key is derived from the passphrase."""
        from store import keys

        self._require_writable("change_passphrase")
        if not isinstance(new, str) or not new:
            raise InvalidInputError("the new passphrase must not be empty")
        wrap = keys.KeyWrap.from_dict(self._key_wrap)
        master = keys.unwrap_master_key(wrap, old)  # WrongPassphraseError via the key check
        if not self.bound:  # a legacy vault is bound while the key is at hand
            self._master = master
            self.bind()
        new_wrap = keys.wrap_master_key(master, new, log2_n=wrap.log2_n)  # = keys.rewrap, 1 scrypt less
        d = new_wrap.to_dict()
        if self.index_encrypted:
            self._reencrypt(new, json.dumps(d))
            self._key_wrap = d
            self._master = master
            return
        with self._lock:
            con = self._db()
            try:  # all or nothing: a refused commit leaves the old passphrase in force
                con.execute("UPDATE vault_meta SET key_wrap = ?", [json.dumps(d)])
            except duckdb.Error as exc:
                if not _conn.is_storage_error(exc):
                    raise
                self._invalidate()
                raise StorageError(f"{_conn.storage_error(exc, self.path).message} (the passphrase "
                                   "is unchanged)") from None
            self._key_wrap = d
            self._master = master
            _rekey.checkpoint_after_commit(self, "the passphrase is changed")
        _chmod_private(self.path)

    @_private_writes
    @_damage.guarded
    def rekey(self, passphrase: str, new_passphrase: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> int:
        """A new random master key: every blob re-sealed and the key re-wrapped, in one
        transaction (``store.rekey``); then ``new_passphrase``, if given, replaces the
        passphrase. Returns the number of recordings re-sealed."""
        from store import keys

        self._require_writable("rekey")
        wrap = keys.KeyWrap.from_dict(self._key_wrap)
        old_master = keys.unwrap_master_key(wrap, passphrase)
        new_master = keys.new_master_key()
        # an encrypted index's file key follows the passphrase: change that in a second step
        under = passphrase if new_passphrase is None or self.index_encrypted else new_passphrase
        new_wrap = keys.wrap_master_key(new_master, under, log2_n=wrap.log2_n).to_dict()
        with self._lock:
            n = _rekey.reseal_all(self, old_master, new_master, new_wrap, progress)
            self._key_wrap, self._master = new_wrap, new_master
        _chmod_private(self.path)
        if new_passphrase is not None and under != new_passphrase:
            self.change_passphrase(passphrase, new_passphrase)
        return n

    def _seal_blob(self, data: bytes, sha: str, rid: int, master: bytes) -> bytes:
        """A blob as ingest seals it: bound to this vault and record ``rid``
        (``store.integrity.blob_ad``), so it cannot pass for another row's."""
        from store.envelope import seal

        return seal(data, master, cipher=self.cipher,
                    associated_data=_integrity.blob_ad(self.vault_id, rid, sha))

    @_private_writes
    @_damage.guarded
    def bind(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Bind a legacy vault (format < 4): every blob re-sealed with its vault and record id
        and the settings, model and index authenticated, in one transaction
        (``store.rekey.reseal_all``). Returns the number re-sealed; a bound vault: 0, nothing
        written."""
        if self.bound:
            return 0
        self._require_writable("upgrade")
        master = self._require_key("upgrade")
        with self._lock:
            return _rekey.reseal_all(self, master, master, self._key_wrap, progress)

    def _reencrypt(self, new: str, key_wrap_json: str) -> None:
        """Copy the whole database into ``<vault>.rekey`` encrypted under ``new``'s DuckDB key
        (with the new key wrap), then atomically rename it over the vault and reopen it. A crash
        before the rename leaves the old vault intact (the stale copy is removed next time)."""
        tmp = self.path.with_name(self.path.name + ".rekey")
        _conn.unlink_db(tmp)
        key = _ei.derive_index_key(new)
        with self._lock:
            con = self._db()
            con.execute("CHECKPOINT")
            self._copy_encrypted(con, tmp, key, key_wrap_json)
            self._con = None
            con.close()
            if Path(str(self.path) + ".wal").exists():  # would be replayed against the new file
                _conn.unlink_db(tmp)
                raise StorageError(f"{self.path}: the write-ahead log was not folded in; the "
                                   "passphrase is unchanged -- open the vault again and retry")
            os.replace(tmp, self.path)
            _ei.fsync_dir(self.path)
            self._con = _conn.connect_encrypted(str(self.path), key, read_only=False)
            if self._access.shared:  # later sessions open the file under the new key
                self._access.connector = functools.partial(
                    _conn.connect_encrypted, str(self.path), key, read_only=False)
            del key
        _chmod_private(self.path)

    @staticmethod
    def _copy_encrypted(con: duckdb.DuckDBPyConnection, tmp: Path, key: str,
                        key_wrap_json: str) -> None:
        """``COPY FROM DATABASE`` the open vault into a new encrypted file ``tmp`` (mode 0600),
        store the new key wrap in it, checkpoint and detach it."""
        alias = _ei.ALIAS + "_new"
        old_umask = os.umask(0o077)
        try:
            con.execute(_ei.attach_sql(tmp, key, alias=alias, create=True))
        finally:
            os.umask(old_umask)
        try:
            con.execute(f"COPY FROM DATABASE {_ei.ALIAS} TO {alias}")
            con.execute(f"UPDATE {alias}.main.vault_meta SET key_wrap = ?", [key_wrap_json])
            con.execute(f"CHECKPOINT {alias}")
            con.execute(f"DETACH {alias}")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DETACH {alias}")
            _conn.unlink_db(tmp)
            raise
        _chmod_private(tmp)


def _named_buffer(data: bytes, path: Path) -> io.BytesIO:
    """In-memory copy of a file that keeps its name, so decode errors name the file, not a byte count."""
    buf = io.BytesIO(data)
    buf.name = str(path)
    return buf
