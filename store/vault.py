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

Layout: this module is the handle (create/open, sessions, unlock, the keyless read side, delete,
reindex); the rest of ``Vault`` comes from its rooms, mixins it inherits so that each module has
one job: ``store.vault_ingest`` (ingest, compact), ``store.vault_search`` (search,
encode_query), ``store.vault_export`` (export, verify) and ``store.vault_keys``
(change_passphrase, rekey, bind); ``store.vault_common`` holds what they share.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

import duckdb
import numpy as np

import speechvault
from speechvault.errors import (
    InvalidInputError,
    ModelError,
    ModelMismatchError,
    NotFoundError,
    PassphraseRequiredError,
    StorageError,
    VaultFormatError,
)
from store import access as _access
from store import blob_chunks as _chunks
from store import connection as _conn
from store import damage as _damage
from store import encrypted_index as _ei
from store import integrity as _integrity
from store import private_files as _private
from store import schema as _schema
from store import sources as _sources
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
from store.vault_common import DEFAULT_BATCH_SIZE, MODES, _REC_COLS, _private_writes
from store.vault_export import VaultExport
from store.vault_ingest import VaultIngest
from store.vault_keys import VaultKeys
from store.vault_search import VaultSearch

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


def _chmod_private(path: Path) -> None:
    for p in (path, Path(str(path) + ".wal")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(p, 0o600)


# ----------------------------------------------------------------------------- the vault
class Vault(VaultIngest, VaultSearch, VaultExport, VaultKeys):
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
        self.W = _schema.n_words(self.K, _schema.CODE_WORD_BITS)  # the code's 64-bit words

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


    def _invalidate(self) -> None:
        """After a failed write DuckDB may have invalidated the database: close the connection
        (the file keeps every committed transaction; reopening replays the WAL)."""
        with self._lock.held():
            self._master = None
            if self._con is not None:
                with contextlib.suppress(Exception):
                    self._con.close()
                self._con = None

    def _query(self, sql: str, params: list | None = None) -> list[tuple]:
        with self._lock:
            return self._db().execute(sql, params or []).fetchall()

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
        cols = ", ".join(_schema.code_words_sql(self.K))
        with self._lock:
            self.get(recording_id)
            res = self._db().execute(
                f"SELECT win, category, {cols} FROM codes WHERE recording_id = ? ORDER BY win",
                [int(recording_id)]).fetchnumpy()
        words = _schema.code_words_array(res, self.K)
        return StoredCodes(recording_id=int(recording_id),
                           category=np.asarray(res["category"], dtype=np.int64),
                           words=words, K=self.K, window=np.asarray(res["win"], dtype=np.int64))

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
