"""The SQL of retrieval (Sec. IV-F): two-stage, traversal and multi-probe; and clustering.

Every value is a bound parameter (``$n``). The only text generated into the SQL is the list of
word columns ``w0 .. w{W-1}`` (``store.schema.word_columns``: W = ceil(K/128) HUGEINT words in a
vault, format 6; ceil(K/64) 64-bit words in the lake), the parameter numbers, window numbers and
the integer K, all derived from integers.

One statement per search (``ranked_statement``, run by ``nearest_recordings``): every query
window, the category filter (stage 1), the ranking (stage 2, eq. 16) and, for a caller without
a ``store.labels.RecordingLabels``, the labels; the best window pair per recording is then
picked in Python from the at most L ranked pairs (``best_pairs``). A vault handle holds the
labels (session 21: the join below cost more than the ranking at 10k rows, 3.1 vs 1.7 ms CPU,
docs/measure_labels.py), so its statement stops at ``top_rows``. For K = 384, W = 3, a query
of one window, two-stage (``window_sql``), with the labels::

    WITH top_rows AS (
        SELECT c.recording_id, c.win, 0 AS qw,
               bit_count(xor(c.w0, $2::HUGEINT))::FLOAT + ... AS dist
        FROM codes AS c WHERE c.category IN ($5::SMALLINT)                -- stage 1
        ORDER BY dist, recording_id, win LIMIT $1)
    SELECT t.recording_id, t.dist, t.qw, t.win, r.name, r.category
    FROM top_rows AS t LEFT JOIN recordings AS r ON r.id = t.recording_id

A query of several windows (``windows_sql``) binds its windows as list parameters, one row per
(window, probed category) in a table ``q`` joined to ``codes`` on the category (traversal: a
cross join): the statement's text, and so DuckDB's bind and optimize time, does not grow with
the windows. Measured (docs/measure_statement_cost.py, 10k rows, a 10 s recording's 10 windows,
two-stage, one thread, load ~4.5): the former text with one distance column per window
(``search_sql``) took 12.9 ms CPU, of which DuckDB's profile puts 7.0 ms in binding and 6.3 ms
in the optimizer; this one 3.8 ms (0.8 + 0.8). Grouping by recording in SQL (a hash aggregate
and two window aggregates) made a one-window search 4.8 ms CPU against 3.1 ms without; over
at most L rows Python does it in well under a millisecond.

``top_rows`` is a top-L heap over the scan; when its pairs do not hold ``top`` recordings (many
windows per recording) L grows x4 in a new statement, and past ``GROUPED_FALLBACK_ROWS`` every
candidate pair is grouped in SQL (``search_sql(grouped=True)``; exact, see
``nearest_recordings``). Candidate counts come from per-category row counts the vault reads once
per open (``Vault._category_rows``): no ``count(*)`` per query.

Session 22 (issue 13): the ranked statements sum the words' bit counts as FLOAT
(``ranking_distance``: DuckDB checks every INTEGER addition for overflow; the values are the
same integers), the vault's rows come in the ranking's order and ``first_pairs`` takes the
first ``top`` recordings in one pass, and ``auto`` on an index of at most a row group of
(row, query window) pairs answers both its stages with one statement (``nearest_both``).

Not adopted, measured: SQL ``PREPARE`` / ``EXECUTE`` on the reused connection (DuckDB's Python
client has no prepared-statement object; ``EXECUTE`` with the values as literals): 2.55 ms CPU
against 3.07 for a one-window search at 10k rows (same script), worth a per-connection cache of
statement names only if the label join's ~1.1 ms goes first (same script).

Timings (``SearchResult.timings``): ``hamming_stage`` is the time of every statement the search
ran (one, unless L had to grow; plus a ``SET threads`` when ``threads_for`` changes its choice);
``category_stage`` is 0: the filter runs inside the statement (DuckDB pushes it into the scan
and skips row groups whose ``category`` zone map excludes it, which only helps if rows are
clustered by category, as ``compact`` ensures).

``rows_sql`` / ``grouped_sql`` / ``best_per_recording`` / ``count_sql`` are the former
per-window statements, kept as the reference the one statement is tested against
(tests/test_search_statement.py) and for the row-group pruning test; ``search_sql`` without
``grouped`` is the former one-statement text (per-window distance columns, grouped in SQL).

BER = dist / K is computed from the exact integer distance.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import duckdb

from store.schema import ROW_GROUP_ROWS, codes_ddl, key_columns, word_bit_count, word_columns
from store.sql_dialects import DUCKDB, Dialect

__all__ = ["distance_expr", "search_sql", "search_params", "probe_groups", "nearest_recordings", "Nearest",
           "best_pairs", "first_pairs", "ranking_distance", "nearest_both", "auto_one_scan",
           "unpack_key", "threads_for", "set_threads",
           "rows_sql", "grouped_sql", "best_per_recording", "count_sql", "compact",
           "needs_compaction"]


def distance_expr(K: int, first_param: int = 1, alias: str = "c",
                  dialect: Dialect = DUCKDB) -> str:
    """``bit_count(xor(c.w0, $1::HUGEINT))::INTEGER + ...``: Hamming distance in bits to the
    query. The cast matters: DuckDB < 2 types bit_count as TINYINT, and K > 127 overflows it.
    ``dialect``: the engine's spelling and word columns (``store.sql_dialects``)."""
    return " + ".join(
        dialect.hamming(f"{alias}.{col}", dialect.param(first_param + i, "WORD"))
        for i, col in enumerate(dialect.word_columns(K)))


