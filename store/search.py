"""The SQL of retrieval (Sec. IV-F): two-stage, traversal and multi-probe; and clustering.

Every value is a bound parameter (``$n``). The only text generated into the SQL is the list of
word columns ``w0 .. w{W-1}``, the parameter numbers, window numbers and the integer K, all
derived from integers.

One statement per search (``search_sql``, run by ``nearest_recordings``): every query window,
the category filter (stage 1), the ranking (stage 2, eq. 16), the best window per recording and
the labels. For K = 384, W = 6, a query of two windows, two-stage::

    WITH d AS (SELECT c.recording_id, c.win,
                      bit_count(xor(c.w0, $3::UBIGINT))::INTEGER + ... AS d0,   -- window 0
                      bit_count(xor(c.w0, $9::UBIGINT))::INTEGER + ... AS d1    -- window 1
               FROM codes AS c WHERE c.category IN ($15::SMALLINT)),            -- stage 1
    m AS (... least(d0, d1) AS dist, the first window at that distance AS qw ...),
    top_rows AS (SELECT ... FROM m ORDER BY dist, recording_id, qw, win LIMIT $1),
    best AS (min packed (dist, qw, win) per recording, top $2 by (dist, recording_id))
    SELECT ..., r.name, r.category FROM best LEFT JOIN recordings AS r ...

Windows that probe different categories (multi-probe, or two-stage with windows of different
classes) get ``CASE WHEN c.category IN (their own) THEN ... END`` per column. ``top_rows`` is a
top-L heap over one scan; when its L rows do not hold ``top`` recordings (many windows per
recording) L grows x4 in a new statement, and past ``GROUPED_FALLBACK_ROWS`` every candidate
row is grouped (exact, see ``nearest_recordings``). Candidate counts come from per-category row
counts the vault reads once per open (``Vault._category_rows``): no ``count(*)`` per query.

Timings (``SearchResult.timings``): ``hamming_stage`` is the time of every statement the search
ran (one, unless L had to grow); ``category_stage`` is 0: the filter runs inside the statement
(DuckDB pushes it into the scan and skips row groups whose ``category`` zone map excludes it,
which only helps if rows are clustered by category, as ``compact`` ensures).

``rows_sql`` / ``grouped_sql`` / ``best_per_recording`` / ``count_sql`` are the former
per-window statements, kept as the reference the one statement is tested against.

BER = dist / K is computed from the exact integer distance.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import duckdb

from store.schema import ROW_GROUP_ROWS, codes_ddl, word_columns

__all__ = ["distance_expr", "search_sql", "search_params", "nearest_recordings", "Nearest",
           "unpack_key", "threads_for", "set_threads",
           "rows_sql", "grouped_sql", "best_per_recording", "count_sql", "compact",
           "needs_compaction"]


def distance_expr(K: int, first_param: int = 1, alias: str = "c") -> str:
    """``bit_count(xor(c.w0, $1::UBIGINT))::INTEGER + ...``: Hamming distance in bits to the
    query. The cast matters: DuckDB < 2 types bit_count as TINYINT, and K > 127 overflows it."""
    return " + ".join(
        f"bit_count(xor({alias}.{col}, ${first_param + i}::UBIGINT))::INTEGER"
        for i, col in enumerate(word_columns(K)))


def _category_filter(first_param: int, n_categories: int | None) -> str:
    if n_categories is None:
        return ""
    if n_categories < 1:
        raise ValueError("at least one category to probe")
    params = ", ".join(f"${first_param + i}::SMALLINT" for i in range(int(n_categories)))
    return f"WHERE c.category IN ({params})"


def rows_sql(K: int, n_categories: int | None) -> str:
    """Top-L index rows of one query window (the fast path). Parameters: the W query words, then
    the ``n_categories`` category ids (none for traversal), then L."""
    W = len(word_columns(K))
    where = _category_filter(W + 1, n_categories)
    limit_param = W + 1 + (n_categories or 0)
    return (
        "SELECT c.recording_id, c.win,\n"
        f"       {distance_expr(K, 1)} AS dist\n"
        "FROM codes AS c\n"
        f"{where}\n"
        f"ORDER BY dist, c.recording_id, c.win LIMIT ${limit_param}"
    )


def grouped_sql(K: int, n_categories: int | None) -> str:
    """Best window per recording, top N recordings (the exact fallback). Parameters as
    ``rows_sql`` with N last."""
    W = len(word_columns(K))
    where = _category_filter(W + 1, n_categories)
    limit_param = W + 1 + (n_categories or 0)
    return (
        "WITH d AS (\n"
        "    SELECT c.recording_id, c.win,\n"
        f"           {distance_expr(K, 1)} AS dist\n"
        "    FROM codes AS c\n"
        f"    {where}\n"
        ")\n"
        "SELECT recording_id, arg_min(win, dist::BIGINT * 4294967296 + win) AS win,\n"
        "       min(dist) AS dist\n"
        "FROM d GROUP BY recording_id\n"
        f"ORDER BY dist, recording_id LIMIT ${limit_param}"
    )


#: rows_sql's L starts at max(FIRST_L_FACTOR * top, 32) and grows x4 until the L rows hold
#: ``top`` distinct recordings; beyond GROUPED_FALLBACK_ROWS the grouped statement is used.
FIRST_L_FACTOR = 4
GROUPED_FALLBACK_ROWS = 65_536
#: the first L of ``nearest_recordings`` is at least this
MIN_FIRST_L = 32


def best_per_recording(con: duckdb.DuckDBPyConnection, K: int, words: list[int],
                       categories: list[int] | None, top: int) -> list[tuple[int, int, int]]:
    """``[(recording_id, win, dist)]``: the ``top`` recordings nearest one query window, each by
    its best window, ordered by (dist, recording_id).

    Exact: the rows come sorted by (dist, recording_id, win); a recording first seen at row j has
    its best window there, and one absent from the first L rows ranks after all of them. So once
    the first L rows hold ``top`` distinct recordings (or are all the rows), they decide the top.
    The top-N scan lets DuckDB keep a heap and fetch the words late, far cheaper than grouping
    every candidate row (measured at 1M rows: ~100 ms vs ~580 ms for traversal).
    """
    cats = [] if categories is None else [int(c) for c in categories]
    n_cat = None if categories is None else len(cats)
    L = max(FIRST_L_FACTOR * top, 32)
    while L <= GROUPED_FALLBACK_ROWS:
        rows = con.execute(rows_sql(K, n_cat), [*words, *cats, L]).fetchall()
        seen: dict[int, tuple[int, int]] = {}
        for rid, win, dist in rows:
            if rid not in seen:
                seen[rid] = (int(win), int(dist))
                if len(seen) == top:
                    break
        if len(seen) >= top or len(rows) < L:
            return [(int(r), w, d) for r, (w, d) in seen.items()]
        L *= 4
    rows = con.execute(grouped_sql(K, n_cat), [*words, *cats, top]).fetchall()
    return [(int(r), int(w), int(d)) for r, w, d in rows]


# ----------------------------------------------------------------------------- one statement
#: a query window's number and a stored window's number are packed under the distance into one
#: BIGINT sort key: (dist << 48) | (query window << 32) | stored window
_QW_SHIFT = 4294967296            # 2**32
_DIST_SHIFT = 281474976710656     # 2**48
MAX_QUERY_WINDOWS = 65_536


def _window_distance(K: int, qw: int, first_param: int, cat_params: list[str] | None) -> str:
    """Distance of a row to query window ``qw`` (its words from ``$first_param``); NULL for a
    row outside the window's own categories when windows probe different categories."""
    d = distance_expr(K, first_param)
    if cat_params is None:
        return f"{d} AS d{qw}"
    return f"CASE WHEN c.category IN ({', '.join(cat_params)}) THEN {d} END AS d{qw}"


