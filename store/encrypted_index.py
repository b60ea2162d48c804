"""The whole-file option (``speechvault init --encrypt-index``): DuckDB's own database encryption.

A vault created with ``encrypt_index=True`` is still one DuckDB file, but DuckDB encrypts every
block of it (AES-256-GCM), its WAL and its temporary files; only DuckDB's 4 KiB main header stays
plain (the magic, the storage version, the "encrypted" flag, a random 16-byte database identifier
and an encrypted key canary). The codes, names, categories and table names are no longer readable
without the passphrase, so every open of such a vault -- search and list included -- needs it.

Key derivation. The DuckDB key must be known before any byte of the database can be read, so no
per-vault salt can be stored inside it. It is therefore derived from the passphrase with scrypt
(the cost of ``store.keys``: N = 2^17, r = 8, p = 1) under a FIXED, domain-separated salt
``INDEX_SALT``, and handed to DuckDB base64-encoded as ``ENCRYPTION_KEY``. DuckDB then derives its
block key as SHA-256(database identifier || key) (``EncryptionKeyManager::DeriveKey``, DuckDB
1.4/1.5): that adds a random per-file salt, but only one SHA-256, so the memory-hard part of a
guess is the same for every encrypted-index vault (a dictionary of scrypt outputs can be computed
once and tried against many files). Inside the encrypted file the vault keeps its normal key
wrap (random master key under scrypt with its own random salt), so the audio blobs are sealed
exactly as in a plain vault.

Writing needs a crypto module DuckDB does not ship: the ``httpfs`` extension (OpenSSL). It is
loaded from the ``duckdb-extension-httpfs`` wheel of the ``encrypt-index`` extra, by path (no
network). DuckDB's built-in mbedtls module can only read (its writing mode is documented as
unsafe and is never used here), so read-only opens work without the extra.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
from pathlib import Path

from speechvault.errors import PassphraseRequiredError, RuntimeMissingError

__all__ = [
    "INDEX_SALT",
    "INDEX_LOG2_N",
    "NEEDS_PASSPHRASE",
    "INSTALL_HINT",
    "is_encrypted_file",
    "derive_index_key",
    "httpfs_extension_path",
    "load_crypto",
    "attach_sql",
]

#: fixed, documented scrypt salt of the DuckDB key (see the module docstring for why it is fixed)
INDEX_SALT = b"speechvault/encrypted-index/v1"
#: scrypt cost of the DuckDB key: N = 2^17, r = 8, p = 1, as ``store.keys.DEFAULT_LOG2_N``
INDEX_LOG2_N = 17
INDEX_R, INDEX_P = 8, 1
#: the alias the encrypted database is attached as (then made the default with ``USE``)
ALIAS = "sv"

NEEDS_PASSPHRASE = ("this vault's index is encrypted; a passphrase is needed "
                    "(SPEECHVAULT_PASSPHRASE, --key-file or the prompt)")
INSTALL_HINT = "pip install 'speechvault[encrypt-index]'"

_MAGIC = b"DUCK"
_MAGIC_AT = 8          # main header: 8-byte checksum, then the magic
_FLAGS_AT = 20         # then the 8-byte storage version, then flags[0] (bit 0: encrypted)
_ENCRYPTED_FLAG = 1


def is_encrypted_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a DuckDB file whose main header has the "encrypted" flag set.

    Reads 28 bytes, so it costs nothing and needs no key; False for anything else (a plain
    DuckDB file, not DuckDB at all, too short, unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_FLAGS_AT + 8)
    except OSError:
        return False
    if len(head) < _FLAGS_AT + 8 or head[_MAGIC_AT:_MAGIC_AT + 4] != _MAGIC:
        return False
    return bool(int.from_bytes(head[_FLAGS_AT:_FLAGS_AT + 8], "little") & _ENCRYPTED_FLAG)


def derive_index_key(passphrase: str | None) -> str:
    """The DuckDB ``ENCRYPTION_KEY`` of a passphrase: base64(scrypt(passphrase, INDEX_SALT)).

    No passphrase -> ``PassphraseRequiredError`` with the one-line hint of ``NEEDS_PASSPHRASE``."""
    from store.keys import _scrypt  # the project's one scrypt call (NFC, maxmem)

    if not isinstance(passphrase, str) or not passphrase:
        raise PassphraseRequiredError(NEEDS_PASSPHRASE)
    raw = _scrypt(passphrase, INDEX_SALT, INDEX_LOG2_N, INDEX_R, INDEX_P)
    return base64.b64encode(raw).decode("ascii")


def httpfs_extension_path() -> Path | None:
    """The ``httpfs.duckdb_extension`` shipped by the ``duckdb-extension-httpfs`` wheel for the
    installed DuckDB version, or None."""
    import duckdb

    try:
        spec = importlib.util.find_spec("duckdb_extension_httpfs")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "extensions"
    candidate = root / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    return candidate if candidate.is_file() else None


def load_crypto(con, *, required: bool) -> bool:
    """Load the httpfs extension (OpenSSL) into ``con`` so it may write encrypted blocks (and
    spill encrypted temporary files). Missing: ``RuntimeMissingError`` naming the extra when
    ``required`` (writers), else False (readers decrypt with DuckDB's built-in module)."""
    import duckdb

    ext = httpfs_extension_path()
    if ext is None and not required:
        return False
    if ext is None:
        raise RuntimeMissingError(
            f"writing a vault with an encrypted index needs DuckDB's httpfs extension for DuckDB "
            f"{duckdb.__version__}: {INSTALL_HINT}")
    try:
        con.execute(f"LOAD {_quote(str(ext))}")
    except duckdb.Error as exc:
        raise RuntimeMissingError(
            f"could not load DuckDB's httpfs extension ({str(exc).splitlines()[0]}): "
            f"{INSTALL_HINT}") from None
    return True


def attach_sql(path: str | os.PathLike, key_b64: str, *, alias: str = ALIAS,
               read_only: bool = False, create: bool = False) -> str:
    """``ATTACH 'path' AS alias (ENCRYPTION_KEY '...', ...)``: the path is quoted; the key is
    base64 (no quote can occur in it), checked to be so. ``create`` pins the cipher to GCM."""
    base64.b64decode(key_b64, validate=True)
    opts = f"ENCRYPTION_KEY '{key_b64}'"
    if create:
        opts += ", ENCRYPTION_CIPHER 'GCM'"
    if read_only:
        opts += ", READ_ONLY"
    return f"ATTACH {_quote(str(path))} AS {alias} ({opts})"


def _quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path``'s directory durable (best effort: not every FS allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(str(Path(path).parent), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