def _category_filter(first_param: int, n_categories: int | None,
                     dialect: Dialect = DUCKDB) -> str:
    if n_categories is None:
        return ""
    if n_categories < 1:
        raise ValueError("at least one category to probe")
    return "WHERE " + dialect.in_list("c.category", first_param, n_categories, "SMALLINT")


def rows_sql(K: int, n_categories: int | None, dialect: Dialect = DUCKDB) -> str:
    """Top-L index rows of one query window (the fast path). Parameters: the W query words, then
    the ``n_categories`` category ids (none for traversal), then L."""
    W = len(dialect.word_columns(K))
    where = _category_filter(W + 1, n_categories, dialect)
    limit_param = W + 1 + (n_categories or 0)
    return (
        "SELECT c.recording_id, c.win,\n"
        f"       {distance_expr(K, 1, dialect=dialect)} AS dist\n"
        "FROM codes AS c\n"
        f"{where}\n"
        f"ORDER BY dist, c.recording_id, c.win LIMIT {dialect.limit(limit_param)}"
    )


def grouped_sql(K: int, n_categories: int | None, dialect: Dialect = DUCKDB) -> str:
    """Best window per recording, top N recordings (the exact fallback). Parameters as
    ``rows_sql`` with N last."""
    W = len(dialect.word_columns(K))
    where = _category_filter(W + 1, n_categories, dialect)
    limit_param = W + 1 + (n_categories or 0)
    dist, win = dialect.qualified("d", "dist"), dialect.qualified("d", "win")
    key = f"{dialect.cast(dist, 'BIGINT')} * 4294967296 + {win}"
    return (
        "WITH d AS (\n"
        "    SELECT c.recording_id, c.win,\n"
        f"           {distance_expr(K, 1, dialect=dialect)} AS dist\n"
        "    FROM codes AS c\n"
        f"    {where}\n"
        ")\n"
        f"SELECT recording_id, {dialect.arg_min(win, key)} AS win,\n"
        f"       min({dist}) AS dist\n"
        "FROM d GROUP BY recording_id\n"
        f"ORDER BY dist, recording_id LIMIT {dialect.limit(limit_param)}"
    )


#: rows_sql's L starts at max(FIRST_L_FACTOR * top, 32) and grows x4 until the L rows hold
#: ``top`` distinct recordings; beyond GROUPED_FALLBACK_ROWS the grouped statement is used.
FIRST_L_FACTOR = 4
GROUPED_FALLBACK_ROWS = 65_536
#: the first L of ``nearest_recordings`` is at least this
MIN_FIRST_L = 32


