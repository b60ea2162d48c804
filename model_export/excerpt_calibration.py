"""Calibrate the excerpt decision rule on impostors (issue 12): the per-window threshold
``tau_window`` and the evidence a match needs for each number of covered windows.

Why both, and why from raw rows: a candidate's evidence is ``sum(tau_window - BER)`` over the
stored windows the query covers (``store.excerpt.decide``). With ``tau_window`` too low, a copy
in babble noise whose windows sit at BER 0.31 against impostor windows at 0.45-0.50 loses
evidence with every window, although the two are far apart; too high, and impostors' chance
windows add up. So the calibration searches each query once through the real path
(``Vault.search``, traversal, no threshold), keeps the verification rows the one SQL statement
returned, and then re-decides them for every ``tau_window`` of a grid: for each, the
thresholds are the largest evidence per bucket of covered windows, plus a margin (floored),
among the impostors that the rule's other guard (``min_close_windows``) lets through, and the
(``tau_window``, ``min_close_windows``) pair kept is the one with the highest recall of genuine
queries whose thresholds, set on one half of the queries, accept at most 0.25 % of the other
half's queries falsely (``MAX_CROSS_FALSE_RATE``). Genuine and impostor hits are judged as the
vault judges them (``ExcerptRule.accepts``), so the recall reported is the vault's.

Calibration data never overlaps fit or test data (``model_export.long_speech``): FSDD's
calibration speaker and the espeak-ng CALIB voices, long recordings (two thirds stored) and
short whole clips.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from model_export import long_speech as ls
from model_export.excerpt_fingerprint import fit_distortion, write_wav
from store import excerpt as _ex
from store.excerpt import ExcerptRule

__all__ = ["BUCKETS", "MIN_EVIDENCE", "TAU_WINDOW_GRID", "MIN_CLOSE_GRID", "MIN_WINDOW_GAIN_GRID",
           "STRONG_BER_GRID", "collect_rows", "bucket_thresholds", "calibrate_rule",
           "calibrate_strong", "choose_tau_window"]

#: upper edges of the buckets of covered windows that get their own evidence threshold
BUCKETS = (1, 2, 4, 8, 16, 32, 1 << 20)
#: no threshold below this: a match needs more agreeing than disagreeing windows whatever the
#: calibration saw (its impostors came from a vault far smaller than a user's)
MIN_EVIDENCE = 0.25
#: impostor candidates a bucket needs to be judged alone (else it keeps the stricter threshold
#: of the bucket below)
MIN_BUCKET_SAMPLES = 50
#: the per-window thresholds tried (fractions of K); the SQL candidate stage (``cand_ber``)
#: does not depend on it, so one search per query serves the whole grid
TAU_WINDOW_GRID = (0.26, 0.28, 0.30, 0.32, 0.34, 0.36, 0.38, 0.40)
#: the ``min_close_windows`` tried: how many covered windows within ``cand_ber`` a multi-window
#: match needs. More asks for more proof of a copy; but a copy in babble keeps most windows at
#: BER 0.26-0.32 and often only one under 0.25, so the calibration weighs what it costs
MIN_CLOSE_GRID = (1, 2)
#: the ``min_window_gain`` tried (None: a window that does not match subtracts all of
#: ``tau_window - BER``). Only None by default, measured: a floor keeps copies whose babble
#: destroyed most windows but left a few near BER 0.05 (CALIB stress set at 5 dB: 5 s 59 -> 69 of
#: 75), but on the CALIB queries it bought 0.5 % of recall by moving ``tau_window`` up to 0.36,
#: and on held-out voices that rule matched one outside 3 s excerpt (a synthetic voice saying
#: the same words: best window BER 0.11) under 10 of 13 conditions, while 5 s babble recall did
#: not move (0.958). Pass a grid to ``choose_tau_window`` to try it on other data
MIN_WINDOW_GAIN_GRID: tuple[float | None, ...] = (None,)
#: the share of calibration queries that thresholds set on the other half may accept falsely
#: (the two-fold check of ``choose_tau_window``): half the issue's 0.5 % target, since a user's
#: vault holds more impostors than the calibration's
MAX_CROSS_FALSE_RATE = 0.0025
#: the nearest candidates of a query that are judged (as ``Vault.search(top=5)``)
TOP = 5
#: the ``strong_ber`` tried for the rule's second way to match (``ExcerptRule.min_strong_windows``):
#: one value by default, the BER of a copy's windows through MP3 or a telephone line (0.00-0.10
#: on calibration voices), so that the count alone is set by the impostors
STRONG_BER_GRID = (0.10,)
#: near-identical windows a strong match needs beyond the most any calibration impostor had:
#: two, since a user's vault holds far more impostors than the calibration's
STRONG_MARGIN = 2
#: never fewer near-identical windows than this (adjacent stored windows overlap by 3/4, so
#: three span at least 1.5 s of audio)
MIN_STRONG_WINDOWS = 3


@dataclasses.dataclass
class Query:
    """One calibration query: its verification rows and the id of its true recording (None:
    the query's recording is not in the vault)."""

    rows: list
    true_id: int | None
    kind: str  # "excerpt" or "clip"


@contextlib.contextmanager
def _recording_rows(sink: list):
    """Keep the rows ``store.excerpt.decide`` is given (the search's one statement's result)."""
    original = _ex.decide

    def keep(rows, K, rule):
        sink.append(list(rows))
        return original(rows, K, rule)
    _ex.decide = keep
    try:
        yield
    finally:
        _ex.decide = original


def _excerpt_queries(inside: Sequence[np.ndarray], outside: Sequence[np.ndarray],
                     babble: Sequence[np.ndarray], n: int, rng: np.random.Generator):
    """(samples, index of the true recording or -1) of ``n`` excerpts of 1-6 s at random offsets,
    half from recordings in the vault, half from recordings that are not, each clean or through
    a random ``fit_distortion``."""
    sr = ls.SAMPLE_RATE
    for i in range(n):
        truth = i // 2 % len(inside) if i % 2 == 0 else -1
        y = inside[truth] if truth >= 0 else outside[(i // 2) % len(outside)]
        length = int(float(rng.choice([1.0, 2.0, 3.0, 5.0, 6.0])) * sr)
        off = int(rng.integers(max(1, y.shape[0] - length)))
        ex = y[off: off + length]
        if rng.random() < 0.8:
            ex = fit_distortion(rng, babble)[0](ex, sr)
        yield ex, truth


def _clip_queries(clips: Sequence[np.ndarray], babble: Sequence[np.ndarray],
                  rng: np.random.Generator):
    """Every whole short clip of the vault, clean or through a random ``fit_distortion``: the
    one-window case, where the nearest impostors are other takes of the same word."""
    for i, y in enumerate(clips):
        yield (fit_distortion(rng, babble)[0](y, ls.SAMPLE_RATE) if rng.random() < 0.8 else y), i


def collect_rows(encoder, stored: Sequence[np.ndarray], queries: Iterable, tmp: Path, tag: str,
                 kind: str) -> list[Query]:
    """Search a vault of ``stored`` with every query through the real path (traversal, no
    threshold) and keep each query's verification rows."""
    from store.vault import Vault

    paths = []
    for i, y in enumerate(stored):
        p = tmp / f"{tag}{i:04d}.wav"
        write_wav(p, y, ls.SAMPLE_RATE)
        paths.append(p)
    out: list[Query] = []
    with Vault.create(tmp / f"{tag}.duckdb", "calibration", encoder=encoder, kdf_log2_n=10) as v:
        v.ingest(paths)
        ids = {r.name: r.id for r in v.list(limit=None)}
        for ex, truth in queries:
            sink: list = []
            with _recording_rows(sink):
                v.search(ex, mode="traversal", top=TOP)
            out.append(Query(rows=sink[-1] if sink else [], kind=kind,
                             true_id=ids.get(f"{tag}{truth:04d}.wav") if truth >= 0 else None))
    return out


def _judged(queries: Sequence[Query], K: int, rule: ExcerptRule):
    """Per query: the true recording's hit or None, and the impostors' hits that pass the
    rule's close-window guard (the only ones the evidence threshold has to stop)."""
    for q in queries:
        hits = _ex.decide(q.rows, K, rule)[:TOP]
        genuine = next((h for h in hits if h.recording_id == q.true_id), None)
        yield q, genuine, [h for h in hits if h.recording_id != q.true_id and rule.close_enough(h)]


def bucket_thresholds(impostor: Sequence[tuple[int, float]], margin: float,
                      floor: float = MIN_EVIDENCE) -> list[list]:
    """Per bucket of covered windows: the largest impostor evidence in it plus ``margin``. An
    impostor covering more windows has more of them to fail on (each non-matching window
    subtracts), so long excerpts need less evidence than a threshold set by short ones would
    ask; a bucket with too few impostors keeps the previous threshold if that is higher."""
    out, lo, prev = [], 0, None
    for e in BUCKETS:
        ev = [x for w, x in impostor if lo < w <= e]
        t = max(ev) + margin if ev else None
        if prev is not None and (t is None or len(ev) < MIN_BUCKET_SAMPLES):
            t = prev if t is None else max(t, prev)
        if t is None:
            t = margin
        t = max(t, floor)
        out.append([e, round(float(t), 4)])
        prev, lo = t, e
    return out


def _with_thresholds(rule: ExcerptRule, thresholds: list[list]) -> ExcerptRule:
    return dataclasses.replace(rule, evidence_by_windows=tuple(tuple(t) for t in thresholds),
                               min_evidence=thresholds[0][1])


def _score(queries: Sequence[Query], K: int, rule: ExcerptRule, margin: float) -> dict:
    """Thresholds from all impostors, recall by kind, and the two-fold check: thresholds set on
    the even queries' impostors judged on the odd queries' (and back)."""
    judged = list(_judged(queries, K, rule))
    impostors = [(h.windows, h.evidence) for _, _, imp in judged for h in imp]
    final = _with_thresholds(rule, bucket_thresholds(impostors, margin))
    recall = {}
    for kind in ("excerpt", "clip"):
        true = [g for q, g, _ in judged if q.kind == kind and q.true_id is not None]
        found = sum(1 for g in true if g is not None and final.accepts(g))
        recall[kind] = found / max(1, len(true))
    crossed = 0
    for part in (0, 1):
        fit = [(h.windows, h.evidence) for i, (_, _, imp) in enumerate(judged) if i % 2 == part
               for h in imp]
        r = _with_thresholds(rule, bucket_thresholds(fit, margin))
        crossed += sum(1 for i, (_, _, imp) in enumerate(judged) if i % 2 != part
                       and any(r.accepts(h) for h in imp))
    return {"tau_window": rule.tau_window, "min_close_windows": rule.min_close_windows,
            "min_window_gain": rule.min_window_gain, "rule": final, "recall": recall, "cross_false": crossed, "queries": len(judged)}


def choose_tau_window(queries: Sequence[Query], K: int, base: ExcerptRule, margin: float,
                      grid: Sequence[float] = TAU_WINDOW_GRID,
                      close_grid: Sequence[int] = MIN_CLOSE_GRID,
                      gain_grid: Sequence[float | None] = MIN_WINDOW_GAIN_GRID,
                      log=print) -> tuple[dict, list]:
    """The (``tau_window``, ``min_close_windows``, ``min_window_gain``) of the grids with the best
    recall (excerpts and clips weighted alike) among those whose two-fold check accepts at most
    ``MAX_CROSS_FALSE_RATE`` of the queries (the fewest of the grid when none does); ties go to
    the stricter: more close windows, then no floor or the lower one, then the lower
    ``tau_window``."""
    scores = [_score(queries, K, dataclasses.replace(base, tau_window=float(t),
                                                     min_close_windows=int(m),
                                                     min_window_gain=g), margin)
              for m in close_grid for g in gain_grid for t in grid]
    for s in scores:
        log(f"  tau_window {s['tau_window']:.2f}, close windows {s['min_close_windows']}, "
            f"window gain floor {_floor(s['min_window_gain'])}: recall "
            f"excerpts {s['recall']['excerpt']:.3f}, clips {s['recall']['clip']:.3f}; "
            f"cross-checked false queries {s['cross_false']}")
    allowed = max(min(s["cross_false"] for s in scores),
                  int(MAX_CROSS_FALSE_RATE * len(queries)))
    ok = [s for s in scores if s["cross_false"] <= allowed]
    best = max(ok, key=lambda s: (round(sum(s["recall"].values()), 6), s["min_close_windows"],
                                  -(s["min_window_gain"] if s["min_window_gain"] is not None
                                    else -1.0), -s["tau_window"]))
    return best, scores


def _strong_impostors(queries: Sequence[Query], K: int, rule: ExcerptRule):
    """Per query: its genuine hit (or None) and the largest near-identical-window count any
    of its impostor hits reached, under ``rule`` (whose ``strong_ber`` counts them)."""
    for q in queries:
        hits = _ex.decide(q.rows, K, rule)[:TOP]
        genuine = next((h for h in hits if h.recording_id == q.true_id), None)
        yield genuine, max((h.strong for h in hits if h.recording_id != q.true_id), default=0.0)


def _strong_count(impostor_strong: Sequence[float]) -> int:
    return max(MIN_STRONG_WINDOWS, int(np.ceil(max(impostor_strong, default=0.0) - 1e-9))
               + STRONG_MARGIN)


def calibrate_strong(queries: Sequence[Query], K: int, rule: ExcerptRule,
                     grid: Sequence[float] = STRONG_BER_GRID, log=print) -> tuple[ExcerptRule, dict]:
    """The rule's second way to match (``ExcerptRule.min_strong_windows``), on the calibration
    queries: for each ``strong_ber`` of ``grid``, the count is the most near-identical windows
    any impostor hit reached plus ``STRONG_MARGIN``; kept is the ``strong_ber`` whose rule
    finds the most genuine queries, provided counts set on one half of the queries accept no
    impostor of the other half (ties: the lower ``strong_ber``). None qualifies: off.

    It is kept even when it finds no more calibration copies than the evidence alone (copies
    of the calibration voices lose few windows): the count is set by impostors only, it can
    only add matches, and the two-fold check is what it may cost."""
    base = dataclasses.replace(rule, min_strong_windows=0)
    before = sum(1 for q, g, _ in _judged(queries, K, base) if g is not None and base.accepts(g))
    trials = []
    for b in grid:
        judged = list(_strong_impostors(queries, K, dataclasses.replace(base, strong_ber=float(b))))
        n = _strong_count([m for _, m in judged])
        r = dataclasses.replace(base, strong_ber=float(b), min_strong_windows=n)
        found = sum(1 for g, _ in judged if g is not None and r.accepts(g))
        half = [_strong_count([m for i, (_, m) in enumerate(judged) if i % 2 == part])
                for part in (0, 1)]
        crossed = sum(1 for i, (_, m) in enumerate(judged) if m >= half[1 - i % 2])
        trials.append({"strong_ber": float(b), "min_strong_windows": n, "found": found,
                       "cross_false": crossed})
        log(f"  strong windows: BER <= {b:.2f} x {n}: genuine found {found} (without: {before}); "
            f"cross-checked false queries {crossed}")
    ok = [t for t in trials if t["cross_false"] == 0 and t["found"] >= before]
    if not ok:
        return base, {"strong_ber": None, "min_strong_windows": 0, "grid": trials}
    best = max(ok, key=lambda t: (t["found"], -t["strong_ber"]))
    return (dataclasses.replace(base, strong_ber=best["strong_ber"],
                                min_strong_windows=best["min_strong_windows"]),
            {"strong_ber": best["strong_ber"], "min_strong_windows": best["min_strong_windows"],
             "grid": trials})


def _floor(g: float | None) -> str:
    return "none" if g is None else f"{g:.2f}"


def calibrate_rule(encoder, longs: Sequence[np.ndarray], clips: Sequence[np.ndarray], *,
                   n_queries: int = 800, seed: int = 3, margin: float = 0.05,
                   grid: Sequence[float] = TAU_WINDOW_GRID, log=print) -> tuple[ExcerptRule, dict]:
    """The rule, from impostors, through the real search path with no threshold: (a) a vault of
    two thirds of the long ``longs`` searched with 1-6 s excerpts of them and of the other
    third; (b) a vault of short whole ``clips`` searched with a copy of each (the one-window
    case, where other takes of the same word are the nearest impostors). ``tau_window`` is
    chosen on ``grid`` with ``min_close_windows`` (``choose_tau_window``)."""
    rng = np.random.default_rng(seed)
    inside = [y for i, y in enumerate(longs) if i % 3 != 2]
    outside = [y for i, y in enumerate(longs) if i % 3 == 2]
    with tempfile.TemporaryDirectory(prefix="sv-calib-") as tmp:
        queries = collect_rows(encoder, inside,
                               _excerpt_queries(inside, outside, outside, n_queries, rng),
                               Path(tmp), "long", "excerpt")
        queries += collect_rows(encoder, clips, _clip_queries(clips, outside, rng), Path(tmp),
                                "clip", "clip")
    base = dataclasses.replace(ExcerptRule.from_dict(encoder.excerpt_rule), min_strong_windows=0)
    best, scores = choose_tau_window(queries, encoder.K, base, margin, grid, log=log)
    rule, strong = calibrate_strong(queries, encoder.K, best["rule"], log=log)
    thresholds = [list(t) for t in rule.evidence_by_windows]
    report = {"excerpt_queries": n_queries, "clip_queries": len(clips), "margin": margin,
              "floor": MIN_EVIDENCE, "tau_window": rule.tau_window,
              "min_close_windows": rule.min_close_windows,
              "min_window_gain": rule.min_window_gain, "thresholds": thresholds,
              "strong": strong,
              "recall_excerpts": best["recall"]["excerpt"], "recall_clips": best["recall"]["clip"],
              "grid": [{"tau_window": s["tau_window"], "min_close_windows": s["min_close_windows"],
                        "min_window_gain": s["min_window_gain"], "recall": s["recall"],
                        "cross_false": s["cross_false"]} for s in scores]}
    log(f"  calibration: tau_window {rule.tau_window:.2f}, close windows "
        f"{rule.min_close_windows}, window gain floor {_floor(rule.min_window_gain)}, thresholds {thresholds}; recall "
        f"excerpts {report['recall_excerpts']:.3f}, clips {report['recall_clips']:.3f}")
    return rule, report
