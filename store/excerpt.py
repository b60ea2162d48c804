"""Find a recording from an excerpt: offset voting and sequence evidence in one SQL statement.

Why (issue 12): one query window matching one stored window proves little (pauses and common
words match by chance among millions of windows), and an excerpt cut anywhere only lines up
with stored windows at one time offset. So, as landmark fingerprints (Wang 2003) and neural
audio fingerprints (Chang et al. 2021) decide, a recording matches when *many* windows agree
on *one* offset. The query's windows (``hashing.windowing.query_windows``: one every 16 ms) go
to DuckDB at once, as parallel lists unnested into a table, in one statement:

1. **candidates**: every (query window, stored window) pair within ``cand_ber`` (normalized
   Hamming distance, eq. 16, ``bit_count(xor(...))`` on the stored words: a vault's 128-bit
   words, the lake's 64-bit ones), among the stored
   windows whose category h1 is one of the query's when the search is two-stage (the paper's
   first stage), else everywhere; the pairs vote for (recording, offset bin) with offset = stored start - query
   start; the ``n_candidates`` (recording, offset) with most distinct stored windows survive,
   ties going to the nearest pair (scan) or the most slices shared (keys): a whole clip stored
   as one window has one vote, as do its nearest impostors, so the tie decides;
2. **verification**: every stored window of a candidate that the query covers at that offset
   (within ``tol_frames``, which absorbs +-3 % speed drift) gets the distance of its best
   aligned query window, also above the threshold: a chance match in one window is outvoted
   by the windows around it that do not match.

The few rows of step 2 come back (one per candidate window) and ``decide`` sums the evidence:
each covered window adds ``tau_window - BER`` (negative when it does not match), a query window
that several candidate recordings match equally (a shared prompt or jingle) counts once,
shared between them, and a recording matches when its evidence reaches ``min_evidence``. For a
query of one window this is the per-window rule ``BER <= tau_window - min_evidence``. The rule's
numbers are calibrated on impostor excerpts (``model_export.excerpt_fingerprint``) and stored
inside the model's fingerprint file, so its SHA-256 (part of the model identity) covers them.

Only integers derived from K are formatted into the SQL text; everything else is bound.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from store.schema import key_word, slice_key_sql
from store.sql_dialects import DUCKDB, DUCKDB_LAKE, Dialect

__all__ = ["ExcerptRule", "ExcerptHit", "excerpt_sql", "excerpt_params", "excerpt_batch_sql",
           "batch_params", "QUERY_WINDOWS", "decide"]


#: The least probe budget of a keyed search (``ExcerptRule.bands_for``: slices x stored windows
#: a query covers), whatever a model's rule stored: which candidates a large vault verifies is
#: the search engine's breadth, not part of the calibrated decision (each candidate is still
#: judged on every window it covers), so every vault gets it, also one whose embedded rule says
#: 96. Why 192 (session 32, docs/results/excerpt_rule_trials.md): with 96, the held-out copies
#: at +-3 % speed lost 3-6 of 120 excerpts per cell to the keyed stage (a genuine window pair
#: shares a given slice only ~4 % of the time at that speed); with 144, 4 of 1,080 copies at
#: speed or pitch +-3 %; with 192 (12 slices for a 5 s query, all 24 for 3 s) none, the scan's.
#: The price: a 5 s query against 1.1M rows, p50 73 -> 105 ms idle and 101 -> 128 ms with one
#: core busy (docs/results/bench_excerpt.md, session 32; issue 12's target is 100 ms).
KEY_PROBES = 192


@dataclass(frozen=True)
class ExcerptRule:
    """The excerpt decision rule (defaults are placeholders until calibrated; a model stores
    its own)."""

    #: a pair of windows within this BER votes for its (recording, offset)
    cand_ber: float = 0.25
    #: how candidate pairs are found: "scan" (every pair's distance, exact), "keys" (pairs
    #: sharing a 16-bit slice of their codes: hash joins, for large vaults), or "auto": a scan
    #: below ``scan_below_rows`` index rows (measured: a 5 s query scans 100k rows in ~1.6 s,
    #: keys take 0.1-0.4 s at 1.1M rows on this 2-core machine), keys above
    candidates: str = "auto"
    scan_below_rows: int = 20_000
    #: 16-bit slices used as keys, from the first bits (DDA orders its bits best first): at most
    #: this many (a one-window query uses them all)
    key_bands: int = 64
    #: slices x stored windows a query covers that the keyed stage probes (0: always
    #: ``key_bands``). Each probe costs a pass over the index and brings ~rows/65,536 chance
    #: pairs per query window, while a long query finds its recording through any of its
    #: windows: a 5 s query covering 16 stored windows needs fewer slices per window than a
    #: 1 s clip covering one for the same expected number of genuine key hits; the search
    #: spends at least ``KEY_PROBES``
    key_probes: int = 96
    #: offset bins of the vote, frames (8 x 16 ms)
    bin_frames: int = 8
    #: (recording, offset) candidates verified
    n_candidates: int = 8
    #: a covered stored window takes its best query window within this many frames
    tol_frames: int = 6
    #: each covered window adds (tau_window - BER)
    tau_window: float = 0.30
    #: ... but a window that does not match subtracts at most this much (None: no floor). A
    #: window that noise or babble has destroyed sits where an unrelated window sits (BER
    #: 0.40-0.50): it says "this stretch did not survive", not "this is another recording", so
    #: the log-likelihood ratio of a copy whose windows may each be lost (a two-part mixture)
    #: is bounded below, while a linear penalty lets a long excerpt in noise sink under the
    #: evidence of its few clean windows. Off in the shipped rule: calibrated with it, the rule
    #: moved ``tau_window`` up and matched an outside excerpt on held-out voices
    #: (docs/results/excerpt_rule_trials.md)
    min_window_gain: float | None = None
    #: a matching query window is shared among the recordings within this BER of its best
    #: match, and explained away for the others (``_window_shares``); None: shared among all
    #: under ``tau_window`` (the rule of models calibrated before)
    share_ber: float | None = 0.05
    #: a recording matches when its evidence reaches this (queries of one window)
    min_evidence: float = 0.15
    #: a match covering several stored windows needs this many of them within ``cand_ber``
    #: (several windows agreeing at one offset, as landmark matching asks), whatever its
    #: evidence: windows of unrelated but alike sounds (one voice, one room) can each sit just
    #: under ``tau_window`` and add up without one of them being a copy. Calibrated with
    #: ``tau_window`` (``model_export.excerpt_calibration``): on real speech two cost recall in
    #: babble and stopped no impostor, so the shipped rule keeps 1
    min_close_windows: int = 2
    #: ((windows, threshold), ...): the evidence needed when the query covers at most that many
    #: stored windows of the recording (more windows give impostors more chances); the last
    #: entry holds beyond. Empty: ``min_evidence`` for all.
    evidence_by_windows: tuple = ()
    #: a second way to match, for copies that lost most of their windows: this many covered
    #: windows each within ``strong_ber`` of the query at the one offset (a window the query
    #: shares with other recordings counting as its share), whatever the evidence of the rest.
    #: Why: babble or noise at 10 dB can destroy most windows of a copy (BER 0.38-0.47, where
    #: unrelated windows sit) and keep a few near BER 0.05; the summed evidence then sinks
    #: under those near-identical windows, while
    #: unrelated recordings almost never put even two windows this close at one offset
    #: (calibrated: the count is the most any calibration impostor reached plus a margin,
    #: ``model_export.excerpt_calibration.calibrate_strong``). 0: off (rules calibrated before)
    min_strong_windows: int = 0
    strong_ber: float = 0.10
    #: which covered windows the evidence sums: "all" of them, or the "span" of consecutive
    #: stored windows whose sum is largest (a local alignment: the maximum-subarray score of
    #: Smith & Waterman 1981 on the per-window gains). Why "span": noise or babble that is
    #: louder than part of a recording (a quiet take, a soft-spoken stretch) destroys the
    #: windows there and leaves the rest intact; a copy's surviving stretch is consecutive,
    #: and the destroyed windows around it say "this part did not survive", not "this is
    #: another recording". Impostors gain from it too (their best stretch instead of their
    #: total): calibrated with it, the rule lost CALIB recall (excerpts 0.900 -> 0.840, whole
    #: clips 0.750 -> 0.392), so the shipped rule sums "all" (docs/results/excerpt_rule_trials.md)
    evidence_over: str = "all"

    def keyed(self, rows: int) -> bool:
        """Whether candidate pairs come from 16-bit slices for an index of ``rows`` rows."""
        return self.candidates == "keys" or (self.candidates == "auto"
                                             and rows >= self.scan_below_rows)

    def bands_for(self, K: int, span_frames: int, hop_frames: int) -> int:
        """Slices the keyed stage probes for a query whose window starts span ``span_frames``
        frames: the probe budget (``key_probes``, at least ``KEY_PROBES``) divided among the
        stored windows it covers, at least 4, at most ``key_bands`` and the K/16 slices of the
        code."""
        most = min(int(self.key_bands), K // 16)
        if self.key_probes <= 0:
            return most
        covered = max(1, int(span_frames) // max(1, int(hop_frames)) + 1)
        budget = max(int(self.key_probes), KEY_PROBES)
        return max(min(4, most), min(most, -(-budget // covered)))

    def threshold(self, windows: int) -> float:
        """The evidence a candidate covering ``windows`` stored windows needs to match."""
        for upto, value in self.evidence_by_windows:
            if windows <= upto:
                return float(value)
        return float(self.evidence_by_windows[-1][1]) if self.evidence_by_windows \
            else float(self.min_evidence)

    def accepts(self, hit: "ExcerptHit") -> bool:
        """Whether ``hit`` is a match: enough evidence for its covered windows and enough of
        them close, or enough of them near-identical (``strongly_matched``)."""
        return ((hit.evidence >= self.threshold(hit.windows) and self.close_enough(hit))
                or self.strongly_matched(hit))

    def strongly_matched(self, hit: "ExcerptHit") -> bool:
        """Whether at least ``min_strong_windows`` of ``hit``'s covered windows are within
        ``strong_ber`` (never, when the rule has no such count)."""
        return 0 < self.min_strong_windows <= hit.strong + 1e-9

    def close_enough(self, hit: "ExcerptHit") -> bool:
        """Whether enough of ``hit``'s covered windows are within ``cand_ber``
        (``min_close_windows``, at most all it covers), whatever its evidence."""
        return hit.close >= min(self.min_close_windows, hit.windows)

    def summary(self) -> str:
        """How a match is decided, in one line for a user (the CLI, the TUI): an excerpt matches
        by the evidence summed over its windows, not by one BER under tau. E.g. "evidence >=
        0.25-0.42 (a window adds 0.34 - BER), 2 windows < 0.25; or 3 < 0.10"."""
        floors = sorted({float(v) for _, v in self.evidence_by_windows} or {self.min_evidence})
        need = f"{floors[0]:.2f}" + (f"-{floors[-1]:.2f}" if len(floors) > 1 else "")
        close = (f", {self.min_close_windows} windows < {self.cand_ber:.2f}"
                 if self.min_close_windows > 1 else "")
        strong = (f"; or {self.min_strong_windows} < {self.strong_ber:.2f}"
                  if self.min_strong_windows > 0 else "")
        return f"evidence >= {need} (a window adds {self.tau_window:.2f} - BER){close}{strong}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["evidence_by_windows"] = [list(x) for x in self.evidence_by_windows]
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "ExcerptRule":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in (d or {}).items() if k in known}
        # a rule stored before these settings existed keeps deciding as it was calibrated
        for name, before in _RULE_BEFORE.items():
            if d is not None and name not in d:
                kw[name] = before
        kw["evidence_by_windows"] = tuple((int(a), float(b))
                                          for a, b in kw.get("evidence_by_windows") or ())
        return cls(**kw)