def best_per_recording(con: duckdb.DuckDBPyConnection, K: int, words: list[int],
                       categories: list[int] | None, top: int,
                       dialect: Dialect = DUCKDB) -> list[tuple[int, int, int]]:
    """``[(recording_id, win, dist)]``: the ``top`` recordings nearest one query window, each by
    its best window, ordered by (dist, recording_id).

    Exact: the rows come sorted by (dist, recording_id, win); a recording first seen at row j has
    its best window there, and one absent from the first L rows ranks after all of them. So once
    the first L rows hold ``top`` distinct recordings (or are all the rows), they decide the top.
    The top-N scan lets DuckDB keep a heap and fetch the words late, far cheaper than grouping
    every candidate row (measured at 1M rows: ~100 ms vs ~580 ms for traversal).
    """
    cats = [] if categories is None else [int(c) for c in categories]
    words = dialect.word_values(words)
    n_cat = None if categories is None else len(cats)
    L = max(FIRST_L_FACTOR * top, 32)
    while L <= GROUPED_FALLBACK_ROWS:
        rows = con.execute(rows_sql(K, n_cat, dialect),
                           dialect.bind([*words, *cats, L])).fetchall()
        seen: dict[int, tuple[int, int]] = {}
        for rid, win, dist in rows:
            if rid not in seen:
                seen[rid] = (int(win), int(dist))
                if len(seen) == top:
                    break
        if len(seen) >= top or len(rows) < L:
            return [(int(r), w, d) for r, (w, d) in seen.items()]
        L *= 4
    rows = con.execute(grouped_sql(K, n_cat, dialect),
                       dialect.bind([*words, *cats, top])).fetchall()
    return [(int(r), int(w), int(d)) for r, w, d in rows]


# ----------------------------------------------------------------------------- one statement
#: a query window's number and a stored window's number are packed under the distance into one
#: BIGINT sort key: (dist << 48) | (query window << 32) | stored window
_QW_SHIFT = 4294967296            # 2**32
_DIST_SHIFT = 281474976710656     # 2**48
MAX_QUERY_WINDOWS = 65_536


#: windows that probe the same categories: (their numbers, how many categories they probe)
ProbeGroup = tuple[tuple[int, ...], int]


def probe_groups(probes: list[list[int]] | None, n_windows: int) -> list[ProbeGroup] | None:
    """The query windows grouped by the set of categories they probe (first appearance order);
    None for traversal (every row, one group of every window)."""
    if probes is None:
        return None
    groups: dict[tuple[int, ...], list[int]] = {}
    for qw in range(n_windows):
        groups.setdefault(tuple(sorted({int(c) for c in probes[qw]})), []).append(qw)
    return [(tuple(ws), len(cats)) for cats, ws in groups.items()]


def _group_pairs(K: int, windows: Sequence[int], first_cat_param: int | None,
                 n_categories: int) -> str:
    """(row, nearest window of the group) pairs of one probe group: a scan of its categories,
    the distance to each of its windows (their words at ``$3 + W * window``), the least, and the
    first window at that distance."""
    W = len(word_columns(K))
    cols = ",\n               ".join(
        f"{distance_expr(K, 3 + W * qw)} AS d{qw}" for qw in windows)
    where = ""
    if first_cat_param is not None:
        cats = ", ".join(f"${first_cat_param + i}::SMALLINT" for i in range(n_categories))
        where = f"\n        WHERE c.category IN ({cats})"
    if len(windows) == 1:
        dist, qw = f"d{windows[0]}", f"{windows[0]}"
    else:
        dist = f"least({', '.join(f'd{w}' for w in windows)})"
        qw = "CASE " + " ".join(f"WHEN d{w} = dist THEN {w}" for w in windows) + " END"
    return (f"SELECT recording_id, win, dist, {qw} AS qw FROM (\n"
            f"    SELECT *, {dist} AS dist FROM (\n"
            f"        SELECT c.recording_id, c.win,\n               {cols}\n"
            f"        FROM codes AS c{where}))")


def _pairs_cte(K: int, n_windows: int, groups: Sequence[ProbeGroup] | None) -> str:
    """``m``: each candidate row with its distance to the nearest query window that probes its
    category, one scan per probe group (UNION ALL: a row of two groups appears twice, harmless
    to the ranking). Parameters: ``$3 ..`` the W words of every window, then each group's
    categories."""
    if groups is None:
        return f"m AS (\n{_group_pairs(K, range(n_windows), None, 0)}\n)"
    p = 3 + len(word_columns(K)) * n_windows
    parts = []
    for windows, n_cat in groups:
        parts.append(_group_pairs(K, windows, p, n_cat))
        p += n_cat
    return "m AS (\n" + "\nUNION ALL\n".join(parts) + "\n)"


