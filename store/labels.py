"""The names and category labels of a vault's recordings, held in memory between searches.

Why (issue 13): joining ``recordings`` in the search statement cost more than the ranking
itself. At 10k recordings a one-window two-stage statement took ~3.4 ms CPU with the join and
~1.9 ms without it; a separate lookup of the 10 hits' labels cost ~2 ms again (DuckDB binds
and plans the join or the lookup like any statement; docs/measure_labels.py). A recording's
id comes from a sequence and is never reused, and no write changes a recording's name or
category, so the labels read once stay true for the life of the cache.

The owner (``store.vault.Vault``) drops the cache wherever it drops its per-category row
counts: at every fresh session (another process may have ingested or deleted while this one
held no connection, ``store.access``), and at each of its own ingests and deletes. A vault of
at most ``PRELOAD_MAX`` recordings is read whole at the second search (one statement, ~7 ms at
10k; the first looks up its own hits only, so a one-shot search does not pay for the table); a
larger one reads the labels it is missing, only those of the hits it returns, in one statement
per search (at 1M recordings, holding every label would take hundreds of MB).
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["PRELOAD_MAX", "RecordingLabels"]

#: a vault of at most this many recordings has all its labels read at once
PRELOAD_MAX = 200_000

_ALL = "SELECT id, name, category FROM recordings"
_SOME = "SELECT id, name, category FROM recordings WHERE id IN (SELECT unnest(?::BIGINT[]))"


class RecordingLabels:
    """``id -> (name, category)`` of the recordings a search returned (or of every recording)."""

    def __init__(self, preload_max: int | None = None) -> None:
        self._labels: dict[int, tuple[str, str]] = {}
        self._preload_max = PRELOAD_MAX if preload_max is None else int(preload_max)
        self._calls = 0
        #: statements sent (tests count them)
        self.statements = 0

    def of(self, con, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        """The labels of ``ids``; a recording that is not in the vault gets ("", "") (as the
        search statement's LEFT JOIN gave it). The first call looks up only its own ids: a
        one-shot ``speechvault search`` reads ~10 labels, not the whole table; the second
        reads every label of a small vault, for this search and the ones after it."""
        ids = [int(i) for i in ids]
        self._calls += 1
        if self._calls == 2:
            n = int(con.execute("SELECT count(*) FROM recordings").fetchone()[0])
            self.statements += 1
            if n <= self._preload_max:
                self._add(con.execute(_ALL).fetchall())
                self.statements += 1
        missing = [i for i in ids if i not in self._labels]
        if missing:  # none once all are read, unless the owner failed to drop a stale cache
            self._add(con.execute(_SOME, [missing]).fetchall())
            self.statements += 1
        return {i: self._labels.get(i, ("", "")) for i in ids}

    def _add(self, rows) -> None:
        for rid, name, cat in rows:
            self._labels[int(rid)] = ("" if name is None else str(name),
                                      "" if cat is None else str(cat))
