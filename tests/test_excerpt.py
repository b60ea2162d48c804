"""Excerpt search (issue 12): identification windows, the decision rule, and the real path:
a vault of long recordings, the shipped model, DuckDB, searched with a few seconds of one."""

from __future__ import annotations

import numpy as np
import pytest

from hashing.windowing import WindowingSpec, query_windows, stored_windows
from store import schema
from store.excerpt import ExcerptRule, decide
from tests.conftest import make_speech_like

SR = 16_000


def long_recording(seed: int, seconds: float = 20.0) -> np.ndarray:
    """Speech-like phrases of 0.6-1.4 s with 0.1-0.5 s pauses (a quiet noise floor), each
    phrase its own random voice: no two recordings share content."""
    rng = np.random.default_rng(seed)
    parts, n = [], 0
    while n < seconds * SR:
        phrase = make_speech_like(SR, float(rng.uniform(0.6, 1.4)), seed=int(rng.integers(1 << 30)),
                                  f0=float(rng.uniform(90, 220)), syllables=int(rng.integers(2, 5)),
                                  lead_silence=0.0, trail_silence=0.0)
        pause = (rng.standard_normal(int(rng.uniform(0.1, 0.5) * SR)) * 1e-4).astype(np.float32)
        parts += [phrase, pause]
        n += phrase.size + pause.size
    return np.concatenate(parts)[: int(seconds * SR)]


# --------------------------------------------------------------------------- windows


def test_stored_windows_on_a_grid_query_windows_every_frame():
    spec = WindowingSpec()
    y = long_recording(1, 8.0)
    st, q = stored_windows(y, spec), query_windows(y, spec)
    assert set(np.diff(st.starts[:-1])) <= {spec.store_hop_frames} or len(st.starts) < 3
    assert np.all(np.diff(q.starts) >= spec.query_hop_frames)
    assert q.n > 5 * st.n  # a query tries every frame, a vault keeps every 16th
    assert st.x.shape[1] == q.x.shape[1] == spec.dim
    # the same speech at the same place gives the same window, whoever cut it
    both = np.intersect1d(st.starts, q.starts)
    assert both.size > 0
    i, j = np.flatnonzero(st.starts == both[0])[0], np.flatnonzero(q.starts == both[0])[0]
    assert np.allclose(st.x[i], q.x[j], atol=1e-4)