def search_sql(K: int, n_windows: int, groups: Sequence[ProbeGroup] | None, *,
               grouped: bool = False) -> str:
    """The whole per-window search of one query as one statement.

    ``n_windows`` query windows; ``groups``: the windows grouped by the categories they probe
    (``probe_groups``; None: every row, traversal). Parameters: ``$1`` L (rows ranked),
    ``$2`` top, then ``search_params``' words and categories.

    ``top_rows`` are the L (row, window) pairs nearest the query, ordered by (dist,
    recording_id, query window, window): DuckDB keeps a top-L heap over the scans and fetches
    the words late. ``grouped`` ranks every candidate pair instead (the exact fallback when L
    would be too large). Each recording's best pair is its smallest packed key
    (``unpack_key``); the labels come from ``recordings`` in the same statement; ``n_rows`` /
    ``n_recordings`` (window aggregates, taken before the LIMIT) let the caller check that the
    L rows decided the top. Columns: recording_id, key, name, category, n_rows, n_recordings."""
    if n_windows < 1 or n_windows > MAX_QUERY_WINDOWS:
        raise ValueError(f"1 .. {MAX_QUERY_WINDOWS} query windows, not {n_windows}")
    if groups is not None:
        covered = sorted(w for ws, _ in groups for w in ws)
        if covered != list(range(n_windows)) or min(n for _, n in groups) < 1:
            raise ValueError("every query window in one probe group of at least one category")
    cands = "SELECT recording_id, win, dist, qw FROM m"
    top_rows = (f"{cands} WHERE $1::BIGINT > 0" if grouped
                else f"{cands}\n    ORDER BY dist, recording_id, qw, win LIMIT $1")
    return (
        f"WITH {_pairs_cte(K, n_windows, groups)},\n"
        f"top_rows AS (\n    {top_rows}\n)\n"
        + (_group_then_label() if grouped else _label_then_group()))


# ----------------------------------------------------------------------------- the fast path
#: the type each word's bit count is summed in by the ranked statements (``ranking_distance``)
RANK_SUM_TYPE = "FLOAT"


def ranking_distance(K: int, first_param: int | None) -> str:
    """The Hamming distance of the ranked statements: ``bit_count(xor(c.w0, $n::HUGEINT))::FLOAT
    + ...`` (``first_param`` None: against the columns ``q.q0 ..`` of the query table; the count
    spelt by ``store.schema.word_bit_count``).

    Why FLOAT rather than ``distance_expr``'s INTEGER (issue 13): DuckDB checks every INTEGER
    addition for overflow, and over a 10 s query's traversal (10 windows x 10k rows, 6 words)
    those checked additions were the largest single cost of the statement; a float sum of the
    same counts took ~0.8x the CPU (measured, docs/results/bench.md, session 22). The value is
    the same: each count is at most 128 and the sum at most K, integers a FLOAT holds exactly
    (up to 2**24) and adds without rounding, so the order and the ties are the INTEGER sum's;
    callers read it back with ``int()``. (``bit_count`` itself is typed TINYINT, which a sum
    over K > 127 bits would overflow: hence a cast at all.)"""
    if first_param is None:
        terms = (word_bit_count(f"xor(c.{col}, q.q{i})") for i, col in enumerate(word_columns(K)))
    else:
        terms = (word_bit_count(f"xor(c.{col}, ${first_param + i}::{DUCKDB.type('WORD')})")
                 for i, col in enumerate(word_columns(K)))
    return " + ".join(f"{t}::{RANK_SUM_TYPE}" for t in terms)


#: the labels of the ranked pairs, joined in the same statement (no label lookup afterwards)
_LABEL_ROWS = ("SELECT t.recording_id, t.dist, t.qw, t.win, r.name, r.category\n"
               "FROM top_rows AS t LEFT JOIN recordings AS r ON r.id = t.recording_id")


