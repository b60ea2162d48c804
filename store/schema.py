"""The vault's on-disk format: one DuckDB file, its DDL, its format version, its upgrades.

Format ``speechvault-vault``, version 5 (``FORMAT_VERSION``)::

    vault_meta   one row: magic, format version, created, app version, cipher, the key wrap
                 (JSON of ``store.keys.KeyWrap.to_dict()``: KDF name and parameters, salt,
                 wrapped master key, key check), the model fingerprint (SHA-256 of the TFLite
                 bytes), K, C, class names, default tau, and ``codes_unclustered`` (index rows
                 appended since the last clustering pass, see ``store.search``).
                 Version 4: ``vault_id`` (32 hex digits, random, made at init or by the upgrade)
                 and ``integrity`` (``store.integrity``: the authenticated settings record, JSON;
                 NULL while the vault's blobs are unbound = legacy, until a keyed write binds them).
    model        the deep hashing coding model itself: its SHA-256, TFLite bytes, ModelMeta JSON.
                 With it the file is all another machine needs to search (the vault is portable).
    recordings   one row per original file: id, name, category label, SHA-256 of the original
                 bytes (unique: de-duplication), sample rate, channels, duration, size in bytes,
                 added, number of windows, and the encrypted blob (``store.envelope.seal`` with
                 associated data = vault id, record id and the SHA-256 of the original,
                 ``store.integrity.blob_ad``; a legacy blob: the 32-byte SHA-256 alone).
    codes        the index: one row per (recording, window): ``category`` = h1 (the model's class
                 id for that window), h2 as W = ceil(K/64) BIGINT words ``w0 .. w{W-1}`` (bit i
                 of the code in word i // 64 at bit i % 64, ``hashing.codes.pack_words``; the
                 unsigned word's 64 bits read as two's complement, version 5: see ``_v4_to_v5``).
                 Kept clustered by ``category`` (see ``store.search.compact``). ``start``
                 (version 3): the window's start frame on the identification grid of the
                 model's windowing (``hashing.windowing``), NULL for a model without one.
    record_macs  (version 4) per recording: HMACs under the vault's integrity key over its
                 listing (name, category, sha256, sizes) and over its index rows.
    blob_chunks  (version 5) the sealed bytes of a recording larger than
                 ``store.blob_chunks.CHUNK_BYTES``, one row per chunk (recording id, index, count,
                 sealed chunk); its ``recordings.blob`` is empty. Each chunk's associated data is
                 the recording's blob binding + its index + the count (``store.blob_chunks``).
    schema_migrations  one row per format version applied (version, applied, description).

Upgrades: ``MIGRATIONS[v]`` turns a version-``v`` vault into version ``v + 1`` inside one
transaction; ``upgrade()`` runs them in order on a read-write connection. A vault of a newer
version than ``FORMAT_VERSION`` is refused with ``VaultFormatError``; an older one opened
read-only is refused with a message saying to open it read-write once (which upgrades it).

The only identifiers formatted into SQL here are ``w0 .. w{W-1}``, generated from the integer K.
"""

from __future__ import annotations

from typing import Callable

import secrets

import duckdb
import numpy as np

from speechvault.errors import VaultFormatError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "MIGRATIONS",
    "n_words",
    "word_columns",
    "codes_ddl",
    "insert_codes",
    "create_ddl",
    "read_format_version",
    "upgrade",
]

MAGIC = "speechvault-vault"
FORMAT_VERSION = 5

#: DuckDB's row group size (rows); zone maps (min/max per column) are kept per row group, so the
#: category filter can only skip whole row groups.
ROW_GROUP_ROWS = 122_880


def n_words(K: int) -> int:
    K = int(K)
    if K <= 0:
        raise ValueError(f"K must be positive, got {K}")
    return (K + 63) // 64


def word_columns(K: int) -> list[str]:
    """``["w0", ..., "w{W-1}"]`` for a K-bit code (generated from an integer, never user text)."""
    return [f"w{i}" for i in range(n_words(int(K)))]


#: the index table and its side tables of the same layout (clustering, reindex, upgrade)
_CODES_TABLES = ("codes", "codes_compact", "codes_reindex", "codes_v5")


