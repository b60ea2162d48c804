"""The key room of ``Vault``: ``change_passphrase``, ``rekey``, ``bind`` and the sealing of a blob
(``_seal_blob``), with the re-encryption of an encrypted index under a new passphrase.

Why a module of its own: every change of what the passphrase or the master key protects is here,
in one place; the cryptography itself is in ``store.keys``, ``store.envelope``, ``store.rekey``
and ``store.encrypted_index``, and this is the vault's side of it (transactions, the WAL, the
reopened connection). ``VaultKeys`` is a mixin: its methods run on a ``Vault`` (``self._lock``,
``self._db()``, ``self._invalidate``, ...).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path
from typing import Callable

import duckdb

from speechvault.errors import InvalidInputError, StorageError
from store import connection as _conn
from store import damage as _damage
from store import encrypted_index as _ei
from store import integrity as _integrity
from store import rekey as _rekey
from store.vault_common import _private_writes
from store.vault_common import chmod_private as _chmod_private


class VaultKeys:
    """``Vault.change_passphrase``, ``rekey`` and ``bind`` (mixed into ``store.vault.Vault``)."""

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