def ranked_statement(K: int, words: list[list[int]], probes: list[list[int]] | None,
                     L: int, *, labels: bool = True) -> tuple[str, list]:
    """The statement of one search (not grouped) and its parameters: the L (row, query window)
    pairs nearest the query in (dist, recording_id, query window, window) order, each with its
    recording's labels; columns recording_id, dist, qw, win, name, category (``best_pairs``
    ranks them). One window: a scan of its categories (``window_sql``). Several windows: the
    windows are rows of a parameter table joined to ``codes`` (``windows_sql``). ``labels``
    False: without the join to ``recordings`` (columns recording_id, dist, qw, win), for a
    caller that holds the labels (``store.labels``)."""
    if len(words) == 1:
        cats = None if probes is None else sorted({int(c) for c in probes[0]})
        return (window_sql(K, None if cats is None else len(cats), labels=labels),
                [int(L), *DUCKDB.word_values(words[0]), *(cats or [])])
    return (windows_sql(K, traversal=probes is None, labels=labels),
            windows_params(words, probes, L))


def window_sql(K: int, n_categories: int | None, *, labels: bool = True,
               category: bool = False) -> str:
    """The ranked pairs of a query of one window: one scan of its categories (``None``: every
    row), no subquery (a flat statement binds ~0.3 ms faster than ``_pairs_cte``'s nesting,
    measured at 10k rows). Parameters: ``$1`` L, ``$2 ..`` the W words, then the categories.
    ``category`` (without labels only): each row's category as a fifth column, also the last
    sort key (it changes no order: (recording_id, win) is unique). Why the sort key: a column
    the ORDER BY does not name makes DuckDB's late materialization rank row ids and join the
    scan again, ~1.2 ms more at 10k rows (EXPLAIN, issue 13 session 22)."""
    where = _category_filter(2 + len(word_columns(K)), n_categories)
    if not labels:
        cat = ", c.category" if category else ""
        return (f"SELECT c.recording_id, {ranking_distance(K, 2)} AS dist, 0 AS qw, c.win{cat}\n"
                f"FROM codes AS c {where}\n"
                f"ORDER BY dist, recording_id, win{cat.replace('c.', '')} LIMIT $1")
    return ("WITH top_rows AS (\n"
            f"    SELECT c.recording_id, c.win, 0 AS qw, {ranking_distance(K, 2)} AS dist\n"
            f"    FROM codes AS c {where}\n"
            "    ORDER BY dist, recording_id, win LIMIT $1\n)\n" + _LABEL_ROWS)


def windows_sql(K: int, traversal: bool, *, labels: bool = True, category: bool = False) -> str:
    """The ranked pairs of a query of several windows. The query windows are a table ``q`` of
    one row per (window, probed category) made from list parameters, joined to ``codes`` on
    the category (traversal: every row, a cross join), one distance expression for every pair.

    Why not one distance column per window (``_pairs_cte``): DuckDB's binder and optimizer
    take time in proportion to the expressions of the statement, ~8 ms of a 10-window query's
    ~12 ms at 10k rows (EXPLAIN ANALYZE, issue 13); here the statement is the same for any
    number of windows. Parameters: ``$1`` L, ``$2 .. $(W+1)`` the list of each word of every
    row of ``q``, then its query window numbers and (not traversal) its categories.
    ``category`` (without labels only): each pair's stored category as a fifth column and the
    last sort key, for ``nearest_both`` (see ``window_sql``)."""
    W = len(word_columns(K))
    cols = [f"unnest(${2 + i}::{DUCKDB.type('WORD')}[]) AS q{i}" for i in range(W)]
    cols.append(f"unnest(${2 + W}::INTEGER[]) AS qw")
    if not traversal:
        cols.append(f"unnest(${3 + W}::SMALLINT[]) AS qcat")
    dist = ranking_distance(K, None)
    join = "CROSS JOIN q" if traversal else "JOIN q ON c.category = q.qcat"
    if not labels:
        return (f"WITH q AS (SELECT {', '.join(cols)})\n"
                f"SELECT c.recording_id, {dist} AS dist, q.qw, c.win"
                f"{', c.category' if category else ''}\n"
                f"FROM codes AS c {join}\n"
                f"ORDER BY dist, recording_id, qw, win{', category' if category else ''} LIMIT $1")
    return (f"WITH q AS (SELECT {', '.join(cols)}),\n"
            "top_rows AS (\n"
            f"    SELECT c.recording_id, c.win, q.qw, {dist} AS dist\n"
            f"    FROM codes AS c {join}\n"
            "    ORDER BY dist, recording_id, qw, win LIMIT $1\n)\n" + _LABEL_ROWS)