def signed_words(words: np.ndarray) -> np.ndarray:
    """(n, W) unsigned code words as the BIGINT values stored in ``codes`` (same 64 bits)."""
    return np.asarray(words).astype(np.uint64, copy=False).view(np.int64)


def unsigned_words(values) -> np.ndarray:
    """Stored BIGINT words back to the code's unsigned words (same 64 bits)."""
    return np.asarray(values, np.int64).view(np.uint64)


def codes_ddl(K: int, table: str = "codes") -> str:
    if table not in _CODES_TABLES:
        raise ValueError(f"unexpected table name {table!r}")
    words = ",\n    ".join(f"{c} BIGINT NOT NULL" for c in word_columns(K))
    return (
        f"CREATE TABLE {table} (\n"
        "    recording_id BIGINT NOT NULL,\n"
        "    win INTEGER NOT NULL,\n"
        "    category SMALLINT NOT NULL,\n"
        "    start INTEGER,\n"
        f"    {words}\n"
        ")"
    )


def insert_codes(con: duckdb.DuckDBPyConnection, table: str, K: int, recording_ids: np.ndarray,
                 windows: np.ndarray, categories: np.ndarray, words: np.ndarray,
                 starts: np.ndarray | None) -> int:
    """Append index rows to ``table`` ("codes" or a side table of the same layout) in one
    statement, from numpy columns (``starts`` None: codes per model window, start NULL)."""
    if table not in _CODES_TABLES:
        raise ValueError(f"unexpected table name {table!r}")
    wcols = word_columns(K)
    frame = {"recording_id": np.asarray(recording_ids, np.int64),
             "win": np.asarray(windows, np.int32),
             "category": np.asarray(categories).astype(np.int16)}
    w = signed_words(words)
    for i, c in enumerate(wcols):
        frame[c] = np.ascontiguousarray(w[:, i])
    if starts is not None:
        frame["start"] = np.asarray(starts).astype(np.int32)
    cols = ", ".join(frame)
    con.register("_sv_new_codes", frame)
    try:
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _sv_new_codes")
    finally:
        con.unregister("_sv_new_codes")
    return int(w.shape[0])


_DDL_V1 = [
    """CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    applied TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    description VARCHAR NOT NULL
)""",
    """CREATE TABLE vault_meta (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    magic VARCHAR NOT NULL,
    format_version INTEGER NOT NULL,
    created TIMESTAMPTZ NOT NULL,
    app_version VARCHAR NOT NULL,
    cipher VARCHAR NOT NULL,
    key_wrap VARCHAR NOT NULL,
    model_sha256 VARCHAR NOT NULL,
    k INTEGER NOT NULL,
    c INTEGER NOT NULL,
    class_names VARCHAR[] NOT NULL,
    tau DOUBLE NOT NULL,
    codes_unclustered BIGINT NOT NULL DEFAULT 0,
    vault_id VARCHAR,
    integrity VARCHAR
)""",
    """CREATE TABLE model (
    sha256 VARCHAR PRIMARY KEY,
    meta_json VARCHAR NOT NULL,
    tflite BLOB NOT NULL,
    fingerprint BLOB
)""",
    "CREATE SEQUENCE recordings_id_seq START 1",
    """CREATE TABLE recordings (
    id BIGINT PRIMARY KEY DEFAULT nextval('recordings_id_seq'),
    name VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL UNIQUE,
    sample_rate INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    duration DOUBLE NOT NULL,
    size BIGINT NOT NULL,
    added TIMESTAMPTZ NOT NULL,
    n_windows INTEGER NOT NULL,
    blob BLOB NOT NULL
)""",
]

_RECORD_MACS_DDL = """CREATE TABLE record_macs (
    recording_id BIGINT PRIMARY KEY,
    listing_mac BLOB NOT NULL,
    codes_mac BLOB NOT NULL
)"""


