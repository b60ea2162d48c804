"""Many excerpt searches in ONE statement on a lake engine (Spark; DuckDB and chDB if faster).

Why (issue 14): the default model codes a query as identification windows, so a search is an
excerpt search (``store.excerpt``: offset votes, then verification), one statement per search.
On Spark each statement is a job (seconds of scheduling and a scan of the Parquet), so a batch of
100 recordings would be 100+ jobs. Here every excerpt search that ``Vault.search`` will make for
the batch (a *request*) puts its query windows in one table, ``store.excerpt.QUERY_WINDOWS``
(request number, start frame, words, its categories, its key slices), and ONE statement
(``store.excerpt.excerpt_batch_sql``: the same steps, per request) returns every request's
verification rows. ``decide`` stays in Python, per request, on the rows each search takes
(``LakeVault._excerpt_rows``), so the hits are those of the search alone (tested against the
vault file).

A request is what one ``Vault._search_excerpt`` call binds: the query's start frames and words,
the categories searched (None: every row), keyed or scan, and the key slices. ``requests_for``
lists them the way ``Vault._search_in_mode`` makes its calls (``auto``: both the categories and
every row, the fallback when nothing matched; the batch pays for a fallback that may not be
needed, which is still the same one statement).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from store import excerpt as _ex
from store.lake_batch import ONE_JOB_CONF, modes_for
from store.sql_dialects import Dialect

__all__ = ["ExcerptRequest", "request_key", "requests_for", "run_batch"]


class ExcerptRequest(NamedTuple):
    """One excerpt statement's inputs (hashable: searches find their rows by it)."""

    frames: tuple[int, ...]
    words: tuple[tuple[int, ...], ...]
    cats: tuple[int, ...] | None
    keyed: bool
    bands: int


def request_key(q, cats, keyed: bool, bands: int) -> ExcerptRequest:
    """The request of coded query ``q`` searched in ``cats`` (None: every row)."""
    return ExcerptRequest(tuple(int(x) for x in q.frames),
                          tuple(tuple(int(x) for x in w) for w in q.words),
                          None if cats is None else tuple(sorted(int(c) for c in cats)),
                          bool(keyed), int(bands))


def is_excerpt(vault, q) -> bool:
    """Whether ``vault.search`` answers ``q`` with the excerpt statement."""
    return q.frames is not None and vault._excerpt_rule() is not None


def requests_for(vault, q, mode: str, probe: int) -> list[ExcerptRequest]:
    """The requests ``vault.search(q, mode=mode)`` will make, in the order it makes them."""
    if not is_excerpt(vault, q):
        return []
    out = []
    for m in modes_for(vault, q, mode):
        cats, _probed, keyed, bands = vault._excerpt_plan(q, m, probe)
        out.append(request_key(q, cats, keyed, bands))
    return out


def window_rows(requests: list[ExcerptRequest], dialect: Dialect) -> list[tuple]:
    """The rows of ``QUERY_WINDOWS``: (rq, qs, words as bound, cats ([]: every row), nb)."""
    rows = []
    for rq, r in enumerate(requests):
        cats = [] if r.cats is None else list(r.cats)
        for qs, words in zip(r.frames, r.words):
            rows.append((rq, qs, *dialect.word_values(words), cats, r.bands))
    return rows


def run_batch(runner: Any, K: int, rule, dialect: Dialect,
              requests: list[ExcerptRequest]) -> tuple[dict[ExcerptRequest, list], float]:
    """Every request's verification rows ``(rid, ob, s, qs, d)``, ordered as ``excerpt_sql``
    orders them, from one statement per candidate strategy (one: a vault's index size picks
    it); and the seconds it took. ``runner.rows_joined(table, columns, rows, sql, params,
    conf)`` runs a statement with a table of rows beside the lake's (``store.lake_engines``)."""
    requests = list(dict.fromkeys(requests))
    out: dict[ExcerptRequest, list] = {r: [] for r in requests}
    seconds = 0.0
    columns = [f"{name} {dialect.type(t)}" for name, t in _ex.query_window_columns(K, dialect)]
    for keyed in sorted({r.keyed for r in requests}):
        group = [r for r in requests if r.keyed == keyed]
        bands = max(r.bands for r in group)
        t0 = time.perf_counter()
        rows = runner.rows_joined(_ex.QUERY_WINDOWS, columns, window_rows(group, dialect),
                                  _ex.excerpt_batch_sql(K, keyed, bands, dialect),
                                  _ex.batch_params(K, rule, keyed, dialect), conf=ONE_JOB_CONF)
        seconds += time.perf_counter() - t0
        for rq, rid, ob, s, qs, d in sorted(tuple(int(x) for x in r) for r in rows):
            out[group[rq]].append((rid, ob, s, qs, d))
    return out, seconds