def windows_params(words: list[list[int]], probes: list[list[int]] | None, L: int) -> list:
    """``windows_sql``'s parameters: one row of ``q`` per (window, distinct probed category)."""
    bound = [DUCKDB.word_values(w) for w in words]
    W = len(bound[0])
    cols: list[list[int]] = [[] for _ in range(W)]
    qws: list[int] = []
    cats: list[int] = []
    for qw, w in enumerate(bound):
        for c in [None] if probes is None else sorted({int(c) for c in probes[qw]}):
            qws.append(qw)
            for i in range(W):
                cols[i].append(w[i])
            if c is not None:
                cats.append(c)
    return [int(L), *cols, qws, *([] if probes is None else [cats])]


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
                  top: int) -> tuple[list, list[ProbeGroup] | None]:
    """The parameters of ``search_sql`` and the probe groups to build it with."""
    groups = probe_groups(probes, len(words))
    params: list = [int(L), int(top)]
    for w in words:
        params += DUCKDB.word_values(w)
    for windows, _ in groups or []:
        params += sorted({int(c) for c in probes[windows[0]]})
    return params, groups


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
                       probes: list[list[int]] | None, top: int, labels=None,
                       ) -> tuple[list[Nearest], list[float]]:
    """The ``top`` recordings nearest any query window, each by its best window pair (smallest
    (dist, query window, window)), ordered by (dist, recording_id); and the time of each
    statement run.

    Exact: ``ranked_statement`` returns the first (row, window) pairs in (dist, recording_id,
    query window, window) order, so a recording among them has its best pair among them, and a
    recording absent from them ranks after all of them. One statement decides when the pairs
    hold ``top`` recordings (or are every candidate pair); otherwise L grows x4 and, past
    ``GROUPED_FALLBACK_ROWS``, every candidate pair is grouped in SQL (``search_sql``). A top-L
    heap is far cheaper than grouping every candidate row (measured at 1M rows: ~100 ms vs
    ~580 ms for traversal).

    A query of n windows ranks L * n pairs: the row at rank r (by its best pair) has at most
    (r - 1) * n pairs before its best one, so those pairs hold the best pair of each of the L
    first rows, and decide whenever L rows by their nearest window did (the per-window-column
    form ``search_sql`` ranks such rows).

    ``labels`` (a ``store.labels.RecordingLabels``): the names and categories come from it,
    after the ranking, instead of from a join in the statement (issue 13: the join cost more
    than the ranking at 10k rows); its own statements, if any, are timed with the search's."""
    L = max(FIRST_L_FACTOR * top, MIN_FIRST_L)
    seconds: list[float] = []
    while L <= GROUPED_FALLBACK_ROWS:
        # a stored row is up to one pair per query window: L rows' worth of pairs (see below)
        pairs = min(L * len(words), max(L, GROUPED_FALLBACK_ROWS))
        sql, params = ranked_statement(K, words, probes, pairs, labels=labels is None)
        t0 = time.perf_counter()
        rows = con.execute(sql, params).fetchall()
        seconds.append(time.perf_counter() - t0)
        # without the label join the rows come in the ranking's order: one pass suffices
        found, n_recordings = (best_pairs(rows, top) if labels is None
                               else first_pairs(rows, top))
        if n_recordings >= top or len(rows) < pairs:
            if labels is not None:
                t0 = time.perf_counter()
                named = labels.of(con, [n.recording_id for n in found])
                for n in found:
                    n.name, n.category = named[n.recording_id]
                seconds.append(time.perf_counter() - t0)
            return found, seconds
        L *= 4
    params, groups = search_params(words, probes, L, top)
    t0 = time.perf_counter()
    rows = con.execute(search_sql(K, len(words), groups, grouped=True), params).fetchall()
    seconds.append(time.perf_counter() - t0)
    return [Nearest(int(r[0]), *unpack_key(r[1]),
                    "" if r[2] is None else str(r[2]), "" if r[3] is None else str(r[3]))
            for r in rows], seconds


