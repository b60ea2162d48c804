"""The SQL of retrieval (Sec. IV-F): two-stage, traversal and multi-probe; and clustering.

Every value is a bound parameter (``$n``). The only text generated into the SQL is the list of
word columns ``w0 .. w{W-1}``, the parameter numbers and the integer K, all derived from integers.

Per query window the statement is (K = 384, W = 6, two-stage)::

    WITH d AS (
        SELECT c.recording_id, c.win,
               bit_count(xor(c.w0, $1::UBIGINT)) + ... + bit_count(xor(c.w5, $6::UBIGINT)) AS dist
        FROM codes AS c
        WHERE c.category IN ($7::SMALLINT)          -- stage 1 (absent in traversal mode;
    ),                                               --  $7, $8, ... the m probes in multi-probe)
    best AS (                                        -- stage 2: eq. 16 on the survivors,
        SELECT recording_id, min(dist) AS dist,      --  each recording once, by its best window
               arg_min(win, dist::BIGINT * 4294967296 + win) AS win
        FROM d GROUP BY recording_id
        ORDER BY dist, recording_id LIMIT $8
    )
    SELECT b.recording_id, r.name, r.category, b.win, b.dist
    FROM best AS b JOIN recordings AS r ON r.id = b.recording_id
    ORDER BY b.dist, b.recording_id

BER = dist / K is computed from the exact integer distance. The stage-1 filter is a constant
after binding, so DuckDB pushes it into the scan and skips row groups whose ``category`` zone
map excludes it: that only helps if rows are clustered by category, which ``compact`` ensures.
"""

from __future__ import annotations

import duckdb

from store.schema import ROW_GROUP_ROWS, codes_ddl, word_columns

__all__ = ["distance_expr", "search_sql", "count_sql", "compact", "needs_compaction"]


def distance_expr(K: int, first_param: int = 1, alias: str = "c") -> str:
    """``bit_count(xor(c.w0, $1::UBIGINT)) + ...``: Hamming distance in bits to the query."""
    return " + ".join(
        f"bit_count(xor({alias}.{col}, ${first_param + i}::UBIGINT))"
        for i, col in enumerate(word_columns(K)))


def _category_filter(first_param: int, n_categories: int | None) -> str:
    if n_categories is None:
        return ""
    if n_categories < 1:
        raise ValueError("at least one category to probe")
    params = ", ".join(f"${first_param + i}::SMALLINT" for i in range(int(n_categories)))
    return f"WHERE c.category IN ({params})"


def search_sql(K: int, n_categories: int | None) -> str:
    """Ranked search of one query window. Parameters: the W query words, then the
    ``n_categories`` category ids (none for traversal: ``n_categories=None``), then the limit."""
    W = len(word_columns(K))
    where = _category_filter(W + 1, n_categories)
    limit_param = W + 1 + (n_categories or 0)
    return (
        "WITH d AS (\n"
        "    SELECT c.recording_id, c.win,\n"
        f"           {distance_expr(K, 1)} AS dist\n"
        "    FROM codes AS c\n"
        f"    {where}\n"
        "),\n"
        "best AS (\n"
        "    SELECT recording_id, min(dist) AS dist,\n"
        "           arg_min(win, dist::BIGINT * 4294967296 + win) AS win\n"
        "    FROM d GROUP BY recording_id\n"
        f"    ORDER BY dist, recording_id LIMIT ${limit_param}\n"
        ")\n"
        "SELECT b.recording_id, r.name, r.category, b.win, b.dist\n"
        "FROM best AS b JOIN recordings AS r ON r.id = b.recording_id\n"
        "ORDER BY b.dist, b.recording_id"
    )


def count_sql(n_categories: int | None) -> str:
    """Stage 1 alone: how many index rows the category filter keeps (``$1 ..`` the categories)."""
    return f"SELECT count(*) FROM codes AS c {_category_filter(1, n_categories)}"


def needs_compaction(unclustered: int, total: int) -> bool:
    """Re-cluster when the unsorted tail is at least a row group and at least 10% of the rows.
    Below one row group there is nothing to prune, so small vaults are never rewritten."""
    return unclustered >= ROW_GROUP_ROWS and unclustered * 10 >= total


def compact(con: duckdb.DuckDBPyConnection, K: int) -> None:
    """Rewrite ``codes`` ordered by (category, recording_id, win), in one transaction.

    DuckDB keeps insertion order, so afterwards each category occupies a contiguous run of row
    groups and ``WHERE category IN (...)`` skips the others via their zone maps (measured with
    EXPLAIN ANALYZE: "Row Groups Scanned: 2 / 9" at 1M rows, 10 categories, vs 9 / 9 unsorted).
    """
    cols = ", ".join(["recording_id", "win", "category", *word_columns(K)])
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DROP TABLE IF EXISTS codes_compact")
        con.execute(codes_ddl(K, "codes_compact"))
        con.execute(f"INSERT INTO codes_compact ({cols}) SELECT {cols} FROM codes "
                    "ORDER BY category, recording_id, win")
        con.execute("DROP TABLE codes")
        con.execute("ALTER TABLE codes_compact RENAME TO codes")
        con.execute("UPDATE vault_meta SET codes_unclustered = 0")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT")