#: what a stored rule that lacks a setting meant (models calibrated before the setting existed)
_RULE_BEFORE = {"share_ber": None, "key_probes": 0, "min_close_windows": 0,
                "min_window_gain": None, "min_strong_windows": 0, "evidence_over": "all"}


@dataclass(frozen=True)
class ExcerptHit:
    """A recording found by an excerpt: where (offset of the query's start in the recording, in
    frames), how well (evidence, windows covered, their mean and best BER)."""

    recording_id: int
    offset_frames: int
    evidence: float
    windows: int
    mean_ber: float
    best_ber: float
    best_window: int       # stored start frame of the best window
    best_query_window: int  # its query window's start frame
    close: int = 0          # covered windows within ``cand_ber``
    strong: float = 0.0     # covered windows within ``strong_ber`` (shared ones as their share)


def _dist(K: int, dialect: Dialect) -> str:
    """Hamming distance of codes row ``c`` to query row ``q`` (eq. 16 numerator)."""
    return " + ".join(dialect.hamming(f"c.{col}", f"q.q{i}")
                      for i, col in enumerate(dialect.word_columns(K)))


def _band_key(alias: str, prefix: str, band: int, dialect: Dialect) -> str:
    """The join key of the ``band``-th 16-bit slice of a code (bits 16*band .. 16*band+15,
    eq. 11-12 packing). A vault's stored rows (``alias`` "c", format 7) have it as the column
    ``k{band}``; everything else (the query's windows, the lake's rows) computes it from the
    word holding it, ``store.schema.slice_key_sql`` (a slice never straddles two words: 16
    divides the vault's 128 and the lake's 64 bits).

    Why stored keys: computed per stored row from a 128-bit word and hashed as HUGEINT, the
    keys made a 5 s query's statement cost 68.5 ms CPU at 1.1M rows; joined on the stored
    USMALLINT columns, 50.2 ms (one thread, docs/results/bench_excerpt.md, session 26)."""
    if alias == "c" and dialect.stored_keys:
        return f"c.k{int(band)}"
    word = key_word(band, dialect.word_bits)
    return slice_key_sql(f"{alias}.{prefix}{word}", band, dialect.word_bits)