def best_pairs(rows: Sequence[tuple], top: int) -> tuple[list[Nearest], int]:
    """The ``top`` recordings of ``ranked_statement``'s rows (in any order), each by its
    smallest (dist, query window, window), ordered by (dist, recording_id); and how many
    distinct recordings the rows hold. Done here rather than by a GROUP BY in the statement:
    DuckDB's hash aggregate and window operators cost ~1 ms CPU of a ~4 ms 10k-row search
    (measured, issue 13), and the rows are at most L. Rows without the labels' columns
    (``ranked_statement(labels=False)``) give empty names, for the caller to fill."""
    best: dict[int, tuple] = {}
    for rid, dist, qw, win, *named in rows:
        key = (int(dist), int(qw), int(win))
        if rid not in best or key < best[rid][0]:
            best[rid] = (key, *(named or (None, None)))
    ranked = sorted(best.items(), key=lambda kv: (kv[1][0][0], kv[0]))[:top]
    return [Nearest(int(rid), *key, "" if name is None else str(name),
                    "" if cat is None else str(cat))
            for rid, (key, name, cat) in ranked], len(best)


def first_pairs(rows: Sequence[tuple], top: int) -> tuple[list[Nearest], int]:
    """``best_pairs`` of rows already in the ranking's order (dist, recording_id, query window,
    window), as ``ranked_statement(labels=False)`` returns them: a recording's first row is its
    best pair, and the recordings' first rows come in (dist, recording_id) order, so the first
    ``top`` distinct recordings are the top and the scan stops there. The count is capped at
    ``top`` (the caller only asks whether the rows held ``top`` recordings). Why: sorting every
    recording of the L * windows rows cost ~0.4 ms per statement of a 10 s query (issue 13)."""
    found: list[Nearest] = []
    seen: set[int] = set()
    for rid, dist, qw, win, *_ in rows:
        if rid not in seen:
            seen.add(rid)
            found.append(Nearest(int(rid), int(dist), int(qw), int(win), "", ""))
            if len(found) == top:
                break
    return found, len(found)


#: ``auto`` answers both its stages with one traversal statement (``nearest_both``) on an
#: index of at most this many rows, when that ranks at most ``AUTO_ONE_SCAN_PAIRS`` pairs
AUTO_ONE_SCAN_ROWS = 32_768
AUTO_ONE_SCAN_PAIRS = ROW_GROUP_ROWS


def auto_one_scan(n_rows: int, n_windows: int) -> bool:
    """Whether ``auto`` ranks every pair once (``nearest_both``) rather than the query's
    categories first and, when nothing there is within tau, every pair in a second statement.

    Why (issue 13): on a small index a statement costs mostly its fixed part (parse, bind,
    optimize: ~1.2 ms CPU), so the traversal costs little more than the two-stage statement,
    and a query that falls back (a 10 s query that is not in the vault, say) ran both: its
    categories were scanned twice. Measured (one DuckDB thread, CPU ms, two-stage / traversal /
    the one statement; load 4.1; ``docs/measure_rank_sum.py --gate 10000:1 10000:10 30000:1
    100000:1``): 10k rows, one window 2.13 / 1.95 / 2.08, ten windows 3.75 / 4.71 / 5.26;
    30k rows, one window 1.47 / 1.81 / 1.90; 100k rows, one window 2.21 / 4.13 / 4.46. So up
    to ~30k rows a match in the category pays 0-1.5 ms more and a fall-back 1.4-3.2 ms less;
    at 100k rows a match pays more (+2.3) than a fall-back saves (-1.9), and beyond (a 1M
    vault: traversal ~3x the two-stage statement) auto keeps its two statements."""
    return 0 < n_rows <= AUTO_ONE_SCAN_ROWS and n_rows * n_windows <= AUTO_ONE_SCAN_PAIRS


