"""Opening a vault's DuckDB file, and naming what goes wrong as one-line speechvault errors.

Why a module of its own: every path into the file (``store.vault``, ``store.access``'s shared
handles, ``store.rekey``) must turn DuckDB's many messages (a lock held by another process, an
encrypted file opened without its key, a damaged or foreign file, a full disk) into the same
few errors (``speechvault.errors``), and a plain vault and an encrypted index
(``store.encrypted_index``) are opened differently.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import duckdb

from speechvault.errors import (InvalidInputError, MemoryLimitError, NotFoundError,
                                PassphraseRequiredError, RuntimeMissingError, SpeechVaultError,
                                StorageError, VaultBusyError, VaultFormatError,
                                WrongPassphraseError)
from store import damage as _damage
from store import encrypted_index as _ei

__all__ = ["BUSY", "connect", "connect_encrypted", "translate_connect_error", "unlink_db",
           "is_lock_error", "is_storage_error", "storage_error", "INGEST_MEMORY_MB",
           "MEMORY_ENV", "ingest_memory_mb", "memory_limited", "is_memory_error", "memory_error",
           "write_error"]

#: MB of memory DuckDB may hold while an ingest stores a recording and checkpoints (its buffer
#: pool: pages of stored chunks it would otherwise keep until the process ends). Measured with
#: ``model_export.bench_memory`` (docs/results/long_inputs_memory.md).
INGEST_MEMORY_MB = 64
#: the environment variable that overrides ``INGEST_MEMORY_MB`` (an ingest that hits the limit
#: says so, naming it)
MEMORY_ENV = "SPEECHVAULT_INGEST_MEMORY_MB"

#: what a refused open says (``store.access`` names the holder after waiting)
BUSY = "vault is busy: another process has it open"


def translate_connect_error(exc: Exception, path: str) -> SpeechVaultError:
    msg = str(exc)
    low = msg.lower()
    if "lock" in low and ("conflicting" in low or "could not set lock" in low):
        return VaultBusyError(BUSY)
    if "different configuration" in low or "already attached" in low:
        return VaultBusyError(
            "vault is busy: it is already open in this process in another mode; close it first")
    if "encrypted database" in low and "without a key" in low:
        return PassphraseRequiredError(_ei.NEEDS_PASSPHRASE)
    if "read-only mode" in low and "does not exist" in low:
        return NotFoundError(f"{path}: no such vault")
    if "not a valid duckdb database" in low or "serialization" in low or "version" in low \
            or "corrupt" in low or "checksum" in low or "magic" in low:
        return VaultFormatError(f"{path} is not a speechvault vault (not a DuckDB database, or damaged)")
    if isinstance(exc, duckdb.IOException):
        return VaultFormatError(f"{path} could not be opened as a vault: {msg.splitlines()[0]}")
    return VaultFormatError(f"{path} is not a speechvault vault ({msg.splitlines()[0]})")


def connect(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(path, read_only=read_only)
    except duckdb.Error as exc:
        raise translate_connect_error(exc, path) from None


def translate_encrypted_error(exc: Exception, path: str) -> SpeechVaultError:
    """DuckDB's errors on attaching an encrypted vault, as one-line speechvault errors."""
    low = str(exc).lower()
    if "wrong encryption key" in low:
        return WrongPassphraseError("wrong passphrase")
    if "read-only crypto module" in low:
        return RuntimeMissingError(f"writing this vault needs DuckDB's httpfs extension: "
                                   f"{_ei.INSTALL_HINT}")
    if "encryption" in low and ("unrecognized" in low or "not supported" in low
                                or "unsupported" in low):
        return RuntimeMissingError(f"an encrypted index needs DuckDB >= 1.4 "
                                   f"({duckdb.__version__} is installed): {_ei.INSTALL_HINT}")
    if "is not encrypted" in low:
        return VaultFormatError(f"{path}: the index of this vault is not encrypted")
    return translate_connect_error(exc, path)