def _keyed_pairs(K: int, two_stage: bool, bands: int, dialect: Dialect) -> str:
    """Candidate pairs by exact 16-bit slices (locality-sensitive hashing by bit sampling, Indyk
    & Motwani 1998): a window pair within BER b shares a given slice with probability
    (1 - b)^16, so pairs of a copy share some of the K/16 slices and chance pairs rarely do.
    One hash join per slice."""
    cat = " AND list_contains($CATS::SMALLINT[], c.category)" if two_stage else ""
    return "\nUNION ALL\n".join(
        f"SELECT c.recording_id AS rid, c.start AS s, q.qs FROM codes AS c JOIN q "
        f"ON {_band_key('c', 'w', b, dialect)} = {_band_key('q', 'q', b, dialect)}{cat}"
        for b in range(min(bands, K // 16)))


def _votes(keys: str, binp: str, keyed: bool, where: str = "") -> str:
    """The vote of the candidate pairs: per (recording, offset bin), ``n`` = distinct stored
    windows that have a pair there, ``tie`` = its tie-break (keyed: more pairs first, i.e.
    ``-count``; scan: the nearest pair). ``keys``: leading group columns (a batch's ``rq, ``).

    Counted in two plain GROUP BYs (per stored window, then per offset) rather than with
    ``count(DISTINCT s)``: DuckDB plans a distinct aggregate as a CTE fanned out to two
    aggregates, ~28 of 174 ms CPU in its profile of a keyed 5 s excerpt at 1.1M rows (issue
    12's bench vault); the votes are the same (tests/test_excerpt.py)."""
    inner, outer = ("count(*)", "-sum(t)") if keyed else ("min(d)", "min(t)")
    return ("stored_votes AS (\n"
            f"SELECT {keys}rid, round((s - qs) / {binp}::DOUBLE)::INTEGER AS ob, s, {inner} AS t\n"
            f"FROM pairs{where} GROUP BY {keys}rid, ob, s\n),\n"
            "votes AS (\n"
            f"SELECT {keys}rid, ob, count(*) AS n, {outer} AS tie\n"
            f"FROM stored_votes GROUP BY {keys}rid, ob\n),\n")


def _nearest_query_window(binp: str) -> str:
    """The query window a covered stored window reports: the nearest, then the one nearest the
    offset, then the earliest. A total order, so DuckDB, ClickHouse and Spark report the same
    window when two are equally near (arg_min's choice among equal keys is the engine's)."""
    return (f"arg_min(qs, d::BIGINT * 4294967296000000 + abs(s - qs - ob * {binp}::INTEGER) "
            "* 4294967296 + qs)")


#: how DuckDB is told to compute the query's windows once: without it, its optimizer inlines
#: the CTE into each of its uses (one per key slice, the verification) and plans each copy;
#: a 5 s query's statement at 1.1M rows spent 11.7 of its ~95 ms (one thread) in the
#: optimizer, 3.1 ms with it (docs/results/bench_excerpt.md, session 33)
_DUCKDB_Q = "MATERIALIZED "


def _duckdb_cover_join(binp: str, tol: str) -> str:
    """The verification's join of a candidate's stored windows to the query windows within
    ``tol`` frames of its offset, as an equi-join on each of the 2 * tol + 1 frames: the same
    pairs as ``abs(c.start - q.qs - ob * bin) <= tol`` (integers: one ``dt`` per pair), which
    DuckDB can only run as a nested loop over every (stored, query) window pair (6.3 ms of a
    5 s query's statement at 1.1M rows, one thread; a hash join instead)."""
    return (f"JOIN range(-{tol}::INTEGER, {tol}::INTEGER + 1) AS dt(dt) ON true\n"
            f"JOIN q ON q.qs = c.start - cand.ob * {binp}::INTEGER + dt.dt\n")


def excerpt_sql(K: int, two_stage: bool, keyed: bool = False, bands: int = 64,
                dialect: Dialect = DUCKDB) -> str:
    """The statement. Parameters: $1 query start frames, $2.. the W word lists, then (two-stage
    only) the list of categories searched, then (scan only) cand bits, bin, n_candidates, tol.
    ``keyed``: candidate pairs by exact 16-bit slices instead of a scan of every pair.
    ``dialect``: DuckDB on a vault file or on the lake (``store.sql_dialects``)."""
    if dialect.family != "duckdb":
        from store.sql_dialects import excerpt_sql_for  # the other engines' spelling

        # the other engines read the lake: 64-bit words, spelt as DuckDB on the lake spells them
        return excerpt_sql_for(dialect, _excerpt_sql(K, two_stage, keyed, bands, DUCKDB_LAKE,
                                                     duckdb_plan=False))
    return _excerpt_sql(K, two_stage, keyed, bands, dialect, duckdb_plan=True)


def _excerpt_sql(K: int, two_stage: bool, keyed: bool, bands: int, dialect: Dialect,
                 duckdb_plan: bool) -> str:
    """``excerpt_sql``'s text in DuckDB spelling. ``duckdb_plan``: run by DuckDB itself, so
    spelt for its planner (``_DUCKDB_Q`` and ``_duckdb_cover_join``); False: the portable text
    that ``store.sql_dialects.excerpt_sql_for`` translates for the other engines."""
    W = len(dialect.word_columns(K))
    wt = dialect.type("WORD")
    words = ",\n       ".join(f"unnest(${2 + i}::{wt}[]) AS q{i}" for i in range(W))
    p = 2 + W
    cat_where = ""
    if two_stage:  # stage 1 of the paper: only windows of the query's categories
        cat_where = f"WHERE list_contains(${p}::SMALLINT[], c.category)\n"
        cats_param = p
        p += 1
    if not keyed:
        cand = f"${p}"
        p += 1
    binp, ncand, tol = (f"${p}", f"${p + 1}", f"${p + 2}")
    dist = _dist(K, dialect)
    if keyed:
        keyed_sql = _keyed_pairs(K, two_stage, bands, dialect)
        if two_stage:
            keyed_sql = keyed_sql.replace("$CATS", f"${cats_param}")
        pairs = f"pairs AS (\n{keyed_sql}\n),\n" + _votes("", binp, keyed=True)
    else:
        pairs = ("pairs AS (\n"
                 f"SELECT c.recording_id AS rid, c.start AS s, q.qs, {dist} AS d\n"
                 f"FROM codes AS c, q\n{cat_where}),\n"
                 + _votes("", binp, keyed=False, where=f" WHERE d <= {cand}::INTEGER"))
    near = (_duckdb_cover_join(binp, tol) if duckdb_plan else
            f"JOIN q ON abs(c.start - q.qs - cand.ob * {binp}::INTEGER) <= {tol}::INTEGER\n")
    return (
        f"WITH q AS {_DUCKDB_Q if duckdb_plan else ''}(\n"
        f"SELECT unnest($1::INTEGER[]) AS qs,\n       {words}\n),\n"
        f"{pairs}"
        "cand AS (\n"
        f"SELECT rid, ob FROM votes ORDER BY n DESC, tie, rid, ob LIMIT {ncand}::INTEGER\n),\n"
        "cover AS (\n"
        f"SELECT cand.rid, cand.ob, c.start AS s, q.qs, {dist} AS d\n"
        "FROM cand JOIN codes AS c ON c.recording_id = cand.rid\n"
        f"{near}"
        ")\n"
        "SELECT rid, ob, s, "
        f"{_nearest_query_window(binp)} AS qs, min(d) AS d\n"
        "FROM cover GROUP BY rid, ob, s ORDER BY rid, ob, s"
    )


#: the table of a batch's query windows (``excerpt_batch_sql``): one row per window of every
#: request, (rq, qs, q0..q{W-1}, cats, nb) -- generic types, spelt by the engine's dialect
QUERY_WINDOWS = "query_windows"


def query_window_columns(K: int, dialect: Dialect = DUCKDB) -> list[tuple[str, str]]:
    """``QUERY_WINDOWS``'s columns: request number, query start frame, the words (as the
    engine stores them), the categories searched (empty: every row), the 16-bit slices the
    keyed stage probes."""
    return [("rq", "INTEGER"), ("qs", "INTEGER"),
            *((f"q{i}", "WORD") for i in range(len(dialect.word_columns(K)))),
            ("cats", "INTEGER[]"), ("nb", "INTEGER")]


def excerpt_batch_sql(K: int, keyed: bool = False, bands: int = 64,
                      dialect: Dialect = DUCKDB) -> str:
    """``excerpt_sql`` for many excerpt searches (*requests*) in ONE statement: every step
    keeps the request number ``rq`` (votes, the ``n_candidates`` best per request, the
    verification), the query windows are the rows of the table ``QUERY_WINDOWS`` instead of
    list parameters, and each request's categories (``cats``, empty for every row) and slices
    (``nb``, keyed only) are columns of its windows. Per request, the rows are those
    ``excerpt_sql`` returns for it alone (tests compare them), as (rq, rid, ob, s, qs, d),
    unordered: an ORDER BY is a job of its own on Spark, the caller sorts.

    Why: an engine where each statement is a job (Spark) would otherwise pay a job per query;
    each stored window is read once for the whole batch. Parameters: (scan only) cand bits,
    then bin, n_candidates, tol."""
    if dialect.family != "duckdb":
        from store.sql_dialects import excerpt_sql_for

        return excerpt_sql_for(dialect, excerpt_batch_sql(K, keyed, bands, DUCKDB_LAKE))
    W = len(dialect.word_columns(K))
    cols = ", ".join(f"q{i}" for i in range(W))
    p = 1
    if not keyed:
        cand = f"${p}"
        p += 1
    binp, ncand, tol = (f"${p}", f"${p + 1}", f"${p + 2}")
    dist = _dist(K, dialect)
    in_cats = "(len(q.cats) = 0 OR list_contains(q.cats, c.category))"
    if keyed:
        pairs_sql = "\nUNION ALL\n".join(
            f"SELECT q.rq AS rq, c.recording_id AS rid, c.start AS s, q.qs AS qs "
            f"FROM codes AS c JOIN q "
            f"ON {_band_key('c', 'w', b, dialect)} = {_band_key('q', 'q', b, dialect)}\n"
            f"WHERE q.nb > {b} AND {in_cats}"
            for b in range(min(bands, K // 16)))
        pairs = f"pairs AS (\n{pairs_sql}\n),\n" + _votes("rq, ", binp, keyed=True)
    else:
        pairs = ("pairs AS (\n"
                 "SELECT q.rq AS rq, c.recording_id AS rid, c.start AS s, q.qs AS qs, "
                 f"{dist} AS d\n"
                 f"FROM codes AS c, q\nWHERE {in_cats}\n),\n"
                 + _votes("rq, ", binp, keyed=False, where=f" WHERE d <= {cand}::INTEGER"))
    return (
        f"WITH q AS (\nSELECT rq, qs, {cols}, cats, nb FROM {QUERY_WINDOWS}\n),\n"
        f"{pairs}"
        "cand AS (\n"
        "SELECT rq, rid, ob FROM (SELECT rq, rid, ob, row_number() OVER (PARTITION BY rq "
        "ORDER BY n DESC, tie, rid, ob) AS pick FROM votes) AS v\n"
        f"WHERE pick <= {ncand}::INTEGER\n),\n"
        "cover AS (\n"
        f"SELECT cand.rq AS rq, cand.rid AS rid, cand.ob AS ob, c.start AS s, q.qs AS qs, "
        f"{dist} AS d\n"
        "FROM cand JOIN codes AS c ON c.recording_id = cand.rid\n"
        "JOIN q ON q.rq = cand.rq\n"
        f"WHERE abs(c.start - q.qs - cand.ob * {binp}::INTEGER) <= {tol}::INTEGER\n"
        ")\n"
        "SELECT rq, rid, ob, s, "
        f"{_nearest_query_window(binp)} AS qs, min(d) AS d\n"
        "FROM cover GROUP BY rq, rid, ob, s"
    )


def batch_params(K: int, rule: ExcerptRule, keyed: bool, dialect: Dialect = DUCKDB) -> list:
    """The bound values of ``excerpt_batch_sql`` (the rule's, shared by every request)."""
    params: list = [] if keyed else [int(np.floor(rule.cand_ber * K))]
    params += [int(rule.bin_frames), int(rule.n_candidates), int(rule.tol_frames)]
    return dialect.bind(params)


def excerpt_params(frames: np.ndarray, words: np.ndarray, categories: np.ndarray | None,
                   K: int, rule: ExcerptRule, keyed: bool = False,
                   dialect: Dialect = DUCKDB) -> list:
    """The bound values of ``excerpt_sql`` for a coded query (as ``dialect`` binds them)."""
    params: list = [[int(x) for x in frames]]
    bound = [dialect.word_values(w) for w in words]  # each window's words as stored
    params += [[w[i] for w in bound] for i in range(len(dialect.word_columns(K)))]
    if categories is not None:
        params.append(sorted({int(x) for x in categories}))
    if not keyed:
        params.append(int(np.floor(rule.cand_ber * K)))
    params += [int(rule.bin_frames), int(rule.n_candidates), int(rule.tol_frames)]
    return dialect.bind(params)


def _window_shares(rows: list[tuple], K: int, rule: ExcerptRule) -> dict[tuple[int, int], int]:
    """For each (query window, candidate recording) that matches (BER < ``tau_window``): how
    many recordings share that query window's evidence, 0 when it is explained away.

    A query window that several recordings match *equally* (within ``share_ber`` of the best
    match of the audio around it, +-``tol_frames``: a shared prompt or jingle) counts once,
    shared between them. One that a recording matches clearly better than the others (a copy
    of it at BER 0.02 against other takes of the same word at 0.20) belongs to that recording
    alone: the others get nothing for it. Without ``share_ber`` (models calibrated before it
    existed) every recording under ``tau_window`` shares alike."""
    tau = rule.tau_window
    per_window: dict[int, dict[int, int]] = {}
    for rid, _ob, _s, qs, d in rows:
        if d / K < tau:
            by_rid = per_window.setdefault(int(qs), {})
            by_rid[int(rid)] = min(int(d), by_rid.get(int(rid), K))
    # the best BER any recording reaches on the audio around each query window: windows within
    # ``tol_frames`` cover almost the same stretch (a clip is tried at several starts)
    starts = np.array(sorted(per_window), dtype=np.int64)
    best_at = np.array([min(per_window[int(q)].values()) for q in starts], dtype=np.int64)
    shares: dict[tuple[int, int], int] = {}
    for qs, by_rid in per_window.items():
        if rule.share_ber is None:
            equal = set(by_rid)
        else:
            near = np.abs(starts - qs) <= rule.tol_frames
            best = int(best_at[near].min())
            equal = {r for r, d in by_rid.items() if (d - best) / K <= rule.share_ber}
        for r in by_rid:
            shares[(qs, r)] = len(equal) if r in equal else 0
    return shares


def best_span_sum(gains: list[float]) -> float:
    """The largest sum of consecutive ``gains`` (Kadane's maximum subarray; the best single
    gain when all are negative): the evidence of a copy's best-surviving stretch."""
    best = cur = float(gains[0])
    for g in gains[1:]:
        cur = max(float(g), cur + float(g))
        best = max(best, cur)
    return best


def decide(rows: list[tuple], K: int, rule: ExcerptRule) -> list[ExcerptHit]:
    """Evidence per candidate from the verification rows ``(rid, ob, s, qs, d)``, best first,
    one hit per recording (its best offset: one the rule accepts, then the most evidence):
    each covered window adds ``tau_window - BER``, a matching one divided among the recordings
    that share it (``_window_shares``), one that does not match no less than
    ``min_window_gain``."""
    if not rows:
        return []
    tau, floor = rule.tau_window, rule.min_window_gain
    shares = _window_shares(rows, K, rule)
    groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for rid, ob, s, qs, d in rows:
        groups.setdefault((int(rid), int(ob)), []).append((int(s), int(qs), int(d)))
    best: dict[int, ExcerptHit] = {}
    for (rid, _ob), win in groups.items():
        win.sort()  # by stored start: a span is consecutive windows
        gains, strong = [], 0.0
        for _s, qs, d in win:
            gain = tau - d / K
            if gain > 0:
                n = shares.get((qs, rid), 1)
                gains.append(gain / n if n else 0.0)
                if d / K <= rule.strong_ber:
                    strong += 1.0 / n if n else 0.0
            else:
                gains.append(gain if floor is None else max(gain, floor))
        ev = best_span_sum(gains) if rule.evidence_over == "span" else float(sum(gains))
        ds = np.array([d for _, _, d in win], dtype=np.float64) / K
        i = int(np.argmin(ds))
        offs = np.array([s - qs for s, qs, _ in win])
        hit = ExcerptHit(recording_id=rid, offset_frames=int(np.median(offs[ds < tau]))
                         if np.any(ds < tau) else int(offs[i]), evidence=float(ev),
                         windows=len(win), mean_ber=float(ds.mean()), best_ber=float(ds[i]),
                         best_window=win[i][0], best_query_window=win[i][1],
                         close=int(np.sum(ds <= rule.cand_ber)), strong=float(strong))
        # a recording's offset that the rule accepts beats one with more evidence that it
        # does not (near-identical windows at one offset, chance ones at another)
        if rid not in best or ((rule.accepts(hit), hit.evidence)
                               > (rule.accepts(best[rid]), best[rid].evidence)):
            best[rid] = hit
    return sorted(best.values(), key=lambda h: (-h.evidence, h.mean_ber, h.recording_id))