def nearest_both(con: duckdb.DuckDBPyConnection, K: int, words: list[list[int]],
                 categories: Sequence[int], top: int, labels,
                 ) -> tuple[list[Nearest] | None, list[Nearest] | None, list[float]]:
    """``auto``'s two answers from one statement: the ``top`` recordings nearest the query
    among the rows of each window's category (``categories[qw]``: what two-stage ranks) and
    among every row (traversal), as ``nearest_recordings`` gives them; None for an answer the
    statement's rows do not decide (the caller then runs its own statement). And the time of
    each statement run (the ranking and the labels).

    Exact: the statement ranks every (row, query window) pair (``windows_sql`` traversal, with
    each row's category) and returns the first pairs in (dist, recording_id, query window,
    window) order. Those of them whose row is in the window's category are, in the same order,
    the first pairs of the two-stage ranking (every two-stage pair before the last of them is a
    traversal pair before it too). So ``first_pairs`` decides each answer, as in
    ``nearest_recordings``, when its pairs hold ``top`` recordings or are all the pairs."""
    L = max(FIRST_L_FACTOR * top, MIN_FIRST_L)
    pairs = min(L * len(words), max(L, GROUPED_FALLBACK_ROWS))
    if len(words) == 1:  # the flat statement (see window_sql)
        sql = window_sql(K, None, labels=False, category=True)
        params = [pairs, *DUCKDB.word_values(words[0])]
    else:
        sql = windows_sql(K, traversal=True, labels=False, category=True)
        params = windows_params(words, None, pairs)
    t0 = time.perf_counter()
    rows = con.execute(sql, params).fetchall()
    seconds = [time.perf_counter() - t0]
    every = len(rows) < pairs
    cats = [int(c) for c in categories]
    answers = []
    for ranked in (rows, [r for r in rows if r[4] == cats[r[2]]]):
        found, n = first_pairs(ranked, top)
        answers.append(found if every or n >= top else None)
    named_ids = {n.recording_id for found in answers if found for n in found}
    if named_ids:
        t0 = time.perf_counter()
        named = labels.of(con, sorted(named_ids))
        for found in answers:
            for n in found or ():
                n.name, n.category = named[n.recording_id]
        seconds.append(time.perf_counter() - t0)
    return answers[1], answers[0], seconds


def nearest_per_window(con, K: int, words: list[list[int]], probes: list[list[int]] | None,
                       top: int, dialect: Dialect) -> tuple[list[Nearest], list[float]]:
    """``nearest_recordings`` for the engines that run one statement per query window (a lake on
    ClickHouse or Spark, ``store.sql_dialects``): each window's ``best_per_recording`` merged by
    the smallest (dist, query window, window), then the labels; and the time of each statement."""
    best: dict[int, tuple[int, int, int]] = {}  # rid -> (dist, query window, window)
    seconds: list[float] = []
    for w, qwords in enumerate(words):
        t0 = time.perf_counter()
        rows = best_per_recording(con, K, qwords, None if probes is None else probes[w], top,
                                  dialect)
        seconds.append(time.perf_counter() - t0)
        for rid, win, dist in rows:
            key = (dist, w, win)
            if rid not in best or key < best[rid]:
                best[rid] = key
    ranked = sorted(best.items(), key=lambda kv: (kv[1][0], kv[0]))[:top]
    labels: dict[int, tuple] = {}
    if ranked:
        from store.sql_dialects import labels_sql

        t0 = time.perf_counter()
        labels = {r[0]: (r[1], r[2]) for r in con.execute(
            labels_sql(dialect), dialect.bind([[rid for rid, _ in ranked]])).fetchall()}
        seconds.append(time.perf_counter() - t0)
    return [Nearest(rid, dist, qw, win, *("" if x is None else str(x)
                                          for x in labels.get(rid, ("", ""))))
            for rid, (dist, qw, win) in ranked], seconds


def count_sql(n_categories: int | None, dialect: Dialect = DUCKDB) -> str:
    """Stage 1 alone: how many index rows the category filter keeps (``$1 ..`` the categories)."""
    return f"SELECT count(*) FROM codes AS c {_category_filter(1, n_categories, dialect)}"


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
    cols = ", ".join(["recording_id", "win", "category", "start", *word_columns(K),
                      *key_columns(K)])
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