def create_ddl(K: int) -> list[str]:
    """Every statement that creates an empty version-``FORMAT_VERSION`` vault for K-bit codes."""
    from store.blob_chunks import DDL as _BLOB_CHUNKS_DDL

    return [*_DDL_V1, codes_ddl(K), _RECORD_MACS_DDL, _BLOB_CHUNKS_DDL]


def _v1_to_v2(con: duckdb.DuckDBPyConnection) -> None:
    """Version 2: the model may carry an identification fingerprint (``hashing.fingerprint``),
    stored next to its TFLite bytes. A version-1 vault's model has none (NULL)."""
    con.execute("ALTER TABLE model ADD COLUMN fingerprint BLOB")


def _v2_to_v3(con: duckdb.DuckDBPyConnection) -> None:
    """Version 3 (issue 12): ``codes.start``, the start frame of an identification window
    (``hashing.windowing``) for excerpt search. A version-2 vault's rows were coded per model
    window and keep NULL: they search as before until ``speechvault reindex`` re-codes them."""
    cols = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'codes' "
        "AND table_schema = 'main' AND table_catalog = current_database()").fetchall()}
    if "start" not in cols:
        con.execute("ALTER TABLE codes ADD COLUMN start INTEGER")


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = 'main' AND table_catalog = current_database()", [table]).fetchall()}


def _v3_to_v4(con: duckdb.DuckDBPyConnection) -> None:
    """Version 4 (issue 17): a random ``vault_meta.vault_id``, the ``integrity`` record and the
    ``record_macs`` table. Needs no key: the old blobs stay sealed as they were (legacy, associated
    data = their SHA-256 alone) and ``integrity`` stays NULL until a command that has the
    passphrase (``upgrade``, ``ingest``, ``passwd``, ``reindex``) re-seals them bound to the
    vault id and their record id and authenticates the settings (``store.integrity``).
    Idempotent: a column or table already there is kept."""
    cols = _columns(con, "vault_meta")
    if "vault_id" not in cols:
        con.execute("ALTER TABLE vault_meta ADD COLUMN vault_id VARCHAR")
    if "integrity" not in cols:
        con.execute("ALTER TABLE vault_meta ADD COLUMN integrity VARCHAR")
    con.execute("UPDATE vault_meta SET vault_id = ? WHERE vault_id IS NULL", [secrets.token_hex(16)])
    if not _columns(con, "record_macs"):
        con.execute(_RECORD_MACS_DDL)


def _signed_word_sql(col: str) -> str:
    """A UBIGINT column's 64 bits as BIGINT (two's complement)."""
    return (f"CAST(CASE WHEN {col} >= 9223372036854775808 THEN {col}::HUGEINT "
            f"- 18446744073709551616 ELSE {col}::HUGEINT END AS BIGINT)")


def _signed_words(con: duckdb.DuckDBPyConnection) -> None:
    """Version 5, part 1 (issue 13): the code words are BIGINT, the same 64 bits read as two's
    complement. Why: DuckDB has ``bit_count`` for BIGINT but not for UBIGINT, whose every word
    it casts to HUGEINT first; the Hamming distance ``bit_count(xor(a, b))`` is the same on the
    signed words (docs/measure_word_layout.py: 0.74x the time at 1M rows, 1 thread). The code
    (``codes_of``, the integrity MACs, the lake) is the unsigned words as before, so nothing is
    re-MACed and no key is needed. ``codes`` is rewritten through a side table in the upgrade's
    one transaction (a crash leaves version 4 as it was), clustered by category on the way.
    Idempotent: words already BIGINT are kept."""
    if _word_type(con) != "UBIGINT":
        return
    K = int(con.execute("SELECT k FROM vault_meta").fetchone()[0])
    wcols = word_columns(K)
    words = ", ".join(f"{_signed_word_sql(c)} AS {c}" for c in wcols)
    con.execute("DROP TABLE IF EXISTS codes_v5")
    con.execute(codes_ddl(K, "codes_v5"))
    con.execute(f"INSERT INTO codes_v5 (recording_id, win, category, start, {', '.join(wcols)}) "
                f"SELECT recording_id, win, category, start, {words} FROM codes "
                "ORDER BY category, recording_id, win")
    con.execute("DROP TABLE codes")
    con.execute("ALTER TABLE codes_v5 RENAME TO codes")
    con.execute("UPDATE vault_meta SET codes_unclustered = 0")