def _distances_cte(K: int, n_categories: list[int] | None, n_windows: int,
                   shared_categories: bool) -> str:
    """``d``: each candidate row's distance to every query window. Parameters from ``$3``: the
    W words of each window, each followed by its categories (unless shared: then once, last)."""
    W = len(word_columns(K))
    p = 3
    cols, every_cat = [], []
    for qw in range(n_windows):
        first = p
        p += W
        own = None
        if n_categories is not None and not shared_categories:
            own = [f"${p + i}::SMALLINT" for i in range(n_categories[qw])]
            every_cat += own
            p += n_categories[qw]
        cols.append(_window_distance(K, qw, first, own))
    if n_categories is not None and shared_categories:
        every_cat = [f"${p + i}::SMALLINT" for i in range(n_categories[0])]
    where = f"\n    WHERE c.category IN ({', '.join(every_cat)})" if every_cat else ""
    body = ",\n           ".join(cols)
    return (f"d AS (\n    SELECT c.recording_id, c.win,\n           {body}\n"
            f"    FROM codes AS c{where}\n)")


def _nearest_window_cte(n_windows: int) -> str:
    """``m``: per row, its distance to the nearest query window and that window's number (the
    first of equals), so one ranked scan serves every window of the query."""
    if n_windows == 1:
        return "m AS (SELECT recording_id, win, d0 AS dist, 0 AS qw FROM d)"
    ds = ", ".join(f"d{i}" for i in range(n_windows))
    which = " ".join(f"WHEN d{i} = dist THEN {i}" for i in range(n_windows))
    return ("m AS (\n    SELECT recording_id, win, dist, CASE " + which + " END AS qw\n"
            f"    FROM (SELECT *, least({ds}) AS dist FROM d)\n)")


