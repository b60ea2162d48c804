"""How DuckDB, ClickHouse and Spark SQL spell the few things the search statements need.

Why: the retrieval logic (two-stage / traversal / auto / multi-probe, tau, the exact top-N by
best window, the excerpt evidence) lives once, in ``store.search``, ``store.excerpt`` and
``store.vault``. What differs between engines is only spelling: a typed parameter, the Hamming
distance of two 64-bit words, a minimum-by, a list parameter turned into rows, and how the
values are bound. A ``Dialect`` answers those questions; the statement builders ask it.

The four dialects:

* ``DUCKDB``: a vault file (``$n::T`` parameters, ``bit_count(xor(a, b))``). Words are 128-bit
  ``HUGEINT`` since vault format 6 (``store.schema._v5_to_v6``; ``BIGINT`` in format 5): each
  two of the code's unsigned 64-bit words bound as one two's-complement 128-bit value
  (``store.schema.query_word_values``), one ``bit_count`` per 128 bits.
* ``DUCKDB_LAKE``: DuckDB reading the Parquet lake (``store.lake``). Words are 64-bit, INT64
  (Spark reads UINT64 as DECIMAL, and ``^`` then fails); XOR and popcount do not care about the
  sign, so the query's words are bound as their two's-complement signed values.
* ``CLICKHOUSE``: ``{pN:Type}`` server-side parameters, ``bitCount(bitXor(a, b))``.
* ``SPARK``: ``:pN`` named parameters (Spark >= 3.4), ``bit_count(a ^ b)``.

Only integers are formatted into SQL text (parameter numbers, K-derived column names); every
value is bound. Non-DuckDB dialects bind by name: ``bind`` returns ``NamedParams`` (a dict
``{"p1": v1, ...}``), which is also how ``store.lake`` knows a statement is for the engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from store import schema as _schema

__all__ = ["Dialect", "NamedParams", "DUCKDB", "DUCKDB_LAKE", "CLICKHOUSE", "SPARK",
           "to_signed", "labels_sql", "excerpt_sql_for"]

_TWO_64 = 1 << 64
_TWO_63 = 1 << 63


def to_signed(word: int) -> int:
    """The INT64 with the same 64 bits as the unsigned word (two's complement)."""
    w = int(word)
    return w - _TWO_64 if w >= _TWO_63 else w


class NamedParams(dict):
    """Values bound by name (``p1``, ``p2``, ..): the statement is in an engine's dialect."""


#: generic type -> spelling, per dialect. "WORD" is a stored code word (``Dialect.word_bits``).
_TYPES = {
    "duckdb": {"WORD": _schema.WORD_TYPE, "SMALLINT": "SMALLINT", "INTEGER": "INTEGER",
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
        """Every engine stores the words as signed integers (two's complement)."""
        return True

    @property
    def word_bits(self) -> int:
        """Bits per stored word: a vault file's 128 (format 6), the lake's 64 (its Parquet)."""
        return _schema.WORD_BITS if self.name == "duckdb" else _schema.CODE_WORD_BITS

    def word_columns(self, K: int) -> list[str]:
        """The word columns of ``codes`` as this engine sees them (``store.schema``)."""
        return _schema.word_columns(K, self.word_bits)

    @property
    def stored_keys(self) -> bool:
        """Whether ``codes`` has the 16-bit slice key columns (a vault file, format 7; the
        lake's Parquet keeps the words only)."""
        return self.name == "duckdb"

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
        """Bits that differ between two stored words, as a 32-bit integer (DuckDB < 2 types
        bit_count as TINYINT, and a sum over K > 127 bits overflows it; a vault's 128-bit words
        are counted by ``store.schema.word_bit_count``)."""
        if self.name == "duckdb":
            return f"{_schema.word_bit_count(f'xor({a}, {b})')}::INTEGER"
        if self.family == "duckdb":
            return f"bit_count(xor({a}, {b}))::INTEGER"
        if self.family == "clickhouse":
            return f"toInt32(bitCount(bitXor({a}, {b})))"
        return f"bit_count({a} ^ {b})"

    def arg_min(self, value: str, key: str) -> str:
        return {"duckdb": f"arg_min({value}, {key})", "clickhouse": f"argMin({value}, {key})",
                "spark": f"min_by({value}, {key})"}[self.family]

    def qualified(self, table: str, column: str) -> str:
        """A column inside an aggregate whose output alias reuses its name: ClickHouse aliases
        are query-wide (``min(dist) AS dist`` would capture ``dist`` inside ``argMin``), so
        there it is qualified by its table; DuckDB and Spark scope aliases."""
        return f"{table}.{column}" if self.family == "clickhouse" else column

    def word_values(self, words: Iterable[int]) -> list[int]:
        """The query's unsigned 64-bit words as bound to the stored words: a vault's 128-bit
        values (``store.schema.query_word_values``), else signed INT64 with the same bits."""
        if self.word_bits == _schema.WORD_BITS:
            return _schema.query_word_values(words)
        return [to_signed(w) for w in words]

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


# ------------------------------------------------------------------ the excerpt statement
_DUCK_TYPES = {"UBIGINT": "WORD", "BIGINT": "BIGINT", "INTEGER": "INTEGER",
               "SMALLINT": "SMALLINT", "DOUBLE": "DOUBLE"}
_UNNEST = re.compile(r"unnest\(\$(\d+)::(\w+)\[\]\) AS (\w+)")
_Q_CTE = re.compile(r"WITH q AS \(\nSELECT (unnest\(.*?\) AS \w+(?:,\s*unnest\(.*?\) AS \w+)*)\n\)",
                    re.S)
_HAMMING = re.compile(r"bit_count\(xor\(([\w.]+), ([\w.]+)\)\)::INTEGER")
_BAND = re.compile(r"\(\(([\w.]+) >> (\d+)\) & 65535\)")
_CONTAINS = re.compile(r"list_contains\(\$(\d+)::(\w+)\[\], ([\w.]+)\)")
#: a batch's per-request categories: a list column of the query windows (store.excerpt)
_CONTAINS_COL = re.compile(r"list_contains\((\w+\.\w+), ([\w.]+)\)")
_LEN = re.compile(r"\blen\((\w+\.\w+)\)")
_ROUND = re.compile(r"round\(\((\w+) - (\w+)\) / \$(\d+)::DOUBLE\)::INTEGER")
_LIMIT = re.compile(r"LIMIT \$(\d+)::INTEGER")
_ARG_MIN = re.compile(r"arg_min\((\w+), (\w+)::BIGINT \* ")
_PARAM = re.compile(r"\$(\d+)::(\w+)\b(?!\[)")
_NON_EQUI = re.compile(r"\nJOIN q ON (abs\(.*?\) <= [^\n]+)\n\)")


def _q_cte(dialect: Dialect, body: str) -> str:
    """The query windows as rows: parallel list parameters turned into one row per index."""
    cols = _UNNEST.findall(body)  # [(param, duckdb type, alias)]
    first = cols[0]
    first_list = dialect.param(int(first[0]), _DUCK_TYPES[first[1]] + "[]")
    if dialect.family == "clickhouse":
        picks = ", ".join(f"{dialect.param(int(p), _DUCK_TYPES[t] + '[]')}[i] AS {a}"
                          for p, t, a in cols)
        return (f"WITH q AS (\nSELECT {picks}\n"
                f"FROM (SELECT arrayJoin(range(1, length({first_list}) + 1)) AS i)\n)")
    picks = ", ".join(f"element_at({dialect.param(int(p), _DUCK_TYPES[t] + '[]')}, i + 1) AS {a}"
                      for p, t, a in cols[1:])
    return (f"WITH q AS (\nSELECT {first[2]}, {picks}\n"
            f"FROM (SELECT posexplode({first_list}) AS (i, {first[2]}))\n)")


def excerpt_sql_for(dialect: Dialect, duck_sql: str) -> str:
    """``store.excerpt``'s statement in ClickHouse or Spark spelling, from its DuckDB text.

    Why a translation rather than a second template: the excerpt logic (candidates, votes,
    verification) must stay in one place, ``store.excerpt`` (``excerpt_sql`` and its batch form
    ``excerpt_batch_sql``). Its text uses a small, fixed vocabulary (parallel ``unnest`` lists,
    ``list_contains`` of a parameter or of a batch's list column, ``len``,
    ``bit_count(xor())``, 16-bit slices, ``round(...)::INTEGER``, ``arg_min``, typed ``$n`` parameters); each is rewritten
    here, and anything DuckDB-only left over raises, so a change to the template fails loudly
    (and the conformance tests compare the hits of all engines)."""
    sql = _Q_CTE.sub(lambda m: _q_cte(dialect, m.group(1)), duck_sql)
    sql = _HAMMING.sub(lambda m: dialect.hamming(m.group(1), m.group(2)), sql)
    if dialect.family == "clickhouse":
        sql = _BAND.sub(lambda m: f"bitAnd(bitShiftRight({m.group(1)}, {m.group(2)}), 65535)", sql)
        sql = _CONTAINS.sub(lambda m: f"has({dialect.param(int(m.group(1)), _DUCK_TYPES[m.group(2)] + '[]')}, {m.group(3)})", sql)
        sql = _CONTAINS_COL.sub(lambda m: f"has({m.group(1)}, {m.group(2)})", sql)
        sql = _LEN.sub(lambda m: f"length({m.group(1)})", sql)
        # round half away from zero, as DuckDB and Spark do (ClickHouse's round is banker's)
        sql = _ROUND.sub(lambda m: (
            f"toInt32(sign({m.group(1)} - {m.group(2)}) * floor(abs({m.group(1)} - {m.group(2)}) "
            f"/ {dialect.param(int(m.group(3)), 'DOUBLE')} + 0.5))"), sql)
        # the verification join on a time window: a cross join filtered (no equi-key to hash)
        # the outputs are read by position: renamed so they do not capture the columns of
        # the same name inside argMin (ClickHouse aliases are query-wide)
        sql = sql.replace(") AS qs, min(d) AS d\n", ") AS best_qs, min(d) AS min_d\n")
        sql = _NON_EQUI.sub(lambda m: f"\nCROSS JOIN q WHERE {m.group(1)}\n)", sql)
    else:
        sql = _BAND.sub(lambda m: f"(shiftright({m.group(1)}, {m.group(2)}) & 65535)", sql)
        sql = _CONTAINS.sub(lambda m: (
            f"array_contains({dialect.param(int(m.group(1)), 'INTEGER[]')}, "
            f"CAST({m.group(3)} AS INT))"), sql)
        sql = _CONTAINS_COL.sub(
            lambda m: f"array_contains({m.group(1)}, CAST({m.group(2)} AS INT))", sql)
        sql = _LEN.sub(lambda m: f"size({m.group(1)})", sql)
        sql = _ROUND.sub(lambda m: dialect.cast(
            f"round(({m.group(1)} - {m.group(2)}) / {dialect.param(int(m.group(3)), 'DOUBLE')})",
            "INTEGER"), sql)
    sql = _LIMIT.sub(lambda m: f"LIMIT {dialect.limit(int(m.group(1)))}", sql)
    arg_min = {"clickhouse": "argMin", "spark": "min_by"}[dialect.family]
    sql = _ARG_MIN.sub(lambda m: f"{arg_min}({m.group(1)}, "
                                 f"{dialect.cast(m.group(2), 'BIGINT')} * ", sql)
    sql = _PARAM.sub(lambda m: dialect.param(int(m.group(1)), _DUCK_TYPES[m.group(2)]), sql)
    left = [tok for tok in ("$", "::", "[]", "unnest(", "list_", "(len(", "xor(", "arg_min(")
            if tok in sql]
    if left:
        raise ValueError(f"excerpt statement: no {dialect.name} spelling for {', '.join(left)}")
    return sql
