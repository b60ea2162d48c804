"""The vault's on-disk format: one DuckDB file, its DDL, its format version, its upgrades.

Format ``speechvault-vault``, version 7 (``FORMAT_VERSION``)::

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
                 id for that window), h2 as W = ceil(K/128) HUGEINT words ``w0 .. w{W-1}``
                 (version 6, ``_v5_to_v6``): word j holds the code's 64-bit words 2j (low half)
                 and 2j+1 (high half) of ``hashing.codes.pack_words``, i.e. bit i of the code at
                 bit i % 128 of word i // 128, the 128 bits read as two's complement; when K is
                 not a multiple of 128 the last word holds the remaining bits (its high half 0
                 when K % 128 <= 64). (Version 5: ceil(K/64) BIGINT words, ``_v4_to_v5``;
                 before: UBIGINT.) Kept clustered by ``category`` (see ``store.search.compact``).
                 ``start`` (version 3): the window's start frame on the identification grid of
                 the model's windowing (``hashing.windowing``), NULL for a model without one.
                 ``k0 .. k{K/16-1}`` (version 7, ``_v6_to_v7``): the code's 16-bit slices, slice
                 b = bits 16b .. 16b+15 as USMALLINT, the keys of excerpt search's candidate
                 joins (``store.excerpt``); derived from the words, so not MACed but checked
                 against them (``store.integrity``).
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

The word layout is defined here and only here: ``word_columns`` / ``n_words`` (the stored
128-bit words, or with ``bits=64`` the 64-bit words of the lake's Parquet), ``word_halves``
(numpy words -> the columns bound for an insert), ``word_from_halves_sql`` (the SQL that makes
a stored word of them), ``code_words_sql`` (the stored words back as the code's 64-bit words),
``query_word_values`` (a query's words as bound to the stored ones), ``word_bit_count`` (the
bit count of a stored word, spelt for the DuckDB installed), and the slice keys derived from the
words: ``key_columns``, ``slice_keys`` (numpy, for an insert) and ``slice_key_sql`` (SQL, from a
stored word).

The only identifiers formatted into SQL here are ``w0 .. w{W-1}`` and ``k0 .. k{K/16-1}`` (and
the ``l0 ..`` / ``h0 ..`` halves of an insert), generated from the integer K.
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
    "code_word_columns",
    "key_columns",
    "slice_keys",
    "slice_key_sql",
    "key_word",
    "stored_slice_keys_sql",
    "KEY_BITS",
    "WORD_BITS",
    "CODE_WORD_BITS",
    "word_halves",
    "word_from_halves_sql",
    "code_words_sql",
    "code_words_array",
    "query_word_values",
    "stored_words",
    "word_bit_count",
    "codes_ddl",
    "insert_codes",
    "create_ddl",
    "read_format_version",
    "upgrade",
]

MAGIC = "speechvault-vault"
FORMAT_VERSION = 7

#: bits per stored code word (format 6: HUGEINT); the code itself is packed in 64-bit words
#: (``hashing.codes.pack_words``), which the lake's Parquet keeps (``store.lake_export``)
WORD_BITS = 128
CODE_WORD_BITS = 64
WORD_TYPE = "HUGEINT"
_TWO_64 = 1 << 64
_MASK_64 = "18446744073709551615::HUGEINT"

#: DuckDB's row group size (rows); zone maps (min/max per column) are kept per row group, so the
#: category filter can only skip whole row groups.
ROW_GROUP_ROWS = 122_880


def n_words(K: int, bits: int = WORD_BITS) -> int:
    """Words of ``bits`` bits (the stored 128, or the code's 64) that hold a K-bit code."""
    K = int(K)
    if K <= 0:
        raise ValueError(f"K must be positive, got {K}")
    return (K + int(bits) - 1) // int(bits)


def word_columns(K: int, bits: int = WORD_BITS) -> list[str]:
    """``["w0", ..., "w{W-1}"]`` for a K-bit code in words of ``bits`` bits (the stored 128 by
    default; 64: the lake's columns). Generated from integers, never user text."""
    return [f"w{i}" for i in range(n_words(int(K), bits))]


def code_word_columns(K: int) -> list[str]:
    """The code's 64-bit word columns ``w0 .. w{ceil(K/64)-1}``: the lake's Parquet (Spark
    and ClickHouse share no 128-bit integer type) and ``code_words_sql``."""
    return word_columns(K, CODE_WORD_BITS)


#: bits of a slice key (format 7's ``k`` columns): the keys of excerpt search's candidate joins
KEY_BITS = 16


def key_columns(K: int) -> list[str]:
    """``["k0", ..., "k{K/16-1}"]``: the stored 16-bit slice keys of a K-bit code (format 7),
    slice b holding code bits 16b .. 16b+15. Generated from integers, never user text."""
    return [f"k{b}" for b in range(int(K) // KEY_BITS)]


def slice_keys(words: np.ndarray, K: int) -> dict[str, np.ndarray]:
    """The slice keys of codes given as their (n, ceil(K/64)) unsigned 64-bit words, as the
    uint16 columns an insert binds: slice b is bits 16(b % 4) .. of 64-bit word b // 4 (bit i
    of the code is bit i % 64 of word i // 64, ``hashing.codes.pack_words``)."""
    w = np.asarray(words).astype(np.uint64, copy=False)
    return {f"k{b}": np.ascontiguousarray(
                ((w[:, b // 4] >> np.uint64(KEY_BITS * (b % 4))) & np.uint64(0xFFFF))
                .astype(np.uint16))
            for b in range(int(K) // KEY_BITS)}


def slice_key_sql(word: str, band: int, bits: int = WORD_BITS) -> str:
    """Slice ``band`` of a code from the column ``word`` holding it (a stored word of ``bits``
    bits: 128 in a vault, 64 in the lake): ``(word >> s) & 65535``, as USMALLINT in a vault
    (the type of its key columns, so a join compares them without a cast; the lake's spelling
    is the one ``store.sql_dialects`` translates for the other engines). ``>>`` on a signed
    integer is arithmetic in DuckDB (1.5 and 2.0), so a negative word gives its bits too."""
    key = f"(({word} >> {(KEY_BITS * int(band)) % int(bits)}) & 65535)"
    return f"{key}::USMALLINT" if int(bits) == WORD_BITS else key


def key_word(band: int, bits: int = WORD_BITS) -> int:
    """Which stored word of ``bits`` bits holds slice ``band``."""
    return KEY_BITS * int(band) // int(bits)


def stored_slice_keys_sql(K: int) -> dict[str, str]:
    """``{"k0": SQL, ...}``: each key column's value computed from a vault's stored words (the
    upgrade to format 7, the integrity check, inserts of synthetic rows)."""
    return {c: slice_key_sql(f"w{key_word(b)}", b) for b, c in enumerate(key_columns(K))}


#: the index table and its side tables of the same layout (clustering, reindex, upgrade)
_CODES_TABLES = ("codes", "codes_compact", "codes_reindex", "codes_v5", "codes_v6", "codes_v7")


def word_halves(words: np.ndarray, K: int) -> dict[str, np.ndarray]:
    """The code's (n, ceil(K/64)) unsigned 64-bit words as the columns an insert binds: per
    stored word j its low half ``l{j}`` (uint64) and, if the code has one, its high half
    ``h{j}`` (int64, the same bits: the sign of the 128-bit word). numpy has no 128-bit
    integer, so ``word_from_halves_sql`` makes the stored word in SQL."""
    w = np.ascontiguousarray(np.asarray(words).astype(np.uint64, copy=False))
    n64 = n_words(K, CODE_WORD_BITS)
    if w.ndim != 2 or w.shape[1] != n64:
        raise ValueError(f"words must be (n, {n64}) for K = {K}, got {w.shape}")
    out = {}
    for j in range(n_words(K)):
        out[f"l{j}"] = np.ascontiguousarray(w[:, 2 * j])
        if 2 * j + 1 < n64:
            out[f"h{j}"] = np.ascontiguousarray(w[:, 2 * j + 1]).view(np.int64)
    return out


def _pair_sql(hi: str, lo: str) -> str:
    """The HUGEINT ``hi * 2^64 + lo`` of a BIGINT high half and a low half in [0, 2^64).
    Not a shift (DuckDB refuses to shift a negative number left); a negative high half as
    ``(hi + 1) * 2^64 - (2^64 - lo)``, as DuckDB 1.5 reports -2^63 * 2^64 (= -2^127, in range)
    as an overflow."""
    two = f"{_TWO_64}::HUGEINT"
    return (f"(CASE WHEN {hi} < 0 THEN ({hi}::HUGEINT + 1) * {two} - ({two} - {lo}) "
            f"ELSE {hi}::HUGEINT * {two} + {lo} END)")


def word_from_halves_sql(K: int, j: int, alias: str = "") -> str:
    """The SQL of stored word ``j`` from ``word_halves``' columns."""
    lo = f"{alias}l{int(j)}::HUGEINT"
    if 2 * int(j) + 1 >= n_words(K, CODE_WORD_BITS):
        return lo
    return _pair_sql(f"{alias}h{int(j)}", lo)


def code_words_sql(K: int, signed: bool = False, alias: str = "") -> list[str]:
    """The stored words read back as the code's 64-bit words ``w0 .. w{ceil(K/64)-1}``: UBIGINT
    (``codes_of``, the integrity MACs: the same values as ever), or ``signed`` BIGINT with the
    same bits (the lake's INT64 Parquet columns). ``>>`` on a HUGEINT is arithmetic, so the
    high half of a negative word is its signed 64 bits."""
    out = []
    for i, name in enumerate(code_word_columns(K)):
        col = f"{alias}w{i // 2}"
        if i % 2:
            expr = f"({col} >> 64)::BIGINT" if signed else f"(({col} >> 64) & {_MASK_64})::UBIGINT"
        else:
            low = f"({col} & {_MASK_64})"
            expr = (f"(CASE WHEN {low} >= 9223372036854775808::HUGEINT THEN {low} - {_TWO_64}"
                    f"::HUGEINT ELSE {low} END)::BIGINT" if signed else f"{low}::UBIGINT")
        out.append(f"{expr} AS {name}")
    return out


def code_words_array(res: dict, K: int) -> np.ndarray:
    """The code's (n, ceil(K/64)) unsigned 64-bit words from a ``fetchnumpy()`` result whose
    statement selected ``code_words_sql(K)`` (``codes_of``, the integrity MACs, benches)."""
    cols = code_word_columns(K)
    return np.stack([np.asarray(res[c], np.uint64) for c in cols], axis=1) if len(res[cols[0]]) \
        else np.zeros((0, len(cols)), np.uint64)


def query_word_values(words) -> list[int]:
    """A query's unsigned 64-bit words (``pack_words``) as the values bound to the stored
    HUGEINT words: each pair as one 128-bit two's complement integer, the last word alone
    (non-negative) when the code has an odd number of 64-bit words."""
    w = [int(x) for x in words]
    out = []
    for j in range(0, len(w), 2):
        if j + 1 < len(w):
            hi = w[j + 1] - _TWO_64 if w[j + 1] >= 1 << 63 else w[j + 1]
            out.append(hi * _TWO_64 + w[j])
        else:
            out.append(w[j])
    return out


def stored_words(words: np.ndarray) -> list[list[int]]:
    """(n, ceil(K/64)) unsigned code words as rows of stored HUGEINT values (Python ints):
    for tests and small tables; inserts bind ``word_halves`` instead."""
    return [query_word_values(row) for row in np.asarray(words)]


def _count_wraps() -> bool:
    """Whether this DuckDB types ``bit_count(HUGEINT)`` as TINYINT, where a count of 128 wraps
    to -128 (DuckDB < 2; 2.0 types it SMALLINT)."""
    return int(duckdb.__version__.split(".")[0]) < 2


_COUNT_WRAPS = _count_wraps()


def word_bit_count(expr: str) -> str:
    """``bit_count(expr)`` of a stored word, exact: on DuckDB < 2 masked with ``& 255`` (an
    INTEGER, so 128 reads as 128; measured ~4 % of a 1M-row traversal, so not spelt where the
    count cannot wrap)."""
    return f"(bit_count({expr}) & 255)" if _COUNT_WRAPS else f"bit_count({expr})"


def signed_words(words: np.ndarray) -> np.ndarray:
    """(n, W) unsigned 64-bit code words as BIGINT values (same 64 bits): the lake's INT64
    columns, and a format-5 vault's words."""
    return np.asarray(words).astype(np.uint64, copy=False).view(np.int64)


def unsigned_words(values) -> np.ndarray:
    """BIGINT words back to the code's unsigned words (same 64 bits)."""
    return np.asarray(values, np.int64).view(np.uint64)


def codes_ddl(K: int, table: str = "codes", *, bits: int = WORD_BITS,
              word_type: str = WORD_TYPE, keys: bool = True) -> str:
    """The index table (or a side table of its layout); ``bits``/``word_type``/``keys``: an
    earlier format's layout, for its upgrade step only (version 5: 64, BIGINT, no keys; version
    6: no keys)."""
    if table not in _CODES_TABLES:
        raise ValueError(f"unexpected table name {table!r}")
    if word_type not in ("HUGEINT", "BIGINT"):
        raise ValueError(f"unexpected word type {word_type!r}")
    words = ",\n    ".join(f"{c} {word_type} NOT NULL" for c in word_columns(K, bits))
    if keys:
        words += "".join(f",\n    {c} USMALLINT NOT NULL" for c in key_columns(K))
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
    statement, from numpy columns (``starts`` None: codes per model window, start NULL);
    ``words``: the code's (n, ceil(K/64)) unsigned 64-bit words, from which the slice keys
    are derived too."""
    if table not in _CODES_TABLES:
        raise ValueError(f"unexpected table name {table!r}")
    frame = {"recording_id": np.asarray(recording_ids, np.int64),
             "win": np.asarray(windows, np.int32),
             "category": np.asarray(categories).astype(np.int16)}
    frame.update(word_halves(words, K))
    frame.update(slice_keys(words, K))
    cols = ["recording_id", "win", "category", *key_columns(K)]
    if starts is not None:
        frame["start"] = np.asarray(starts).astype(np.int32)
        cols.append("start")
    sel = cols + [f"{word_from_halves_sql(K, j)} AS {c}" for j, c in enumerate(word_columns(K))]
    con.register("_sv_new_codes", frame)
    try:
        con.execute(f"INSERT INTO {table} ({', '.join(cols + word_columns(K))}) "
                    f"SELECT {', '.join(sel)} FROM _sv_new_codes")
    finally:
        con.unregister("_sv_new_codes")
    return int(frame["recording_id"].shape[0])


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
    K = int(con.execute("SELECT k FROM vault_meta").fetchall()[0][0])
    wcols = word_columns(K, CODE_WORD_BITS)
    words = ", ".join(f"{_signed_word_sql(c)} AS {c}" for c in wcols)
    con.execute("DROP TABLE IF EXISTS codes_v5")
    con.execute(codes_ddl(K, "codes_v5", bits=CODE_WORD_BITS, word_type="BIGINT", keys=False))
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


def _unsigned_64_sql(col: str) -> str:
    """A BIGINT column's 64 bits as the unsigned value, in HUGEINT."""
    return (f"({col}::HUGEINT + CASE WHEN {col} < 0 THEN {_TWO_64}::HUGEINT "
            "ELSE 0::HUGEINT END)")


def _wide_word_sql(K: int, j: int) -> str:
    """Format 6's word ``j`` from format 5's BIGINT words 2j (low) and 2j+1 (high, if any)."""
    lo = _unsigned_64_sql(f"w{2 * j}")
    if 2 * j + 1 >= n_words(K, CODE_WORD_BITS):
        return lo
    return _pair_sql(f"w{2 * j + 1}", lo)


def _v5_to_v6(con: duckdb.DuckDBPyConnection) -> None:
    """Version 6 (issue 13): the code words are ceil(K/128) HUGEINT, each two of format 5's
    BIGINT words (the same bits, the last word the remaining ones). Why: one ``bit_count(xor())``
    per 128 bits instead of per 64; the one-window search statement took 0.72-0.81x the CPU
    (docs/measure_hugeint_search.py, docs/results/bench.md). HUGEINT, not UHUGEINT: DuckDB has
    no ``bit_count(UHUGEINT)``. The code (``codes_of``, the integrity MACs, the lake) is the
    same unsigned 64-bit words as before, so nothing is re-MACed and no key is needed.
    ``codes`` is rewritten through a side table in the upgrade's one transaction (a crash
    leaves version 5 as it was), clustered by category on the way. Idempotent: words already
    HUGEINT are kept."""
    if _word_type(con) != "BIGINT":
        return
    K = int(con.execute("SELECT k FROM vault_meta").fetchall()[0][0])
    wcols = word_columns(K)
    words = ", ".join(f"{_wide_word_sql(K, j)} AS {c}" for j, c in enumerate(wcols))
    con.execute("DROP TABLE IF EXISTS codes_v6")
    con.execute(codes_ddl(K, "codes_v6", keys=False))
    con.execute(f"INSERT INTO codes_v6 (recording_id, win, category, start, {', '.join(wcols)}) "
                f"SELECT recording_id, win, category, start, {words} FROM codes "
                "ORDER BY category, recording_id, win")
    con.execute("DROP TABLE codes")
    con.execute("ALTER TABLE codes_v6 RENAME TO codes")
    con.execute("UPDATE vault_meta SET codes_unclustered = 0")


def _v6_to_v7(con: duckdb.DuckDBPyConnection) -> None:
    """Version 7 (issue 12): the code's 16-bit slices stored as USMALLINT key columns
    (``key_columns``). Why: the keyed excerpt statement joins the query's windows on these
    slices; computed from a 128-bit word for every stored row and hashed as HUGEINT, they made
    a 5 s query's statement cost 68.5 ms CPU at 1.1M rows, on stored 16-bit keys 50.2 ms (one
    thread, docs/results/bench_excerpt.md, session 26), for 2 bytes a slice and row. The words
    stay as they were (the keys are derived from them), so nothing is re-MACed and no key is
    needed; ``codes`` is rewritten through a side table in the upgrade's one transaction (a
    crash leaves version 6 as it was), clustered by category on the way. Idempotent: keys
    already there are kept."""
    if _column_type(con, "k0") is not None:
        return
    K = int(con.execute("SELECT k FROM vault_meta").fetchall()[0][0])
    base = ["recording_id", "win", "category", "start", *word_columns(K)]
    keys = stored_slice_keys_sql(K)
    con.execute("DROP TABLE IF EXISTS codes_v7")
    con.execute(codes_ddl(K, "codes_v7"))
    con.execute(f"INSERT INTO codes_v7 ({', '.join([*base, *keys])}) "
                f"SELECT {', '.join([*base, *keys.values()])} FROM codes "
                "ORDER BY category, recording_id, win")
    con.execute("DROP TABLE codes")
    con.execute("ALTER TABLE codes_v7 RENAME TO codes")
    con.execute("UPDATE vault_meta SET codes_unclustered = 0")


#: from-version -> function upgrading a vault of that version to the next (run in a transaction).
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {
    1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6, 6: _v6_to_v7}
MIGRATION_DESCRIPTIONS: dict[int, str] = {
    1: "model.fingerprint column (identification code)",
    2: "codes.start column (identification windows, excerpt search)",
    3: "vault_meta.vault_id and .integrity, record_macs (blobs bound on the next keyed write)",
    4: ("codes words as BIGINT (same bits; native bit_count); blob_chunks: large recordings "
        "sealed and stored in chunks"),
    5: "codes words as ceil(K/128) HUGEINT (same bits; one bit_count per 128 bits)",
    6: "codes 16-bit slices as USMALLINT key columns (excerpt search's candidate joins)"}


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
    want = {5: "BIGINT", 6: WORD_TYPE, 7: WORD_TYPE}.get(version)
    if want is not None and _word_type(con) != want:
        # a version edited upwards without its upgrade step (the words would be misread)
        raise VaultFormatError(f"{path} is a damaged speechvault vault (format {version} "
                               f"without its code words as {want})")
    if version >= 7 and _column_type(con, "k0") != "USMALLINT":
        raise VaultFormatError(f"{path} is a damaged speechvault vault (format {version} "
                               "without its slice keys)")
    return version


def _column_type(con: duckdb.DuckDBPyConnection, column: str) -> str | None:
    rows = con.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'codes' "
        "AND column_name = ? AND table_schema = 'main' AND table_catalog = current_database()",
        [column]).fetchall()
    return rows[0][0] if rows else None


def _word_type(con: duckdb.DuckDBPyConnection) -> str | None:
    return _column_type(con, "w0")


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
