"""``passwd --rekey``: a new master key, every blob re-sealed, all in one transaction (issue 17,
item 6). The same pass with the same key binds a legacy vault (``Vault.bind``, item 1): blobs
are opened as the vault says they were sealed and re-sealed bound to the vault and record id,
and every integrity MAC is recomputed under the (new) key before the commit.

Why: ``passwd`` only re-wraps the master key, so an old copy of the vault plus the old passphrase
still yields the master key -- and decrypts every recording added after the change. Rekeying
draws a new random master key, opens every blob with the old one and seals it with the new one,
and stores the new key wrap, in ONE DuckDB transaction: a crash (or a full disk) before the
commit leaves the vault exactly as it was (old key, old passphrase), after it the vault is
wholly under the new key. A blob that does not open (damaged) aborts the whole rekey before
anything is written. Old blob bytes may linger in free pages of the file until DuckDB reuses
them; an old *copy* of the file still opens its old recordings with the old passphrase, which
is what rekeying cannot undo -- it protects what is added afterwards.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Callable

import duckdb

from speechvault.errors import StorageError
from store import blob_chunks as _chunks
from store import integrity as _integrity

__all__ = ["reseal_all"]


def reseal_all(vault: Any, old_master: bytes, new_master: bytes, new_wrap: dict,
               progress: Callable[[int, int], None] | None = None) -> int:
    """Re-seal every blob of ``vault`` under ``new_master`` and store ``new_wrap``; returns the
    number of recordings. One transaction; ``SpeechVaultError`` leaves the vault unchanged."""
    from store.connection import is_storage_error, storage_error  # one definition of "disk full"

    con = vault._db()
    ids = [int(r[0]) for r in con.execute("SELECT id FROM recordings ORDER BY id").fetchall()]
    con.execute("BEGIN TRANSACTION")
    try:
        for i, rid in enumerate(ids):
            blob, sha = con.execute("SELECT blob, sha256 FROM recordings WHERE id = ?",
                                    [rid]).fetchone()
            if _chunks.is_chunked(blob):  # a large recording: chunk by chunk, each checked
                _chunks.reseal(con, _chunks.opener(old_master), _chunks.seal_with(vault, new_master),
                               vault.vault_id, rid, sha)
            else:
                data = vault._open_blob(old_master, blob, sha, rid)  # tag + SHA-256 checked
                con.execute("UPDATE recordings SET blob = ? WHERE id = ?",
                            [vault._seal_blob(data, sha, rid, new_master), rid])
            if progress is not None:
                progress(i + 1, len(ids))
        con.execute("UPDATE vault_meta SET key_wrap = ?", [json.dumps(new_wrap)])
        _integrity.authenticate_all(con, new_master)  # MACs under the new key; binds legacy blobs
        con.execute("COMMIT")
    except duckdb.Error as exc:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        if is_storage_error(exc):
            vault._invalidate()
            raise StorageError(f"{storage_error(exc, vault.path).message} (the rekey was rolled "
                               "back: the old key and passphrase still apply)") from None
        raise
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    vault.bound = True  # every blob is now sealed with store.integrity.blob_ad
    checkpoint_after_commit(vault, "the vault is rekeyed")
    return len(ids)


def checkpoint_after_commit(vault: Any, done: str) -> None:
    """Fold the WAL into the file after a committed change. If the disk refuses, the change is
    committed anyway (the WAL is replayed on the next open): say so instead of a traceback."""
    from store.connection import is_storage_error

    try:
        vault._db().execute("CHECKPOINT")
    except duckdb.Error as exc:
        if not is_storage_error(exc):
            raise
        vault._invalidate()
        raise StorageError(
            f"{done} (committed), but the file could not be checkpointed "
            f"({' '.join(str(exc).split())[:160]}); free some space and open the vault once "
            "to fold the write-ahead log in") from None