def connect_encrypted(path: str, key_b64: str, *, read_only: bool,
                       create: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the encrypted vault attached (``store.encrypted_index.ALIAS``)
    and made the default catalog, so every query of ``Vault`` runs unchanged. Temporary files
    go next to the vault (``<vault>.tmp``, like a plain vault's) and are encrypted too."""
    try:
        con = duckdb.connect(":memory:", config={"temp_directory": path + ".tmp",
                                                 "temp_file_encryption": True})
    except duckdb.Error as exc:
        raise translate_encrypted_error(exc, path) from None
    try:
        _ei.load_crypto(con, required=not read_only)
        con.execute(_ei.attach_sql(path, key_b64, read_only=read_only, create=create))
        con.execute(f"USE {_ei.ALIAS}")
    except duckdb.Error as exc:
        con.close()
        raise translate_encrypted_error(exc, path) from None
    except BaseException:
        con.close()
        raise
    return con


def ingest_memory_mb() -> int:
    """The ingest memory limit in MB: ``$SPEECHVAULT_INGEST_MEMORY_MB`` or ``INGEST_MEMORY_MB``."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if not raw:
        return INGEST_MEMORY_MB
    try:
        mb = int(raw)
    except ValueError:
        mb = 0
    if mb < 1:
        raise InvalidInputError(f"{MEMORY_ENV} must be a whole number of MB >= 1, got {raw!r}")
    return mb


@contextlib.contextmanager
def memory_limited(con: duckdb.DuckDBPyConnection, mb: int) -> Iterator[None]:
    """DuckDB's ``memory_limit`` at ``mb`` MB for the block, then DuckDB's default again.

    Why only around a write: without a limit DuckDB keeps every page it wrote in its buffer pool
    (an hour of WAV stayed resident as ~450 MB); a search, which stores nothing, keeps the
    default so a large query is never refused for memory it could have had."""
    con.execute(f"SET memory_limit = '{int(mb)}MB'")
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):  # an invalidated database: closed by the caller
            con.execute("RESET memory_limit")


def is_memory_error(exc: BaseException) -> bool:
    """DuckDB refused a write for memory: its limit was reached (an ``OutOfMemoryException``,
    or a fatal error that invalidated the database after one)."""
    if isinstance(exc, duckdb.OutOfMemoryException):
        return True
    low = str(exc).lower()
    return "out of memory" in low or "failed to pin" in low


def memory_error(exc: BaseException, path: Path, mb: int) -> MemoryLimitError:
    first = " ".join((str(exc).strip().splitlines() or [""])[0].split())  # not DuckDB's advice
    reason = first.rsplit(": ", 1)[-1][:160] if ": " in first else first[:160]
    return MemoryLimitError(
        f"cannot write to the vault {path}: DuckDB needed more than its {int(mb)} MB memory limit "
        f"({reason}); everything committed before is intact -- raise the limit with "
        f"{MEMORY_ENV}=MB and repeat the command")


def write_error(exc: BaseException, path: Path, mb: int) -> SpeechVaultError | None:
    """The one-line error of a write DuckDB refused for memory (its limit ``mb``) or for storage
    (a full disk, an I/O error); None for any other failure."""
    if is_memory_error(exc):
        return memory_error(exc, path, mb)
    if is_storage_error(exc):
        return storage_error(exc, path)
    return None


def unlink_db(path: Path) -> None:
    """Remove a database file and its WAL (missing ones are fine)."""
    for q in (path, Path(str(path) + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            q.unlink()


def is_lock_error(exc: BaseException) -> bool:
    low = str(exc).lower()
    return "lock" in low and ("conflicting" in low or "could not set lock" in low)


def is_storage_error(exc: BaseException) -> bool:
    """A write the file system refused (disk full, file size limit, I/O error) or the fatal
    error DuckDB raises after one (the database instance is then invalidated)."""
    if _damage.is_read_damage(exc):  # a damaged file read back, not a refused write
        return False
    if isinstance(exc, (duckdb.IOException, duckdb.FatalException)):
        return True
    low = str(exc).lower()
    return any(s in low for s in ("file too large", "no space left", "could not write",
                                  "invalidated", "disk full", "input/output error"))


def storage_error(exc: BaseException, path: Path) -> StorageError:
    first = " ".join(str(exc).split())
    reason = first.rsplit(": ", 1)[-1][:200] if ": " in first else first[:200]
    return StorageError(
        f"cannot write to the vault {path} ({reason}): the disk may be full; everything committed "
        "before is intact -- free some space, then open the vault again and repeat the command")
