"""Batch search on Spark as ONE job: a table of query windows joined to the codes.

Why (issue 14): Spark is for batch work. A statement costs a job (scheduling, a scan of the
Parquet, seconds on a cluster), so answering 100 queries one window at a time would be hundreds
of jobs. Here every query window of the batch is one row of a small table ``query_windows``
(request, query window, the categories it probes or NULL for every row, its INT64 words), and
one statement joins it to ``codes``: each stored window is read once for the whole batch, the
Hamming distances of every pair are summed, and the best (distance, query window, window) per
recording and request is kept, ranked and labelled -- the same top-N the vault file's statement
gives (exact: a recording's best pair is its smallest packed key, ``store.search``). With
``ONE_JOB_CONF`` the statement is one Spark job (tested with Spark's job group).

A *request* is one ``_search_coded`` call that ``Vault.search`` will make: per query, its mode's
probes (``auto`` asks two: the query's categories, and every row in case nothing there is within
tau). ``LakeVault`` keeps the answers and hands each to the search that asks for it, so the
search logic (modes, tau, the fallback, the result) is still ``Vault``'s, run once per query.
Excerpt queries (identification windows with offset voting, the default model's) are batched by
``store.excerpt_batch``, on every lake engine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from store import search as _search
from store.schema import code_word_columns
from store.sql_dialects import SPARK

__all__ = ["Request", "request_key", "requests_for", "batch_sql", "run_batch", "ONE_JOB_CONF"]


@dataclass(frozen=True)
class Request:
    """One ``_search_coded`` call: the query's words, each window's probes (None: every row)."""

    words: tuple[tuple[int, ...], ...]
    probes: tuple[tuple[int, ...], ...] | None
    top: int


def request_key(words, probes, top: int) -> Request:
    """The request a ``_search_coded`` call makes (its answer is looked up by this)."""
    return Request(tuple(tuple(int(x) for x in w) for w in words),
                   None if probes is None else tuple(tuple(int(c) for c in p) for p in probes),
                   int(top))


def modes_for(vault, q, mode: str) -> list[str]:
    """The statements' modes ``vault.search(q, mode=mode)`` may run, in order: ``auto`` tries
    two-stage then traversal, except for a long excerpt (traversal only)."""
    if mode != "auto":
        return [mode]
    return ["traversal"] if vault._is_long_excerpt(q) else ["two-stage", "traversal"]


def requests_for(vault, q, mode: str, probe: int, top: int) -> list[Request]:
    """The requests ``vault.search(q, mode=...)`` will make for the coded query ``q``."""
    if q.frames is not None and vault._excerpt_rule() is not None:
        return []  # excerpt search: its own statements
    modes = modes_for(vault, q, mode)
    words = [[int(x) for x in w] for w in q.words]
    out = []
    for m in modes:
        probes = None if m == "traversal" else [
            vault._probes(q, w, m, probe) for w in range(q.n_windows)]
        out.append(request_key(words, probes, top))
    return out


def batch_sql(K: int) -> str:
    """The one statement (Spark SQL) over ``query_windows`` (rq, qw, cats, w0..) and ``codes``;
    ``:p1`` is top. Rows: (rq, rank, recording_id, packed key, name, category), unordered."""
    dist = " + ".join(f"bit_count(c.{w} ^ q.{w})" for w in code_word_columns(K))
    return (
        "WITH pairs AS (\n"
        "    SELECT q.rq, c.recording_id,\n"
        f"           CAST({dist} AS BIGINT) * 281474976710656 + CAST(q.qw AS BIGINT) * 4294967296"
        " + CAST(c.win AS BIGINT) AS key\n"
        "    FROM query_windows AS q JOIN codes AS c\n"
        "      ON q.cats IS NULL OR array_contains(q.cats, CAST(c.category AS INT))\n"
        "), best AS (\n"
        "    SELECT rq, recording_id, min(key) AS key FROM pairs GROUP BY rq, recording_id\n"
        "), ranked AS (\n"
        "    SELECT rq, recording_id, key, row_number() OVER (PARTITION BY rq ORDER BY\n"
        "           shiftright(key, 48), recording_id) AS rank FROM best\n"
        ")\n"
        "SELECT t.rq, t.rank, t.recording_id, t.key, r.name, r.category\n"
        "FROM ranked AS t LEFT JOIN recordings AS r ON r.id = t.recording_id\n"
        "WHERE t.rank <= CAST(:p1 AS INT)"
    )  # no ORDER BY: its range partitioning samples in a job of its own; sorted by the caller


#: Spark settings for the batch statement: without adaptive execution and broadcast joins, the
#: plan (scan, join, two shuffles, sort-merge label join) runs as ONE Spark job; with them, each
#: query stage and the broadcast is a job of its own (measured: 6 jobs -> 1 on a 1M-row lake)
ONE_JOB_CONF = {"spark.sql.adaptive.enabled": "false",
                "spark.sql.autoBroadcastJoinThreshold": "-1"}


def _window_rows(requests: list[Request]) -> list[tuple]:
    """The rows of ``query_windows``: (rq, qw, cats or None, signed words...)."""
    rows = []
    for rq, r in enumerate(requests):
        for qw, words in enumerate(r.words):
            cats = None if r.probes is None else [int(c) for c in r.probes[qw]]
            rows.append((rq, qw, cats, *SPARK.word_values(words)))
    return rows


def run_batch(engine, K: int, requests: list[Request]) -> tuple[dict[Request, list], float]:
    """Every request's nearest recordings (``store.search.Nearest``, best first) from ONE
    statement on the Spark ``engine``; and its time in seconds."""
    requests = list(dict.fromkeys(requests))
    if not requests:
        return {}, 0.0
    tops = {r.top for r in requests}
    if len(tops) != 1:
        raise ValueError("one batch, one top")
    columns = ["rq INT", "qw INT", "cats ARRAY<INT>",
               *(f"{w} BIGINT" for w in code_word_columns(K))]
    t0 = time.perf_counter()
    rows = engine.rows_joined("query_windows", columns, _window_rows(requests), batch_sql(K),
                              {"p1": tops.pop()}, conf=ONE_JOB_CONF)
    seconds = time.perf_counter() - t0
    out: dict[Request, list] = {r: [] for r in requests}
    for rq, _, rid, key, name, category in sorted(rows, key=lambda r: (r[0], r[1])):
        dist, qw, win = _search.unpack_key(key)
        out[requests[int(rq)]].append(_search.Nearest(
            int(rid), dist, qw, win, "" if name is None else str(name),
            "" if category is None else str(category)))
    return out, seconds
