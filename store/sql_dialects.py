"""How DuckDB, ClickHouse and Spark SQL spell the few things the search statements need.

Why: the retrieval logic (two-stage / traversal / auto / multi-probe, tau, the exact top-N by
best window, the excerpt evidence) lives once, in ``store.search``, ``store.excerpt`` and
``store.vault``. What differs between engines is only spelling: a typed parameter, the Hamming
distance of two 64-bit words, a minimum-by, a list parameter turned into rows, and how the
values are bound. A ``Dialect`` answers those questions; the statement builders ask it.

The four dialects:

* ``DUCKDB``: a vault file. Words are ``UBIGINT``; the SQL is exactly what the builders wrote
  before dialects existed (``$n::T`` parameters, ``bit_count(xor(a, b))``).
* ``DUCKDB_LAKE``: DuckDB reading the Parquet lake (``store.lake``). Words are stored as INT64
  (Spark reads UINT64 as DECIMAL, and ``^`` then fails); XOR and popcount do not care about the
  sign, so the query's words are bound as their two's-complement signed values.
* ``CLICKHOUSE``: ``{pN:Type}`` server-side parameters, ``bitCount(bitXor(a, b))``.
* ``SPARK``: ``:pN`` named parameters (Spark >= 3.4), ``bit_count(a ^ b)``.

Only integers are formatted into SQL text (parameter numbers, K-derived column names); every
value is bound. Non-DuckDB dialects bind by name: ``bind`` returns ``NamedParams`` (a dict
``{"p1": v1, ...}``), which is also how ``store.lake`` knows a statement is for the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

__all__ = ["Dialect", "NamedParams", "DUCKDB", "DUCKDB_LAKE", "CLICKHOUSE", "SPARK",
           "to_signed", "labels_sql"]

_TWO_64 = 1 << 64
_TWO_63 = 1 << 63


def to_signed(word: int) -> int:
    """The INT64 with the same 64 bits as the unsigned word (two's complement)."""
    w = int(word)
    return w - _TWO_64 if w >= _TWO_63 else w


class NamedParams(dict):
    """Values bound by name (``p1``, ``p2``, ..): the statement is in an engine's dialect."""


#: generic type -> spelling, per dialect. "WORD" is a 64-bit code word.
_TYPES = {
    "duckdb": {"WORD": "UBIGINT", "SMALLINT": "SMALLINT", "INTEGER": "INTEGER",
               "BIGINT": "BIGINT", "DOUBLE": "DOUBLE"},
    "duckdb-lake": {"WORD": "BIGINT", "SMALLINT": "SMALLINT", "INTEGER": "INTEGER",
                    "BIGINT": "BIGINT", "DOUBLE": "DOUBLE"},
    "clickhouse": {"WORD": "Int64", "SMALLINT": "Int16", "INTEGER": "Int32",
                   "BIGINT": "Int64", "DOUBLE": "Float64"},
    "spark": {"WORD": "BIGINT", "SMALLINT": "SMALLINT", "INTEGER": "INT",
              "BIGINT": "BIGINT", "DOUBLE": "DOUBLE"},
}


@dataclass(frozen=True)
class Dialect:
    """One engine's spelling. ``name``: duckdb, duckdb-lake, clickhouse or spark."""

    name: str

    @property
    def signed_words(self) -> bool:
        return self.name != "duckdb"

    @property
    def family(self) -> str:
        """duckdb (both DuckDB dialects), clickhouse or spark."""
        return "duckdb" if self.name.startswith("duckdb") else self.name

    def type(self, generic: str) -> str:
        """The spelling of a generic type; ``T[]`` is a list of T."""
        if generic.endswith("[]"):
            inner = self.type(generic[:-2])
            return {"duckdb": f"{inner}[]", "clickhouse": f"Array({inner})",
                    "spark": f"ARRAY<{inner}>"}[self.family]
        return _TYPES[self.name][generic]

    def param(self, n: int, generic: str) -> str:
        """Typed parameter number ``n`` (1-based)."""
        n = int(n)
        t = self.type(generic)
        if self.family == "duckdb":
            return f"${n}::{t}"
        if self.family == "clickhouse":
            return f"{{p{n}:{t}}}"
        return f"CAST(:p{n} AS {t})"

    def limit(self, n: int) -> str:
        """A LIMIT of parameter ``n`` (DuckDB's builders write it untyped)."""
        n = int(n)
        return {"duckdb": f"${n}", "clickhouse": f"{{p{n}:UInt64}}",
                "spark": f":p{n}"}[self.family]

    def cast(self, expr: str, generic: str) -> str:
        if self.family == "duckdb":
            return f"{expr}::{self.type(generic)}"
        return f"CAST({expr} AS {self.type(generic)})"

    def hamming(self, a: str, b: str) -> str:
        """Bits that differ between two 64-bit words, as a 32-bit integer (DuckDB < 2 types
        bit_count as TINYINT, and a sum over K > 127 bits overflows it)."""
        if self.family == "duckdb":
            return f"bit_count(xor({a}, {b}))::INTEGER"
        if self.family == "clickhouse":
            return f"toInt32(bitCount(bitXor({a}, {b})))"
        return f"bit_count({a} ^ {b})"

    def arg_min(self, value: str, key: str) -> str:
        return {"duckdb": f"arg_min({value}, {key})", "clickhouse": f"argMin({value}, {key})",
                "spark": f"min_by({value}, {key})"}[self.family]

    def word_values(self, words: Iterable[int]) -> list[int]:
        """The query words as bound: unsigned for a vault file, signed INT64 elsewhere."""
        if self.signed_words:
            return [to_signed(w) for w in words]
        return [int(w) for w in words]

    def bind(self, values: list) -> list | NamedParams:
        """Positional values ($1, $2, ..) as this engine binds them."""
        if self.family == "duckdb":
            return list(values)
        return NamedParams((f"p{i + 1}", v) for i, v in enumerate(values))

    def in_list(self, column: str, first_param: int, count: int, generic: str) -> str:
        """``column IN (p, p+1, ..)``: constants after binding, so partitions can be pruned."""
        params = ", ".join(self.param(first_param + i, generic) for i in range(int(count)))
        return f"{column} IN ({params})"


DUCKDB = Dialect("duckdb")
DUCKDB_LAKE = Dialect("duckdb-lake")
CLICKHOUSE = Dialect("clickhouse")
SPARK = Dialect("spark")


def labels_sql(dialect: Dialect) -> str:
    """Names and labels of the final hits: ``$1`` is the list of recording ids."""
    if dialect.family == "duckdb":
        return ("SELECT id, name, category FROM recordings "
                "WHERE id IN (SELECT unnest(?::BIGINT[]))")
    if dialect.family == "clickhouse":
        return ("SELECT id, name, category FROM recordings "
                f"WHERE has({dialect.param(1, 'BIGINT[]')}, id)")
    return ("SELECT id, name, category FROM recordings "
            f"WHERE array_contains({dialect.param(1, 'BIGINT[]')}, id)")