def test_pauses_are_not_windows_but_silence_keeps_one():
    spec = WindowingSpec()
    speech = long_recording(2, 3.0)
    gap = np.zeros(5 * SR, np.float32)
    w = stored_windows(np.concatenate([speech, gap, speech]), spec)
    gap_frames = (3 * SR // spec.hop_length + spec.window_frames, 8 * SR // spec.hop_length)
    inside_gap = (w.starts >= gap_frames[0]) & (w.starts + spec.window_frames <= gap_frames[1])
    assert not inside_gap.any()
    assert stored_windows(np.zeros(2 * SR, np.float32), spec).n == 1


def test_windows_buried_in_a_copys_noise_are_dropped_clean_ones_kept():
    """A loud phrase, then phrases 20 dB quieter. Clean, every window is kept as without the
    noise-floor rule (its floor is the pauses). With white noise 10 dB under the mean power
    (above the quiet phrases), the query keeps only windows over the loud phrase: the buried
    stretch neither matches nor votes. Off (``min_snr_db`` 0), it is searched."""
    from hashing.cpo import add_noise_snr
    from hashing.windowing import audible_of_energy, band_log_mel, frame_energy_db

    spec, off = WindowingSpec(), WindowingSpec(min_snr_db=0.0)
    loud, quiet = long_recording(4, 1.5), long_recording(5, 3.5) * np.float32(10 ** (-20 / 20))
    y = np.concatenate([loud, quiet])
    split = loud.size // spec.hop_length
    for cut in (stored_windows, query_windows):
        a, b = cut(y, spec), cut(y, off)
        assert np.array_equal(a.starts, b.starts) and np.array_equal(a.x, b.x)
    noisy = add_noise_snr(y, 10.0, 0)
    heard = audible_of_energy(frame_energy_db(band_log_mel(noisy, spec)), spec)
    assert heard[:split].mean() > 0.5 and heard[split + 8:].mean() < 0.05
    assert audible_of_energy(frame_energy_db(band_log_mel(noisy, spec)), off) is None
    q, q_off = query_windows(noisy, spec), query_windows(noisy, off)
    assert q.starts.min() < split and q.starts.max() < split
    assert q_off.starts.max() > split + 2 * spec.window_frames
    assert np.all(q.audible >= spec.min_audible_frames) and q_off.audible is None


def test_a_windowing_stored_before_the_noise_floor_keeps_its_activity():
    """Models made before ``min_snr_db`` existed store a windowing without it: their vaults must
    cut the windows their codes were made from (activity relative to the loud level only)."""
    old = {k: v for k, v in WindowingSpec().to_dict().items() if k != "min_snr_db"}
    assert WindowingSpec.from_dict(old).min_snr_db == 0.0
    assert WindowingSpec.from_dict(WindowingSpec().to_dict()) == WindowingSpec()
    with pytest.raises(Exception, match="min_snr_db"):
        WindowingSpec(min_snr_db=-1.0)


def test_gain_does_not_change_windows():
    spec = WindowingSpec()
    y = long_recording(3, 4.0)
    a, b = stored_windows(y, spec), stored_windows(y * 0.1, spec)
    assert np.array_equal(a.starts, b.starts)
    assert np.allclose(a.x, b.x, atol=1e-3)


# --------------------------------------------------------------------------- the rule


def test_rule_thresholds_grow_with_windows_and_round_trip():
    rule = ExcerptRule(evidence_by_windows=((1, 0.1), (4, 0.3), (16, 0.5)))
    assert [rule.threshold(n) for n in (1, 2, 4, 5, 16, 99)] == [0.1, 0.3, 0.3, 0.5, 0.5, 0.5]
    assert ExcerptRule.from_dict(rule.to_dict()) == rule


def test_decide_consistent_offsets_beat_a_chance_window_and_prompts_are_shared():
    K, rule = 256, ExcerptRule(tau_window=0.3)
    d = lambda ber: int(ber * K)  # noqa: E731
    rows = []
    # recording 1: five windows at offset 100 all close; one window far off
    rows += [(1, 12, 100 + 16 * k, 16 * k, d(0.08)) for k in range(5)] + [(1, 12, 180, 80, d(0.45))]
    # recording 2: one chance window, the others not matching
    rows += [(2, 3, 30, 6, d(0.12))] + [(2, 3, 30 + 16 * k, 6 + 16 * k, d(0.42)) for k in (1, 2)]
    hits = decide(rows, K, rule)
    assert [h.recording_id for h in hits] == [1, 2]
    assert hits[0].evidence > 0.8 and hits[1].evidence < 0.1
    assert hits[0].offset_frames == 100 and hits[0].windows == 6
    # a shared prompt: both recordings match the same query windows equally -> evidence halves
    prompt = [(r, 0, 16 * k, 16 * k, d(0.05)) for r in (5, 6) for k in range(3)]
    specific = [(5, 0, 48 + 16 * k, 48 + 16 * k, d(0.05)) for k in range(3)]
    specific += [(6, 0, 48 + 16 * k, 48 + 16 * k, d(0.40)) for k in range(3)]
    h5, h6 = decide(prompt + specific, K, rule)
    assert h5.recording_id == 5
    assert h6.evidence == pytest.approx(3 * 0.25 / 2 - 3 * 0.10, abs=0.02)
    assert h5.evidence > h6.evidence + 0.5


def test_votes_count_each_stored_window_once_per_offset():
    """The vote (``store.excerpt._votes``, two plain GROUP BYs) equals ``count(DISTINCT s)``
    per (recording, offset bin) with its tie-break, keyed and scanned, on pairs where stored
    windows repeat (several query windows hit one stored window)."""
    import duckdb

    from store.excerpt import _votes

    rng = np.random.default_rng(5)
    n = 400
    con = duckdb.connect()
    con.execute("CREATE TABLE pairs AS SELECT * FROM (SELECT unnest($1::INTEGER[]) AS rid, "
                "unnest($2::INTEGER[]) AS s, unnest($3::INTEGER[]) AS qs, "
                "unnest($4::INTEGER[]) AS d)",
                [rng.integers(1, 4, n).tolist(), (16 * rng.integers(0, 6, n)).tolist(),
                 rng.integers(0, 40, n).tolist(), rng.integers(0, 200, n).tolist()])
    for keyed, where, tie in ((True, "", "-count(*)"), (False, " WHERE d <= 90", "min(d)")):
        ours = con.execute("WITH " + _votes("", "8", keyed, where).rstrip(",\n")
                           + "\nSELECT rid, ob, n, tie FROM votes ORDER BY ALL").fetchall()
        ref = con.execute("SELECT rid, round((s - qs) / 8::DOUBLE)::INTEGER AS ob, "
                          f"count(DISTINCT s) AS n, {tie} AS tie FROM pairs{where} "
                          "GROUP BY rid, ob ORDER BY ALL").fetchall()
        assert ours == ref and len(ref) > 20 and max(r[2] for r in ref) > 1


def test_keyed_slices_shrink_as_a_query_covers_more_windows():
    """A long query probes fewer 16-bit slices per stored window (its windows are many chances);
    a one-window clip probes them all; never fewer than four, never more than K/16."""
    rule = ExcerptRule(key_bands=64, key_probes=96)
    K, hop = 384, 16
    clip, three, five, minute = (rule.bands_for(K, span, hop) for span in (32, 123, 248, 3680))
    assert clip == K // 16 == 24
    assert clip >= three > five >= minute == 4
    assert rule.bands_for(K, 248, hop) * (248 // hop + 1) >= 96  # the probe budget is kept
    assert ExcerptRule(key_bands=64, key_probes=0).bands_for(K, 3680, hop) == 24  # no budget
    assert ExcerptRule(key_bands=2, key_probes=96).bands_for(K, 0, hop) == 2


def test_a_keyed_search_spends_at_least_the_engines_probe_budget():
    """A model's rule that stored a smaller budget (the shipped one: 96) still gets
    ``KEY_PROBES`` (a 5 s query covering 16 stored windows: 12 slices, not 6); a rule asking
    more gets more."""
    from store.excerpt import KEY_PROBES

    K, hop, five = 384, 16, 248
    covered = five // hop + 1
    assert ExcerptRule(key_probes=96).bands_for(K, five, hop) == -(-KEY_PROBES // covered)
    assert ExcerptRule(key_probes=96).bands_for(K, five, hop) > -(-96 // covered)
    assert ExcerptRule(key_probes=4 * KEY_PROBES).bands_for(K, five, hop) == K // 16


def test_calibration_keeps_the_tau_window_that_finds_more_and_accepts_no_impostor():
    """``choose_tau_window`` on hand-made verification rows: genuine copies with one window at
    BER 0.20 and the rest at 0.30-0.35 (babble) are lost at tau_window 0.30 and found at 0.36,
    while impostors (one chance window, the rest at 0.47) stay below every threshold set on the
    other half. Asking two close windows would lose every copy for no impostor: the grid keeps
    one, judging as the vault does (``ExcerptRule.accepts``)."""
    from model_export.excerpt_calibration import Query, bucket_thresholds, choose_tau_window

    K = 384
    d = lambda ber: int(round(ber * K))  # noqa: E731
    rng = np.random.default_rng(0)
    queries = []
    for i in range(200):
        genuine = [(1, 0, 16 * k, 16 * k, d(0.20 if k == 0 else rng.uniform(0.30, 0.35)))
                   for k in range(12)]
        chance = [(2 + i % 7, 5, 16 * k, 16 * k, d(0.12 if k == 0 else rng.uniform(0.44, 0.5)))
                  for k in range(12)]
        queries.append(Query(rows=genuine + chance, true_id=1, kind="excerpt"))
        queries.append(Query(rows=list(chance), true_id=None, kind="excerpt"))
    best, scores = choose_tau_window(queries, K, ExcerptRule(), margin=0.05, grid=(0.30, 0.36),
                                     close_grid=(1, 2), log=lambda *_: None)
    by = {(s["tau_window"], s["min_close_windows"]): s for s in scores}
    assert by[(0.30, 1)]["recall"]["excerpt"] < 0.5 < by[(0.36, 1)]["recall"]["excerpt"]
    assert by[(0.36, 2)]["recall"]["excerpt"] == 0.0  # one close window each: the guard's cost
    assert (best["tau_window"], best["min_close_windows"]) == (0.36, 1)
    assert best["cross_false"] == 0 and best["rule"].min_close_windows == 1
    # thresholds: largest impostor evidence of the bucket + margin, never under the floor
    t = bucket_thresholds([(1, 0.1), (12, -0.5)], 0.05, floor=0.25)
    assert t[0] == [1, 0.25] and all(x[1] >= 0.25 for x in t)
    assert bucket_thresholds([(1, 0.4)] * 60, 0.05)[0] == [1, 0.45]


def test_a_copy_that_lost_most_windows_to_noise_is_kept_by_the_window_gain_floor():
    """Three windows at BER 0.05 and thirteen destroyed (0.47, where unrelated windows sit): the
    linear penalty sinks the copy under zero; with ``min_window_gain`` the lost windows cost
    little and the copy is found, while an impostor (one chance window at 0.20 among fifteen
    at 0.47) stays far below. The calibration keeps a floor only because it finds more."""
    from model_export.excerpt_calibration import Query, choose_tau_window

    K = 384
    d = lambda ber: int(round(ber * K))  # noqa: E731
    copy = [(1, 0, 16 * k, 16 * k, d(0.05 if k in (6, 7, 8) else 0.47)) for k in range(16)]
    chance = [(2, 0, 16 * k, 16 * k, d(0.20 if k == 3 else 0.47)) for k in range(16)]
    linear, floored = ExcerptRule(tau_window=0.36), ExcerptRule(tau_window=0.36, min_window_gain=-0.03)
    (h_lin,), (h_floor,) = decide(copy, K, linear), decide(copy, K, floored)
    assert h_lin.evidence < 0 < 0.5 < h_floor.evidence
    assert decide(chance, K, floored)[0].evidence < 0
    assert ExcerptRule.from_dict({"tau_window": 0.3}).min_window_gain is None  # older models
    assert ExcerptRule.from_dict(floored.to_dict()) == floored
    queries = []
    for i in range(100):
        queries.append(Query(rows=copy + chance, true_id=1, kind="excerpt"))
        queries.append(Query(rows=list(chance), true_id=None, kind="excerpt"))
    best, scores = choose_tau_window(queries, K, ExcerptRule(), margin=0.05, grid=(0.36,),
                                     close_grid=(1,), gain_grid=(None, -0.03),
                                     log=lambda *_: None)
    by = {s["min_window_gain"]: s["recall"]["excerpt"] for s in scores}
    assert by[None] == 0.0 and by[-0.03] == 1.0
    assert best["min_window_gain"] == -0.03 and best["cross_false"] == 0


def test_a_copy_with_a_few_near_identical_windows_matches_a_shared_prompt_does_not():
    """Three covered windows at BER 0.04-0.06 and fifteen destroyed (0.45): the summed evidence
    is negative, but ``min_strong_windows`` 3 at ``strong_ber`` 0.10 makes it a match, with the
    offset of its near-identical windows. The same three windows shared equally with another
    recording (a prompt both say) count as half each: no match for either. A rule stored before
    the setting existed keeps it off."""
    K = 384
    d = lambda ber: int(round(ber * K))  # noqa: E731
    copy = [(1, 2, 16 * k, 16 * k - 16, d(0.04 + 0.01 * (k % 3) if k in (7, 8, 9) else 0.45))
            for k in range(18)]
    off, on = (ExcerptRule(tau_window=0.34, min_strong_windows=m, strong_ber=0.10) for m in (0, 3))
    (h,) = decide(copy, K, on)
    assert h.evidence < on.threshold(h.windows) and h.strong == 3.0
    assert not off.accepts(h) and on.accepts(h) and h.offset_frames == 16
    prompt = [(2, 2, s, q, dd) for (_r, _o, s, q, dd) in copy]
    shared = decide(copy + prompt, K, on)
    assert [x.strong for x in shared] == [1.5, 1.5] and not any(on.accepts(x) for x in shared)
    assert ExcerptRule.from_dict({"tau_window": 0.3}).min_strong_windows == 0
    assert ExcerptRule.from_dict(on.to_dict()) == on
    # the same recording at a chance offset with more evidence: the accepted offset is its hit
    chance = [(1, 40, 16 * k, 16 * k - 320, d(0.33)) for k in range(18)]
    (h2,) = decide(copy + chance, K, on)
    assert h2.evidence < decide(chance, K, on)[0].evidence and on.accepts(h2)
    assert h2.offset_frames == 16


def test_a_copy_is_judged_by_the_stretch_that_survived_when_the_rule_says_span():
    """Babble louder than a quiet part of a recording: two windows at BER 0.09 and one at 0.27,
    then fifteen destroyed (0.45). Summed over all covered windows the evidence is negative; over
    the best span of consecutive windows it is that stretch's (0.25 + 0.25 + 0.07). An impostor
    whose two chance windows are apart gets only its best one. A rule stored before the setting
    existed sums all."""
    from store.excerpt import best_span_sum

    assert best_span_sum([1.0, -3.0, 2.0, 2.0, -1.0, 3.0]) == 6.0
    assert best_span_sum([-0.2, -0.1, -0.3]) == -0.1
    K = 384
    d = lambda ber: int(round(ber * K))  # noqa: E731
    bers = [0.09, 0.09, 0.27] + [0.45] * 15
    copy = [(1, 0, 16 * k, 16 * k, d(b)) for k, b in enumerate(bers)]
    chance = [(2, 0, 16 * k, 16 * k, d(0.30 if k in (3, 9) else 0.45)) for k in range(18)]
    total, span = (ExcerptRule(tau_window=0.34, evidence_over=e) for e in ("all", "span"))
    (h_all,) = decide(copy, K, total)
    (h_span,) = decide(list(reversed(copy)), K, span)  # rows in any order
    assert h_all.evidence < 0
    assert h_span.evidence == pytest.approx(sum(0.34 - d(b) / K for b in bers[:3]))
    assert decide(chance, K, span)[0].evidence == pytest.approx(0.34 - d(0.30) / K)
    assert (h_span.windows, h_span.close, h_span.offset_frames) == (18, 2, 0)
    assert ExcerptRule.from_dict({"tau_window": 0.3}).evidence_over == "all"
    assert ExcerptRule.from_dict(span.to_dict()) == span


def test_calibration_sets_the_strong_window_count_above_every_impostor():
    """``calibrate_strong`` on hand-made rows: impostors reach at most one window at BER 0.09,
    so the count is that plus the margin (3, the floor); copies with three windows at 0.05 and
    the rest destroyed are found only this way; with impostors that reach four near-identical
    windows the count rises above them (6) and the copies stay lost."""
    from model_export.excerpt_calibration import Query, calibrate_strong

    K = 384
    d = lambda ber: int(round(ber * K))  # noqa: E731
    base = ExcerptRule(tau_window=0.34, evidence_by_windows=((1, 0.25), (32, 0.25)))
    copy = [(1, 0, 16 * k, 16 * k, d(0.05 if k in (4, 5, 6) else 0.45)) for k in range(16)]

    def queries(impostor_close: int) -> list:
        chance = [(2, 0, 16 * k, 16 * k, d(0.09 if k < impostor_close else 0.46))
                  for k in range(16)]
        return [q for _ in range(50) for q in (Query(rows=copy + chance, true_id=1, kind="excerpt"),
                                             Query(rows=list(chance), true_id=None, kind="excerpt"))]
    rule, report = calibrate_strong(queries(1), K, base, grid=(0.10,), log=lambda *_: None)
    assert (rule.strong_ber, rule.min_strong_windows) == (0.10, 3)
    assert report["grid"][0]["found"] == 50 and report["grid"][0]["cross_false"] == 0
    rule, report = calibrate_strong(queries(4), K, base, grid=(0.10,), log=lambda *_: None)
    assert rule.min_strong_windows == 6 and report["grid"][0]["found"] == 0


def test_a_clearly_better_match_takes_the_window_an_equal_one_shares_it():
    """A clean copy (BER 0.00) and two other takes of the word (0.20, 0.22) all match the one
    query window under tau_window: the copy keeps the whole gain, the takes get nothing; two
    recordings within ``share_ber`` of each other share it (a prompt)."""
    K = 384
    d = lambda ber: int(round(ber * K))  # noqa: E731
    rows = [(1, 0, 0, 5, d(0.0)), (2, 0, 0, 5, d(0.20)), (3, 0, 0, 5, d(0.22))]
    hits = {h.recording_id: h for h in decide(rows, K, ExcerptRule(tau_window=0.3))}
    assert hits[1].evidence == pytest.approx(0.3) and hits[2].evidence == hits[3].evidence == 0
    legacy = {h.recording_id: h for h in decide(rows, K, ExcerptRule(tau_window=0.3,
                                                                     share_ber=None))}
    assert legacy[1].evidence == pytest.approx(0.1)  # shared three ways, as models before did
    near = [(1, 0, 0, 5, d(0.02)), (2, 0, 0, 5, d(0.04))]
    h1, h2 = decide(near, K, ExcerptRule(tau_window=0.3))
    assert h1.evidence == pytest.approx(0.28 / 2, abs=1e-3)
    assert h2.evidence == pytest.approx(0.26 / 2, abs=1e-3)
    # the copy matched at another start of the same stretch (a clip is tried at several) still
    # explains the take's window away
    shifted = [(1, 0, 0, 5, d(0.0)), (2, 0, 0, 9, d(0.08))]
    assert {h.recording_id: h.evidence for h in decide(shifted, K, ExcerptRule())}[2] == 0


@pytest.mark.parametrize("keyed", [False, True])
def test_candidate_ties_go_to_the_nearest_not_the_lowest_id(keyed):
    """Whole clips stored as one window each: the copy and its near impostors all get one vote.
    With more impostors than candidate slots, the copy (the highest id here) must survive."""
    import duckdb

    from store.excerpt import excerpt_params, excerpt_sql
    from store import schema

    K, rng = 384, np.random.default_rng(5)
    bits = rng.integers(0, 2, K).astype(np.uint8)
    con = duckdb.connect()
    con.execute(schema.codes_ddl(K))  # as a vault
    from hashing import codes as _codes

    rows = []
    for rid in range(1, 12):  # ids 1-11: impostors at BER 0.18; id 12: the copy
        b = bits.copy()
        b[rng.choice(K, int(0.18 * K), replace=False)] ^= 1
        rows.append(b)
    words = _codes.pack_words(np.array(rows + [bits]))
    schema.insert_codes(con, "codes", K, np.arange(1, 13), np.zeros(12), np.zeros(12), words,
                        np.zeros(12))
    rule = ExcerptRule(n_candidates=4, key_bands=24)
    q = np.array(_codes.pack_words(bits[None, :]), dtype=np.uint64)
    sql = excerpt_sql(K, False, keyed, 24)
    rows = con.execute(sql, excerpt_params(np.array([0]), q, None, K, rule, keyed)).fetchall()
    assert 12 in {r[0] for r in rows}
    assert decide(rows, K, rule)[0].recording_id == 12


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("two_stage", [False, True])
def test_duckdbs_spelling_of_the_statement_returns_the_portable_texts_rows(keyed, two_stage):
    """The statement DuckDB runs (query windows materialized, the verification an equi-join
    over the frames within ``tol``) returns exactly the rows of the portable text the other
    engines are given, on a vault whose copies sit at offsets off the vote's bin grid (so
    several query windows fall within ``tol`` of a stored one, some at the edge)."""
    import duckdb

    from hashing import codes as _codes
    from store import excerpt as ex

    K, rng = 384, np.random.default_rng(11)
    n_rec, per = 30, 20
    bits = rng.integers(0, 2, (n_rec * per, K)).astype(np.uint8)
    words = _codes.pack_words(bits)
    rid, starts = np.arange(n_rec * per) // per + 1, (np.arange(n_rec * per) % per) * 16
    con = duckdb.connect()
    con.execute(schema.codes_ddl(K))
    schema.insert_codes(con, "codes", K, rid, np.zeros(rid.size), rid % 4, words, starts)
    # a query every frame over recording 7's windows 5-9, starting 3 frames into its grid
    frames = np.arange(5 * 16 + 3, 10 * 16 + 3)
    src = bits[6 * per + (frames - 3) // 16].copy()
    src ^= (rng.random(src.shape) < 0.06).astype(np.uint8)
    q = np.asarray(_codes.pack_words(src), dtype=np.uint64)
    cats = np.array([0, 3]) if two_stage else None
    rule = ExcerptRule(n_candidates=6, key_bands=24)
    params = ex.excerpt_params(frames, q, cats, K, rule, keyed)
    ours = ex.excerpt_sql(K, two_stage, keyed, 24)
    portable = ex._excerpt_sql(K, two_stage, keyed, 24, ex.DUCKDB, duckdb_plan=False)
    assert "MATERIALIZED" in ours and "MATERIALIZED" not in portable and ours != portable
    got, ref = (con.execute(sql, params).fetchall() for sql in (ours, portable))
    assert got == ref
    # the copy is verified at its offset, every covered window near (the test is not vacuous)
    assert sum(1 for r in got if r[:2] == (7, 0) and r[4] < 0.15 * K) == 5 and len({r[:2] for r in got}) > 1


def test_a_match_needs_several_close_windows_not_only_evidence():
    """Seven windows each just under tau_window (alike but unrelated sounds) add up to enough
    evidence, but only one of them is within cand_ber: no match. A copy with two close windows
    among seven is one; a one-window clip needs only its one."""
    K = 384
    d = lambda ber: int(round(ber * K))  # noqa: E731
    rule = ExcerptRule(tau_window=0.34, evidence_by_windows=((1, 0.25), (8, 0.25)))
    alike = [(1, 0, 16 * k, 16 * k, d(0.20 if k == 0 else 0.29)) for k in range(7)]
    copy = [(2, 0, 16 * k, 16 * k, d(0.10 if k < 2 else 0.30)) for k in range(7)]
    (h_alike,) = decide(alike, K, rule)
    (h_copy,) = decide(copy, K, rule)
    assert h_alike.evidence >= rule.threshold(7) and h_alike.close == 1
    assert not rule.accepts(h_alike) and rule.accepts(h_copy)
    (clip,) = decide([(3, 0, 0, 0, d(0.05))], K, rule)
    assert rule.accepts(clip)
    assert ExcerptRule.from_dict({"tau_window": 0.3}).min_close_windows == 0  # older models


# --------------------------------------------------------------------------- the real path


@pytest.fixture(scope="module")
def excerpt_vault(tmp_path_factory):
    from hashing.audio import write_wav
    from store.vault import Vault

    d = tmp_path_factory.mktemp("excerpt")
    recs = {f"rec{i}.wav": long_recording(100 + i, 20.0) for i in range(4)}
    for name, y in recs.items():
        write_wav(d / name, y, SR)
    path = d / "v.duckdb"
    with Vault.create(path, "pw", kdf_log2_n=10) as v:
        if v.encoder.windowing is None:
            pytest.skip("the default model has no identification windows")
        rep = v.ingest([d / f"rec{i}.wav" for i in range(3)])  # rec3 stays outside
        assert len(rep.added) == 3
    return path, recs


@pytest.mark.parametrize("name,start,length", [("rec1.wav", 7.3, 4.0), ("rec2.wav", 12.05, 3.0),
                                               ("rec0.wav", 0.0, 5.0)])
def test_excerpt_found_alone_with_its_offset_in_a_reopened_vault(excerpt_vault, name, start, length):
    from store.vault import Vault

    path, recs = excerpt_vault
    y = recs[name]
    ex = y[int(start * SR): int((start + length) * SR)]
    with Vault.open(path) as v:  # read-only, model loaded from the file
        res = v.search(ex)
    assert res.matched, [(h.name, h.evidence, h.windows) for h in res.nearest]
    assert [h.name for h in res.hits] == [name]
    assert res.hits[0].offset == pytest.approx(start, abs=0.05)
    # a clean excerpt: most covered windows are near-identical, and the table says so
    assert res.hits[0].windows >= res.hits[0].near_identical >= 3
    from commands.tables import evidence_text

    assert evidence_text(res.hits[0]).endswith(f"win, {res.hits[0].near_identical:g} near)")


def test_degraded_excerpt_found(excerpt_vault):
    from hashing import cpo
    from store.vault import Vault

    path, recs = excerpt_vault
    ex = recs["rec2.wav"][5 * SR: 9 * SR]
    ex = cpo.add_noise_snr(cpo.telephone_band(cpo.gain_db(ex, -6.0), SR), 20.0, 0)
    with Vault.open(path) as v:
        res = v.search(ex)
    assert res.matched and res.hits[0].name == "rec2.wav"
    assert res.hits[0].offset == pytest.approx(5.0, abs=0.1)


@pytest.fixture(scope="module")
def speech_vault(tmp_path_factory):
    """Three recordings of synthesised speech stored, a fourth kept outside (espeak-ng, other
    voices and sentences). Impostors must be speech: the phrases of ``long_recording`` are
    harmonic glides under three formants, and two of them with different seeds sit at BER
    0.11-0.17 over whole stretches, as close as a copy through babble; real speech stays above
    0.41 (issue 12's calibration), so only speech can say what an outside excerpt does."""
    from hashing.audio import write_wav
    from model_export import long_speech as ls
    from store.vault import Vault

    if not ls.espeak_available():
        pytest.skip("needs espeak-ng (Debian package espeak-ng) to synthesise speech")
    recs = ls.espeak_recordings(ls.ESPEAK_TEST_VOICES, 4, seed=5, min_s=16.0, max_s=20.0,
                                prefix="speech")
    d = tmp_path_factory.mktemp("speech")
    for i, r in enumerate(recs):
        write_wav(d / f"rec{i}.wav", r.samples, ls.SAMPLE_RATE)
    path = d / "v.duckdb"
    with Vault.create(path, "pw", kdf_log2_n=10) as v:
        if v.encoder.windowing is None:
            pytest.skip("the default model has no identification windows")
        assert len(v.ingest([d / f"rec{i}.wav" for i in range(3)]).added) == 3
    return path, {f"rec{i}.wav": r.samples for i, r in enumerate(recs)}


@pytest.mark.parametrize("keys", [False, True], ids=["scan", "keys"])
def test_excerpt_of_an_outside_recording_matches_nothing(speech_vault, keys):
    """Excerpts of 3-5 s at many offsets of a recording not in the vault: no match, whether
    candidates come from a scan or from 16-bit keys; an excerpt of a stored one still matches."""
    from store.vault import Vault

    path, recs = speech_vault
    outside = recs["rec3.wav"]
    with Vault.open(path) as v:
        if keys:
            v._rows_cache = 10**9  # as if the vault were huge
        for start in (0.0, 2.0, 5.5, 9.5, 12.0):
            for length in (3.0, 5.0):
                ex = outside[int(start * SR): int((start + length) * SR)]
                res = v.search(ex)
                assert not res.matched, (start, length, [(h.name, h.evidence, h.windows)
                                                         for h in res.nearest])
        inside = v.search(recs["rec1.wav"][int(6.3 * SR): int(9.3 * SR)])
    assert inside.matched and inside.hits[0].name == "rec1.wav"
    assert inside.hits[0].offset == pytest.approx(6.3, abs=0.1)


def test_silence_matches_nothing_not_even_stored_silence(tmp_path):
    """A silent file may be stored (ingest warns), but a silent query matches no recording:
    every window of silence has the same code, so BER 0 against it proves nothing."""
    from hashing.audio import write_wav
    from store.vault import Vault

    quiet = np.zeros(3 * SR, np.float32)
    write_wav(tmp_path / "muted.wav", quiet, SR)
    write_wav(tmp_path / "talk.wav", long_recording(7, 8.0), SR)
    with Vault.create(tmp_path / "v.duckdb", "pw", kdf_log2_n=10) as v:
        if v.encoder.windowing is None:
            pytest.skip("the default model has no identification windows")
        assert len(v.ingest([tmp_path / "muted.wav", tmp_path / "talk.wav"]).added) == 2
        res = v.search(np.zeros(2 * SR, np.float32))
        assert not res.matched
        assert res.nearest and res.nearest[0].name == "muted.wav"  # nearest, not a match
        assert v.search(long_recording(7, 8.0)[2 * SR: 6 * SR]).matched  # speech still does


# --------------------------------------------------------------------------- format 2 -> 3


def _format2_vault(tmp_path, recs):
    """A vault as speechvault made it before excerpt search: the issue-7 model (codes per model
    window) and format 2 (no ``codes.start``)."""
    import duckdb

    from hashing.audio import write_wav
    from hashing.encoder import Encoder
    from store.vault import Vault

    paths = []
    for name, y in recs.items():
        write_wav(tmp_path / name, y, SR)
        paths.append(tmp_path / name)
    path = tmp_path / "old.duckdb"
    with Vault.create(path, "pw", encoder=Encoder.shipped("fsdd-crnn-k384-dda"), kdf_log2_n=10) as v:
        v.ingest(paths)
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE codes DROP COLUMN start")
    con.execute("UPDATE vault_meta SET format_version = 2")
    con.execute("DELETE FROM schema_migrations WHERE version > 2")
    con.close()
    return path


def test_format2_vault_upgrades_keeps_searching_then_reindex_finds_excerpts(tmp_path):
    from hashing.encoder import Encoder
    from store.vault import Vault

    recs = {f"r{i}.wav": long_recording(200 + i, 12.0) for i in range(3)}
    path = _format2_vault(tmp_path, recs)
    with Vault.open(path, read_only=False) as v:  # upgrade in place
        assert v.info().format_version == schema.FORMAT_VERSION
        old = v.search(tmp_path / "r1.wav")  # a whole copy, searched the issue-7 way
        assert old.hits[0].name == "r1.wav" and old.hits[0].offset is None
    ex = recs["r2.wav"][int(6.2 * SR): int(9.2 * SR)]
    with Vault.open(path, read_only=False, passphrase="pw") as v:
        rep = v.reindex(Encoder.default())
        assert rep.recordings == 3 and rep.new_k == v.K == Encoder.default().K
        res = v.search(ex)
        assert v.verify().ok
    assert [h.name for h in res.hits] == ["r2.wav"] and res.hits[0].offset == pytest.approx(6.2, abs=0.05)
    with Vault.open(path) as v:  # reopened: the stored model is the new one
        assert v.encoder.windowing is not None
        assert sum(r.n_windows for r in v.list()) == v.info().windows
        assert v.search(ex).hits[0].name == "r2.wav"


def test_reindex_interrupted_leaves_the_old_vault_whole(tmp_path, monkeypatch):
    from hashing.encoder import Encoder
    from store.vault import Vault

    recs = {f"r{i}.wav": long_recording(300 + i, 6.0) for i in range(3)}
    path = _format2_vault(tmp_path, recs)
    enc = Encoder.default()
    calls = {"n": 0}
    real = enc.encode_audio

    def dying(y, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as a Ctrl-C or a kill between two recordings
        return real(y, **kw)

    monkeypatch.setattr(enc, "encode_audio", dying)
    with Vault.open(path, read_only=False, passphrase="pw") as v:
        with pytest.raises(KeyboardInterrupt):
            v.reindex(enc)
    with Vault.open(path, read_only=False, passphrase="pw") as v:
        assert v.encoder.windowing is None  # still the old model and its codes
        assert v.verify().ok and v.search(tmp_path / "r0.wav").hits[0].name == "r0.wav"
        monkeypatch.setattr(enc, "encode_audio", real)
        assert v.reindex(enc).recordings == 3
        assert v.encoder.windowing is not None


def test_large_vault_strategy_keys_finds_the_same(excerpt_vault):
    """Above ``scan_below_rows`` index rows candidates come from shared 16-bit slices (hash
    joins) instead of a scan of every pair: same recording, same offset (outside excerpts:
    ``test_excerpt_of_an_outside_recording_matches_nothing[keys]``)."""
    from store.vault import Vault

    path, recs = excerpt_vault
    ex = recs["rec1.wav"][int(3.3 * SR): int(7.3 * SR)]
    with Vault.open(path) as v:
        scan = v.search(ex)
        v._rows_cache = 10**9  # as if the vault were huge
        keys = v.search(ex)
    assert [h.name for h in keys.hits] == [h.name for h in scan.hits] == ["rec1.wav"]
    assert keys.hits[0].offset == pytest.approx(scan.hits[0].offset, abs=0.02)


def test_reindex_killed_mid_way_leaves_a_vault_that_opens_and_verifies(tmp_path):
    """kill -9 of a reindex after its first batch of new codes was committed: the vault still
    opens on its old model, verifies, and a second reindex completes."""
    import os
    import subprocess
    import sys

    from store.reindex import BATCH
    from store.vault import Vault

    n = BATCH + 6
    recs = {f"r{i:02d}.wav": long_recording(700 + i, 2.0) for i in range(n)}
    path = _format2_vault(tmp_path, recs)
    code = (
        "import os, signal, sys\n"
        "from store.vault import Vault\n"
        "def progress(done, total):\n"
        f"    if done == {BATCH + 3}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"with Vault.open({str(path)!r}, read_only=False, passphrase='pw') as v:\n"
        "    v.reindex(progress=progress)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, timeout=600)
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    with Vault.open(path, read_only=False, passphrase="pw") as v:
        assert v.encoder.windowing is None and v.info().recordings == n
        assert v.verify().ok
        assert v.reindex().recordings == n
        assert v.encoder.windowing is not None and v.verify().ok


def test_clock_reads_like_a_player():
    from speechvault.clock import clock

    assert [clock(x) for x in (None, 0, 12.5, 61.04, 3725.25)] == \
        ["-", "0:00.0", "0:12.5", "1:01.0", "1:02:05.2"]