def _blob_chunks_table(con: duckdb.DuckDBPyConnection) -> None:
    """Version 5, part 2 (issue 17, item 7): the ``blob_chunks`` table, where ingest stores a
    large recording's sealed bytes chunk by chunk (``store.blob_chunks``). Every stored blob
    stays as it is: a version-4 recording reads exactly as before. Needs no key; idempotent."""
    from store.blob_chunks import DDL, has_table

    if not has_table(con):
        con.execute(DDL)


def _v4_to_v5(con: duckdb.DuckDBPyConnection) -> None:
    """Version 5: signed code words (``_signed_words``) and the ``blob_chunks`` table
    (``_blob_chunks_table``), in the upgrade's one transaction."""
    _signed_words(con)
    _blob_chunks_table(con)


#: from-version -> function upgrading a vault of that version to the next (run in a transaction).
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {
    1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5}
MIGRATION_DESCRIPTIONS: dict[int, str] = {
    1: "model.fingerprint column (identification code)",
    2: "codes.start column (identification windows, excerpt search)",
    3: "vault_meta.vault_id and .integrity, record_macs (blobs bound on the next keyed write)",
    4: ("codes words as BIGINT (same bits; native bit_count); blob_chunks: large recordings "
        "sealed and stored in chunks")}


def read_format_version(con: duckdb.DuckDBPyConnection, path: str) -> int:
    """The vault's format version; ``VaultFormatError`` if this DuckDB file is not a vault."""
    try:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_catalog = current_database()"
        ).fetchall()}
    except duckdb.Error:
        raise VaultFormatError(f"{path} is not a speechvault vault (unreadable catalog)") from None
    if "vault_meta" not in tables:
        raise VaultFormatError(
            f"{path} is a DuckDB database but not a speechvault vault (no vault metadata)")
    try:
        rows = con.execute("SELECT magic, format_version FROM vault_meta").fetchall()
    except duckdb.Error:
        raise VaultFormatError(f"{path} is not a speechvault vault (malformed vault metadata)") from None
    if len(rows) != 1 or rows[0][0] != MAGIC or not isinstance(rows[0][1], int):
        raise VaultFormatError(f"{path} is not a speechvault vault (malformed vault metadata)")
    version = int(rows[0][1])
    if version > FORMAT_VERSION:
        raise VaultFormatError(
            f"{path} is vault format version {version}, newer than this speechvault supports "
            f"({FORMAT_VERSION}); upgrade speechvault to open it")
    if version < 1:
        raise VaultFormatError(f"{path} has an invalid vault format version {version}")
    missing = {"model", "recordings", "codes", *(["record_macs"] if version >= 4 else []),
               *(["blob_chunks"] if version >= 5 else [])} - tables
    if missing:
        raise VaultFormatError(
            f"{path} is a damaged speechvault vault (missing {', '.join(sorted(missing))})")
    if version >= 5 and _word_type(con) != "BIGINT":
        # a version edited upwards without its upgrade step (the words would be read as signed)
        raise VaultFormatError(f"{path} is a damaged speechvault vault (format {version} "
                               f"without its code words as BIGINT)")
    return version


def _word_type(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'codes' "
        "AND column_name = 'w0' AND table_schema = 'main' AND table_catalog = current_database()"
    ).fetchone()
    return row[0] if row else None


def upgrade(con: duckdb.DuckDBPyConnection, path: str, version: int) -> int:
    """Run the migrations from ``version`` up to ``FORMAT_VERSION``; returns the new version."""
    while version < FORMAT_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise VaultFormatError(
                f"{path} is vault format version {version} and no upgrade to "
                f"{version + 1} exists")
        con.execute("BEGIN TRANSACTION")
        try:
            step(con)
            con.execute("UPDATE vault_meta SET format_version = ?", [version + 1])
            con.execute("INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
                        [version + 1, MIGRATION_DESCRIPTIONS.get(version, f"upgrade to {version + 1}")])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        version += 1
    return version