def search_sql(K: int, n_windows: int, n_categories: int | Sequence[int] | None, *,
               shared_categories: bool = True, grouped: bool = False) -> str:
    """The whole per-window search of one query as one statement.

    ``n_windows`` query windows; ``n_categories`` categories probed per window (one number for
    all, or one per window; None: every row, traversal); ``shared_categories``: every window
    probes the same categories (passed once). Parameters: ``$1`` L (rows ranked), ``$2`` top,
    then ``search_params``' words and categories.

    ``top_rows`` are the L rows nearest any window, ordered by (dist, recording_id, query
    window, window): DuckDB keeps a top-L heap over one scan and fetches the words late.
    ``grouped`` ranks every candidate row instead (the exact fallback when L would be too
    large). Each recording's best pair is its smallest packed key (``unpack_key``); the labels
    come from ``recordings`` in the same statement; ``n_rows`` / ``n_recordings`` (window
    aggregates, taken before the LIMIT) let the caller check that the L rows decided the top.
    Columns: recording_id, key, name, category, n_rows, n_recordings."""
    if n_windows < 1 or n_windows > MAX_QUERY_WINDOWS:
        raise ValueError(f"1 .. {MAX_QUERY_WINDOWS} query windows, not {n_windows}")
    if isinstance(n_categories, int):
        n_categories = [n_categories] * n_windows
    if n_categories is not None:
        n_categories = [int(n) for n in n_categories]
        if len(n_categories) != n_windows or min(n_categories) < 1:
            raise ValueError("at least one category to probe, for every query window")
        if shared_categories and len(set(n_categories)) > 1:
            raise ValueError("shared categories: the same number for every window")
    per_window = n_categories is not None and not shared_categories and n_windows > 1
    cands = "SELECT recording_id, win, dist, qw FROM m" + (
        " WHERE dist IS NOT NULL" if per_window else "")  # NULL: in no window's categories
    top_rows = (f"{cands} {'AND' if per_window else 'WHERE'} $1::BIGINT > 0" if grouped
                else f"{cands}\n    ORDER BY dist, recording_id, qw, win LIMIT $1")
    return (
        f"WITH {_distances_cte(K, n_categories, n_windows, shared_categories)},\n"
        f"{_nearest_window_cte(n_windows)},\n"
        f"top_rows AS (\n    {top_rows}\n)\n"
        + (_group_then_label() if grouped else _label_then_group()))


#: each recording's smallest (dist, query window, window), packed (``unpack_key``)
_KEY = f"min((t.dist::BIGINT * 65536 + t.qw) * {_QW_SHIFT} + t.win)"
#: window aggregates over the grouped ``top_rows``, taken before the LIMIT
_TALLY = "sum(count(*)) OVER () AS n_rows, count(*) OVER () AS n_recordings"


def _label_then_group() -> str:
    """The L ranked rows joined to their labels, then one row per recording: one operator
    fewer than grouping first (measured ~0.7 ms CPU of ~5 at 10k rows)."""
    return (
        f"SELECT t.recording_id, {_KEY} AS key,\n"
        "       any_value(r.name) AS name, any_value(r.category) AS category,\n"
        f"       {_TALLY}\n"
        "FROM top_rows AS t LEFT JOIN recordings AS r ON r.id = t.recording_id\n"
        "GROUP BY t.recording_id\n"
        f"ORDER BY key // {_DIST_SHIFT}, t.recording_id LIMIT $2"
    )


