"""The search room of ``Vault``: the paper's two-stage search (the query's category h1 first,
then normalized Hamming distance against tau, eq. 16), traversal, multi-probe and ``auto``, and
the excerpt search of codes over identification windows (``store.excerpt``).

Why a module of its own: search needs no passphrase and writes nothing (it is what the untrusted
server runs on the index), and it is the part a ``LakeVault`` (``store.lake``) reuses with its
own statement hooks (``_nearest_on_engine``, ``_excerpt_rows``, ``_hit_labels``). ``VaultSearch``
is a mixin: its methods run on a ``Vault`` (``self._lock``, ``self._db()``, ``self.encoder``,
...), and stay reachable (and replaceable, as tests do) as ``Vault._excerpt_rule``, ...
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from speechvault.errors import InvalidInputError
from store import damage as _damage
from store import labels as _labels
from store import search as _search
from store import sources as _sources
from store import sql_dialects as _dialects
from store.records import Hit, QueryCode, SearchResult
from store.vault_common import MODES


class VaultSearch:
    """``Vault.search`` and ``Vault.encode_query`` with their steps (mixed into
    ``store.vault.Vault``)."""

    @_damage.guarded
    def encode_query(self, source) -> QueryCode:
        """Code a query: an audio path, audio bytes, or float32 mono samples at the model rate."""
        if isinstance(source, QueryCode):
            return source
        enc = self.encoder
        kw = {"purpose": "query"} if getattr(enc, "windowing", None) is not None else {}
        if isinstance(source, np.ndarray):
            wc = enc.encode_audio(source, **kw)
            name = None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            wc = enc.encode_file(bytes(source), max_seconds=self.max_query_seconds, **kw)
            name = None
        elif isinstance(source, (str, os.PathLike)):
            with _sources.open_source(source, self.max_query_seconds)[0] as f:  # checked first
                wc = enc.encode_file(f, max_seconds=self.max_query_seconds, **kw)
            name = Path(source).name
        else:
            raise InvalidInputError(
                f"a query must be a path, bytes, samples or a QueryCode, not {type(source).__name__}")
        return QueryCode.from_window_codes(wc, name=name)

    def _as_query(self, query) -> QueryCode:
        if isinstance(query, QueryCode):
            q = query
        elif hasattr(query, "words") and hasattr(query, "category") and hasattr(query, "K"):
            q = QueryCode.from_window_codes(query)
        else:
            q = self.encode_query(query)
        if q.K != self.K or q.words.shape[1] != self.W:
            raise InvalidInputError(f"the query is a {q.K}-bit code; this vault holds {self.K}-bit codes")
        if q.n_windows < 1 or q.category.shape[0] != q.n_windows:
            raise InvalidInputError("the query code has no windows (or mismatched categories)")
        if np.any(q.category < 0) or np.any(q.category >= self.C):
            raise InvalidInputError(f"query category outside 0..{self.C - 1}")
        return q

    def _probes(self, q: QueryCode, w: int, mode: str, probe: int) -> list[int] | None:
        if mode == "traversal":
            return None
        first = int(q.category[w])
        if mode == "two-stage":
            return [first]
        m = max(1, min(int(probe), self.C))
        if q.probs is None or q.probs.shape[0] <= w or q.probs.shape[1] != self.C:
            return [first]
        order = [int(i) for i in np.argsort(-q.probs[w], kind="stable")]
        cats = [first] + [c for c in order if c != first]
        return cats[:m]

    @_damage.guarded
    def search(self, query, *, tau: float | None = None, mode: str = "auto",
               probe: int = 2, top: int = 10) -> SearchResult:
        """Retrieve the recordings whose code is within normalized Hamming distance ``tau`` of the
        query's (eq. 16), best first, each recording once (its best window pair). No passphrase.

        ``mode``: "two-stage" (the paper: the query's category h1 first, then Hamming distance),
        "traversal" (every row), "multi-probe" (the ``probe`` most probable categories), or
        "auto" (default): two-stage, then traversal if nothing in the category is within tau;
        an excerpt longer than one window (identification windows) searches every row at once."""
        if mode not in MODES:
            raise InvalidInputError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        t_total = time.perf_counter()
        tau = self.tau if tau is None else float(tau)
        if not (0.0 < tau <= 1.0) or tau != tau:
            raise InvalidInputError(f"tau must be in (0, 1], got {tau}")
        top = int(top)
        if top < 1:
            raise InvalidInputError("top must be >= 1")
        if mode == "multi-probe" and int(probe) < 1:
            raise InvalidInputError("probe must be >= 1")
        coded_here = not isinstance(query, QueryCode) and not hasattr(query, "words")
        model_loaded = self._encoder is not None
        t_code = time.perf_counter()
        q = self._as_query(query)
        t_code = time.perf_counter() - t_code
        timings = {k: float(q.timings.get(k, 0.0)) for k in ("decode", "features", "inference")}
        if coded_here and not model_loaded:
            # the first query of a session also loads the model from the vault: its own stage
            timings["model_load"] = max(0.0, t_code - sum(timings.values()))
        with self._lock:  # one session for every stage (the query was coded outside it)
            res = self._search_in_mode(q, tau, mode, probe, top)
        timings.update(res.timings)
        # wall clock of this call; a code made elsewhere adds the stages it reports
        timings["total"] = time.perf_counter() - t_total
        if not coded_here:
            timings["total"] += timings["decode"] + timings["features"] + timings["inference"]
        res.timings = timings
        return res

    def _search_in_mode(self, q: QueryCode, tau: float, mode: str, probe: int,
                        top: int) -> SearchResult:
        if mode == "auto" and self._is_long_excerpt(q):
            # the category of a window of arbitrary speech says little: every row at once
            res = self._search_coded(q, tau, "traversal", probe, top)
            res.mode = "auto"
        elif mode == "auto":
            both = self._auto_one_scan(q, top)  # (two-stage, traversal) from one statement
            res = self._search_coded(q, tau, "two-stage", probe, top, both and both[0])
            if not res.matched:  # nothing in the category: every row, the same code
                again = self._search_coded(q, tau, "traversal", probe, top, both and both[1])
                res = dataclasses.replace(
                    again, fell_back=True, query_categories=res.query_categories,
                    probed_categories=res.probed_categories,
                    candidates=res.candidates + again.candidates,
                    timings={k: res.timings[k] + again.timings[k] for k in res.timings})
            res.mode = "auto"
        else:
            res = self._search_coded(q, tau, mode, probe, top)
        return res

    def _auto_one_scan(self, q: QueryCode, top: int):
        """``auto``'s two answers from one statement (``store.search.nearest_both``), as
        ``(found, seconds)`` per stage (found None: not decided by it, the stage runs its own
        statement), or None where auto runs its statements in turn: a large index
        (``store.search.auto_one_scan``), an excerpt, a lake."""
        if (self._dialect is not _dialects.DUCKDB or q.frames is not None
                or not _search.auto_one_scan(self._index_rows(), q.n_windows)):
            return None
        with self._lock:
            con = self._db()
            seconds = self._set_search_threads(con, self._index_rows())
            two, every, more = _search.nearest_both(
                con, self.K, [[int(x) for x in w] for w in q.words], q.category, top,
                self._recording_labels())
        # each statement's time is reported once: with the first stage (even if undecided)
        return (two, seconds + more), (every, [])

    def _set_search_threads(self, con, scanned: int) -> list[float]:
        """DuckDB threads for a scan of ``scanned`` rows (``store.search.threads_for``); the
        time of the ``SET`` if one was sent."""
        threads = _search.threads_for(scanned)
        if threads == getattr(self, "_search_threads", None):
            return []
        self._search_threads = threads
        return [_search.set_threads(con, threads)]

    def _search_coded(self, q: QueryCode, tau: float, mode: str, probe: int, top: int,
                      ranked: tuple[list, list[float]] | None = None) -> SearchResult:
        """One SQL search of a coded query in ``mode`` (not "auto"); timings: the two stages.
        ``ranked``: its nearest recordings (None: not found yet) and the seconds of statements
        already run for it (``_auto_one_scan``)."""
        if q.frames is not None and self._excerpt_rule() is not None:
            return self._search_excerpt(q, tau, mode, probe, top)
        probes = None if mode == "traversal" else [
            self._probes(q, w, mode, probe) for w in range(q.n_windows)]
        per_cat = self._category_rows()
        total_rows = sum(per_cat.values())
        candidates = (total_rows * q.n_windows if probes is None
                      else sum(per_cat.get(c, 0) for p in probes for c in p))
        scanned = total_rows if probes is None else sum(
            per_cat.get(c, 0) for c in {c for p in probes for c in p})
        found: list = []
        seconds: list[float] = []
        words = [[int(x) for x in w] for w in q.words]
        if ranked is not None:
            seconds += ranked[1]
        if ranked is not None and ranked[0] is not None:
            found = ranked[0]
        elif candidates:
            with self._lock:
                con = self._db()
                if self._dialect is _dialects.DUCKDB:  # a vault file: one statement (issue 13)
                    seconds += self._set_search_threads(con, scanned)
                    found, more = _search.nearest_recordings(con, self.K, words, probes, top,
                                                             self._recording_labels())
                else:  # a lake engine (store.sql_dialects): one statement per query window
                    found, more = self._nearest_on_engine(con, words, probes, top)
                seconds += more
        nearest = [Hit(recording_id=n.recording_id, name=n.name, category=n.category,
                       ber=n.dist / self.K, window=n.window, is_match=(n.dist / self.K) < tau,
                       query_window=n.query_window, distance=n.dist) for n in found]
        matches = [h for h in nearest if h.is_match]
        qcats = [self.class_names[int(c)] for c in q.category]
        probed = sorted({c for p in probes for c in p}) if probes else []
        return SearchResult(
            hits=matches if matches else list(nearest), matched=bool(matches), tau=tau, mode=mode,
            query_category=qcats[0] if qcats else None,
            # one statement: the category filter runs inside it (stage 1 has no time of its own)
            timings={"category_stage": 0.0, "hamming_stage": sum(seconds)}, nearest=nearest,
            query_categories=qcats,
            probed_categories=[self.class_names[c] for c in probed],
            candidates=candidates, total_rows=total_rows)

    def _nearest_on_engine(self, con, words, probes, top: int):
        """A lake engine's nearest recordings (``LakeVault`` may have them from a batch)."""
        return _search.nearest_per_window(con, self.K, words, probes, top, self._dialect)

    def _category_rows(self) -> dict[int, int]:
        """Index rows per category, read once per vault open and after this process writes (a
        write elsewhere needs the file, so a session's counts stay true). Search reports its
        candidates from it without a count statement per query; ``_rows_cache`` is their sum
        (every write resets it, which is what makes this re-read)."""
        if getattr(self, "_rows_cache", None) is None or getattr(self, "_cat_rows", None) is None:
            with self._lock:
                self._cat_rows = {int(c): int(n) for c, n in self._db().execute(
                    "SELECT category, count(*) FROM codes GROUP BY category").fetchall()}
                self._rows_cache = sum(self._cat_rows.values())
        return self._cat_rows

    def _index_rows(self) -> int:
        """Rows of the index, read once per session and after this process writes (it only
        chooses how candidates are found)."""
        if getattr(self, "_rows_cache", None) is None:
            self._category_rows()
        return self._rows_cache

    def _is_long_excerpt(self, q: QueryCode) -> bool:
        """A query coded with identification windows that spans more than one stored window
        (a short clip is tried at most ``2 * query_slack_frames + 1`` starts)."""
        if q.frames is None:  # coded per model window (no need to load the model)
            return False
        w = getattr(self.encoder, "windowing", None)
        return w is not None and q.n_windows > 2 * w.query_slack_frames + 1

    def _excerpt_rule(self):
        """The excerpt decision rule of the vault's model, or None when its codes are per model
        window (a format-2 vault, or a model without identification windows)."""
        if getattr(self.encoder, "windowing", None) is None:
            return None
        from store.excerpt import ExcerptRule

        return ExcerptRule.from_dict(self.encoder.excerpt_rule)

    def _excerpt_plan(self, q: QueryCode, mode: str, probe: int):
        """What the excerpt statement of ``q`` in ``mode`` binds: (categories or None, the set
        probed, keyed, key slices). A lake's batch (``store.excerpt_batch``) asks the same."""
        rule = self._excerpt_rule()
        cats = None
        probed: set[int] = set()
        if mode != "traversal":
            probed = {c for w in range(q.n_windows) for c in self._probes(q, w, mode, probe)}
            cats = np.array(sorted(probed))
        span = int(q.frames.max() - q.frames.min()) if len(q.frames) else 0
        bands = rule.bands_for(self.K, span, self.encoder.windowing.store_hop_frames)
        return cats, probed, rule.keyed(self._index_rows()), bands

    def _excerpt_rows(self, con, q: QueryCode, cats, keyed: bool, bands: int, rule):
        """The excerpt statement's verification rows and its seconds (a ``LakeVault`` may
        have them from a batch)."""
        from store import excerpt as _ex

        sql = _ex.excerpt_sql(self.K, cats is not None, keyed, bands, self._dialect)
        params = _ex.excerpt_params(q.frames, q.words, cats, self.K, rule, keyed, self._dialect)
        t0 = time.perf_counter()
        rows = con.execute(sql, params).fetchall()
        return rows, time.perf_counter() - t0

    def _recording_labels(self) -> "_labels.RecordingLabels":
        """This handle's label cache (``store.labels``), made again after it was dropped with
        the row counts (a new session, an ingest, a delete)."""
        if getattr(self, "_label_cache", None) is None:
            self._label_cache = _labels.RecordingLabels()
        return self._label_cache

    def _hit_labels(self, con, ids: list[int]) -> dict[int, tuple]:
        """{recording id: (name, category)} of the hits: from the label cache on a vault file,
        by one statement on a lake engine (a ``LakeVault`` may have them from a batch)."""
        if self._dialect is _dialects.DUCKDB:
            return self._recording_labels().of(con, ids)
        return {r[0]: (r[1], r[2]) for r in con.execute(
            _dialects.labels_sql(self._dialect), self._dialect.bind([list(ids)])).fetchall()}

    def _search_excerpt(self, q: QueryCode, tau: float, mode: str, probe: int,
                        top: int) -> SearchResult:
        """Excerpt search (``store.excerpt``): one statement, offset voting, evidence. ``tau``
        is the per-window threshold of the evidence (default: the model's calibrated one)."""
        from store import excerpt as _ex

        rule = self._excerpt_rule()
        # an explicit threshold also bounds the best window's BER of a match (what is shown)
        max_ber = None if tau == self.tau else float(tau)
        cats, probed, keyed, bands = self._excerpt_plan(q, mode, probe)
        with self._lock:
            con = self._db()
            rows, t_ham = self._excerpt_rows(con, q, cats, keyed, bands, rule)
            found = _ex.decide(rows, self.K, rule)[:top]
            labels = self._hit_labels(con, [h.recording_id for h in found]) if found else {}
        frame_s = self.encoder.windowing.frame_seconds
        nearest = [Hit(recording_id=h.recording_id, name=labels.get(h.recording_id, ("", ""))[0],
                       category=labels.get(h.recording_id, ("", ""))[1], ber=h.best_ber,
                       window=h.best_window,
                       is_match=(rule.accepts(h) and not q.silent
                                 and (max_ber is None or h.best_ber < max_ber)),
                       query_window=h.best_query_window, distance=round(h.best_ber * self.K),
                       offset=max(0.0, h.offset_frames * frame_s), evidence=h.evidence,
                       windows=h.windows, near_identical=h.strong) for h in found]
        matches = [h for h in nearest if h.is_match]
        qcats = [self.class_names[int(c)] for c in q.category]
        return SearchResult(
            hits=matches if matches else list(nearest), matched=bool(matches),
            tau=self.tau if max_ber is None else max_ber, mode=mode,
            query_category=qcats[0] if qcats else None,
            timings={"category_stage": 0.0, "hamming_stage": t_ham}, nearest=nearest,
            query_categories=sorted(set(qcats), key=qcats.index),
            probed_categories=[self.class_names[c] for c in sorted(probed)],
            candidates=len({(r[0], r[1]) for r in rows}), total_rows=0,
            rule={**rule.to_dict(), **({} if max_ber is None else {"best_ber_under": max_ber})})