def _group_then_label() -> str:
    """Every candidate row (the fallback): group first, label only the ``top`` recordings."""
    return (
        ", best AS (\n"
        f"    SELECT t.recording_id, {_KEY} AS key, {_TALLY}\n"
        "    FROM top_rows AS t GROUP BY t.recording_id\n"
        f"    ORDER BY key // {_DIST_SHIFT}, t.recording_id LIMIT $2\n"
        ")\n"
        "SELECT b.recording_id, b.key, r.name, r.category, b.n_rows, b.n_recordings\n"
        "FROM best AS b LEFT JOIN recordings AS r ON r.id = b.recording_id\n"
        f"ORDER BY b.key // {_DIST_SHIFT}, b.recording_id"
    )


def unpack_key(key: int) -> tuple[int, int, int]:
    """(dist, query window, window) from a packed key of ``search_sql``."""
    key = int(key)
    return key // _DIST_SHIFT, key // _QW_SHIFT % 65536, key % _QW_SHIFT


def search_params(words: list[list[int]], probes: list[list[int]] | None, L: int,
                  top: int) -> tuple[list, bool]:
    """The parameters of ``search_sql`` and whether the windows share their categories."""
    shared = probes is None or all(p == probes[0] for p in probes)
    params: list = [int(L), int(top)]
    for qw, w in enumerate(words):
        params += [int(x) for x in w]
        if probes is not None and not shared:
            params += [int(c) for c in probes[qw]]
    if probes is not None and shared:
        params += [int(c) for c in probes[0]]
    return params, shared


def threads_for(scan_rows: int) -> int:
    """DuckDB threads for a search that scans ``scan_rows`` index rows: one below a row group
    (DuckDB splits a scan by row group, so a second thread only adds hand-offs, which cost most
    when the other core is busy: measured ~25 % on the median at 10k rows under load), else
    every core."""
    return 1 if scan_rows < ROW_GROUP_ROWS else max(1, os.cpu_count() or 1)


def set_threads(con: duckdb.DuckDBPyConnection, threads: int) -> float:
    """``SET threads`` (a setting, not a query; sent only when the choice changes); seconds."""
    t0 = time.perf_counter()
    con.execute(f"SET threads = {int(threads)}")
    return time.perf_counter() - t0


@dataclass
class Nearest:
    """One recording of a search: its best (query window, stored window) pair and its labels."""

    recording_id: int
    dist: int
    query_window: int
    window: int
    name: str
    category: str


def nearest_recordings(con: duckdb.DuckDBPyConnection, K: int, words: list[list[int]],
                       probes: list[list[int]] | None, top: int,
                       ) -> tuple[list[Nearest], list[float]]:
    """The ``top`` recordings nearest any query window, each by its best window pair (smallest
    (dist, query window, window)), ordered by (dist, recording_id); and the time of each
    statement run.

    Exact: the L rows come sorted by (dist, recording_id, query window, window), so a recording
    first seen at one of them has its best pair there, and a recording absent from them ranks
    after all of them. One statement decides when the L rows hold ``top`` recordings (or are
    every candidate row); otherwise L grows x4 and, past ``GROUPED_FALLBACK_ROWS``, every
    candidate row is ranked. A top-L heap is far cheaper than grouping every candidate row
    (measured at 1M rows: ~100 ms vs ~580 ms for traversal)."""
    n_cat = None if probes is None else [len(p) for p in probes]
    L = max(FIRST_L_FACTOR * top, MIN_FIRST_L)
    seconds: list[float] = []
    while True:
        grouped = L > GROUPED_FALLBACK_ROWS
        params, shared = search_params(words, probes, L, top)
        sql = search_sql(K, len(words), n_cat, shared_categories=shared, grouped=grouped)
        t0 = time.perf_counter()
        rows = con.execute(sql, params).fetchall()
        seconds.append(time.perf_counter() - t0)
        n_rows, n_recs = (int(rows[0][4]), int(rows[0][5])) if rows else (0, 0)
        if grouped or n_recs >= top or n_rows < L:
            return [Nearest(int(r[0]), *unpack_key(r[1]),
                            "" if r[2] is None else str(r[2]), "" if r[3] is None else str(r[3]))
                    for r in rows], seconds
        L *= 4


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
    cols = ", ".join(["recording_id", "win", "category", "start", *word_columns(K)])
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
