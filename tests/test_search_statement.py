"""The per-window search as one statement (store.search.search_sql) returns exactly what the
former per-window statements returned (one ranked statement per query window and L, two
``count(*)``, a label lookup: kept here as the reference), on the same vault, in every mode."""

from __future__ import annotations

import re

import numpy as np
import pytest

from store import schema, search
from store.records import QueryCode
from store.vault import Vault
from tests.fakes import FakeEncoder, tone_mix, write_wav

PW = "pw for statement tests"
MODES = ("two-stage", "traversal", "auto", "multi-probe")


def reference_search(v: Vault, q: QueryCode, mode: str, probe: int, top: int):
    """The former ``Vault._search_coded``: per query window, ``count(*)`` of its categories and
    ``search.best_per_recording`` (growing L), merged in Python; labels looked up after."""
    con = v._con
    best: dict[int, tuple[int, int, int]] = {}
    candidates = 0
    total = int(con.execute("SELECT count(*) FROM codes").fetchone()[0])
    probed: set[int] = set()
    for w in range(q.n_windows):
        cats = v._probes(q, w, mode, probe)
        words = [int(x) for x in q.words[w]]
        if cats is None:
            n = total
        else:
            probed.update(cats)
            n = int(con.execute(search.count_sql(len(cats)), cats).fetchone()[0])
        candidates += n
        for rid, win, dist in (search.best_per_recording(con, v.K, words, cats, top) if n else []):
            key = (dist, w, win)
            if rid not in best or key < best[rid]:
                best[rid] = key
    ranked = sorted(best.items(), key=lambda kv: (kv[1][0], kv[0]))[:top]
    labels = {r[0]: (r[1], r[2]) for r in con.execute(
        "SELECT id, name, category FROM recordings") .fetchall()}
    hits = [(rid, labels[rid][0], labels[rid][1], d, qw, win) for rid, (d, qw, win) in ranked]
    return hits, candidates, total, sorted(probed)


def _hits(res) -> list[tuple]:
    return [(h.recording_id, h.name, h.category, h.distance, h.query_window, h.window)
            for h in res.nearest]


def reference_auto(v: Vault, q: QueryCode, tau: float, probe: int, top: int):
    hits, cand, total, _ = reference_search(v, q, "two-stage", probe, top)
    if any(d / v.K < tau for _, _, _, d, _, _ in hits):
        return hits, cand
    again, cand2, _, _ = reference_search(v, q, "traversal", probe, top)
    return again, cand + cand2


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    """Recordings of 1-4 windows (near-identical windows: many rows per recording tie)."""
    d = tmp_path_factory.mktemp("stmt")
    enc = FakeEncoder(K=384, C=4, seed=3, clip_seconds=0.5)
    paths = []
    for i in range(48):
        y = tone_mix(500 + i, 0.4 + 0.5 * (i % 4))  # 0.4 .. 1.9 s: 1 .. 4 windows
        p = d / f"r{i:02d}.wav"
        write_wav(p, y)
        paths.append(p)
    v = Vault.create(d / "v.duckdb", PW, encoder=enc, kdf_log2_n=10)
    assert len(v.ingest(paths).added) == 48
    assert max(r.n_windows for r in v.list()) >= 3
    yield v
    v.close()


def _queries(v: Vault) -> list[QueryCode]:
    rng = np.random.default_rng(5)
    qs = [v.encode_query(tone_mix(500 + i, 1.9)) for i in (1, 6)]  # several windows
    qs += [v.encode_query(tone_mix(900 + i, 1.4)) for i in range(2)]  # not stored
    for rid in (3, 17):  # a stored window's code with a few bits flipped, one window
        c = v.codes_of(rid)
        w = c.words[:1].copy()
        w[0, 0] ^= np.uint64(rng.integers(1, 2**40))
        qs.append(QueryCode(category=c.category[:1], words=w, K=v.K,
                            probs=np.eye(v.C, dtype=np.float32)[c.category[:1]]))
    return qs


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("top", [1, 3, 10, 60])
def test_one_statement_equals_the_per_window_statements(vault, mode, top):
    for q in _queries(vault):
        for tau in (0.05, 0.3):
            res = vault.search(q, mode=mode, top=top, tau=tau, probe=2)
            if mode == "auto":
                ref, cand = reference_auto(vault, q, tau, 2, top)
            else:
                ref, cand, total, probed = reference_search(vault, q, mode, 2, top)
                assert res.total_rows == total
                assert res.probed_categories == [vault.class_names[c] for c in probed]
            assert _hits(res) == ref
            assert res.candidates == cand
            assert [h.is_match for h in res.nearest] == [h[3] / vault.K < tau for h in ref]


def _statements_sent(v, monkeypatch) -> list[str]:
    """The SQL text of every statement ``v`` sends from now on (its connection spied on)."""
    sent: list[str] = []
    real = v._con

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, *a):
            sent.append(sql)
            return real.execute(sql, *a)

    monkeypatch.setattr(v, "_db", lambda: Spy())
    return sent


def test_growing_l_and_grouped_fallback_equal_the_first_statement(vault, monkeypatch):
    """L too small for the top (many windows per recording): L grows, or every candidate row
    is ranked; the answer is the same and every statement run is timed."""
    q = _queries(vault)[0]
    want = {m: _hits(vault.search(q, mode=m, top=20)) for m in MODES}
    for fallback in (10**6, 8):  # L grows 4 -> 16 -> 64 ... / grouped after the first
        monkeypatch.setattr(search, "FIRST_L_FACTOR", 0)
        monkeypatch.setattr(search, "MIN_FIRST_L", 4)
        monkeypatch.setattr(search, "GROUPED_FALLBACK_ROWS", fallback)
        calls = _statements_sent(vault, monkeypatch)
        for m in MODES:
            calls.clear()
            res = vault.search(q, mode=m, top=20)
            assert _hits(res) == want[m]
            assert len(calls) >= 2  # the first L could not decide 20 recordings
            assert res.timings["hamming_stage"] > 0
        monkeypatch.undo()


def test_one_statement_per_search(vault, monkeypatch):
    """A decided search sends exactly one statement (no count(*), no label lookup)."""
    v = vault
    for mode in ("two-stage", "traversal", "multi-probe"):  # counts read, threads chosen
        v.search(_queries(v)[0], mode=mode, top=5)
    sent = _statements_sent(v, monkeypatch)
    for q in _queries(v):
        for mode in ("two-stage", "traversal", "multi-probe"):
            sent.clear()
            res = v.search(q, mode=mode, top=5)
            assert len(sent) == 1, sent
            assert "count(*) FROM codes" not in sent[0]
            assert res.timings["hamming_stage"] > 0


@pytest.mark.parametrize("top", [1, 3, 10, 60])
def test_one_scan_answers_both_stages_of_auto(vault, top):
    """``nearest_both``'s one traversal statement gives, whenever it decides them, exactly what
    the two-stage and the traversal statements give (labels included); it decides some."""
    con, labels = vault._con, vault._recording_labels()
    decided = {"two-stage": 0, "traversal": 0}
    for q in _queries(vault) + [_many_window_query(vault, 9)]:
        words = [[int(x) for x in w] for w in q.words]
        two, every, seconds = search.nearest_both(con, vault.K, words, q.category, top, labels)
        assert seconds and all(s > 0 for s in seconds)
        for mode, got in (("two-stage", two), ("traversal", every)):
            if got is None:
                continue
            probes = None if mode == "traversal" else [[int(c)] for c in q.category]
            want, _ = search.nearest_recordings(con, vault.K, words, probes, top, labels)
            assert [vars(n) for n in got] == [vars(n) for n in want]
            decided[mode] += 1
    assert decided["two-stage"] and decided["traversal"], decided


def test_auto_falling_back_on_a_small_index_sends_one_statement(vault, monkeypatch):
    """A query with nothing within tau in its category: on an index of at most a row group of
    pairs, auto's two-stage and traversal answers come from one statement (they were two, the
    category scanned twice); above that bound, two statements as before. Same hits."""
    q = _queries(vault)[2]  # not stored
    vault.search(q, top=5)  # counts read, threads chosen, labels held
    sent = _statements_sent(vault, monkeypatch)
    res = vault.search(q, top=5, tau=0.01)
    assert res.fell_back and not res.matched
    assert len(sent) == 1, sent
    ref, cand = reference_auto(vault, q, 0.01, 2, 5)
    assert _hits(res) == ref and res.candidates == cand
    sent.clear()
    monkeypatch.setattr(search, "AUTO_ONE_SCAN_PAIRS", 0)
    again = vault.search(q, top=5, tau=0.01)
    assert len(sent) == 2 and _hits(again) == ref


def test_statement_is_parameterised_only():
    for probes in (None, [[1]] * 3, [[1], [3], [1]], [[0, 2], [2, 0], [1, 3]]):
        groups = search.probe_groups(probes, 3)
        for grouped in (False, True):
            sql = search.search_sql(384, 3, groups, grouped=grouped)
            nums = sorted({int(x) for x in re.findall(r"\$(\d+)", sql)})
            assert nums == list(range(1, nums[-1] + 1))
            stripped = re.sub(r"\$\d+|\b[wdq]\d+\b|::\w+", "", sql)
            assert set(re.findall(r"\d+", stripped)) <= {"0", "1", "2", "65536", "4294967296", "255",
                                                          "281474976710656"}
    assert search.probe_groups([[1], [3], [1]], 3) == [((0, 2), 1), ((1,), 1)]
    with pytest.raises(ValueError):
        search.search_sql(384, 3, [((0, 1), 1)])  # window 2 in no group
    with pytest.raises(ValueError):
        search.search_sql(384, 0, None)


def test_threads_one_below_a_row_group():
    """A scan within one row group runs on one DuckDB thread (no hand-offs); larger, every core."""
    assert search.threads_for(10_000) == 1
    assert search.threads_for(search.ROW_GROUP_ROWS - 1) == 1
    assert search.threads_for(10 * search.ROW_GROUP_ROWS) >= 1


def _many_window_query(v: Vault, n: int) -> QueryCode:
    """``n`` windows taken from stored codes of several recordings, a few bits flipped, so that
    pairs of different query windows tie and compete (the multi-window statement's ranking)."""
    rng = np.random.default_rng(11)
    rows = [(c.words[i], c.category[i]) for rid in (2, 5, 9, 14, 21, 30)
            for c in [v.codes_of(rid)] for i in range(c.words.shape[0])]
    pick = [rows[i % len(rows)] for i in range(n)]
    words = np.stack([w for w, _ in pick]).copy()
    words[:, 0] ^= rng.integers(1, 2**20, n).astype(np.uint64)
    cats = np.array([c for _, c in pick])
    probs = np.full((n, v.C), 0.1, np.float32)
    probs[np.arange(n), cats] = 0.7
    probs[np.arange(n), (cats + 1) % v.C] = 0.2
    return QueryCode(category=cats, words=words, K=v.K, probs=probs)


@pytest.mark.parametrize("mode", ("two-stage", "traversal", "multi-probe"))
def test_many_window_query_equals_the_per_window_statements(vault, mode):
    """12 query windows (the windows-as-a-table statement): the same hits as one statement per
    window, whatever the top (L grows when the pairs of one recording crowd the first L)."""
    q = _many_window_query(vault, 12)
    for top in (1, 5, 30):
        res = vault.search(q, mode=mode, top=top, probe=2)
        ref, cand, total, _ = reference_search(vault, q, mode, 2, top)
        assert _hits(res) == ref
        assert res.candidates == cand


def test_windows_statement_does_not_grow_with_the_windows():
    """DuckDB binds a statement in time proportional to its expressions: a query of many
    windows is one fixed statement whose windows are bound as lists (issue 13)."""
    w = [[1, 2, 3, 4, 5, 6]]
    for probes_of in (lambda n: None, lambda n: [[i % 3] for i in range(n)],
                      lambda n: [[i % 3, 3] for i in range(n)]):
        sql2, p2 = search.ranked_statement(384, w * 2, probes_of(2), 40)
        sql12, p12 = search.ranked_statement(384, w * 12, probes_of(12), 40)
        assert sql2 == sql12
        assert len(p2) == len(p12) and len(p12[1]) == 12 * (1 if probes_of(1) is None
                                                             else len(probes_of(1)[0]))
        nums = sorted({int(x) for x in re.findall(r"\$(\d+)", sql12)})
        assert nums == list(range(1, len(p12) + 1))
    one, params = search.ranked_statement(384, w, [[2, 1, 2]], 40)
    # L, the words (format 6: two 64-bit words per HUGEINT, store.schema), distinct categories
    assert params == [40, 2 * 2**64 + 1, 4 * 2**64 + 3, 6 * 2**64 + 5, 1, 2]
    assert "unnest" not in one


def test_best_pairs_ranks_rows_in_any_order():
    """The statement's rows come unordered (after the label join): each recording by its
    smallest (dist, query window, window), then (dist, recording id); ties kept exact."""
    rows = [(7, 5, 1, 0, "b", "x"), (3, 5, 0, 2, "a", "y"), (7, 4, 2, 1, "b", "x"),
            (3, 5, 0, 1, "a", "y"), (9, 4, 0, 0, None, None), (1, 6, 0, 0, "c", "z")]
    for perm in (rows, rows[::-1], rows[2:] + rows[:2]):
        found, n = search.best_pairs(perm, 3)
        assert n == 4
        assert [(f.recording_id, f.dist, f.query_window, f.window, f.name) for f in found] == [
            (7, 4, 2, 1, "b"), (9, 4, 0, 0, ""), (3, 5, 0, 1, "a")]


def test_ranking_distance_in_float_is_the_integer_distance(vault):
    """The ranked statements sum the words' bit counts as FLOAT (DuckDB's checked INTEGER adds
    cost more): for every stored row and query words from 0 to all 384 bits away (the extremes
    included), the value is the INTEGER sum's, exactly."""
    con = vault._con
    stored = [[int(x) for x in row] for row in
              con.execute("SELECT w0, w1, w2 FROM codes").fetchall()]  # format 6: HUGEINT
    flip_all = [~w for w in stored[0]]  # every bit differs from the first row: 384
    for words in (stored[0], flip_all, stored[-1], [0] * 3, [-1] * 3):
        got = con.execute(
            f"SELECT {search.ranking_distance(vault.K, 1)} AS f, {search.distance_expr(vault.K, 1)} AS i "
            "FROM codes AS c ORDER BY recording_id, win", words).fetchall()
        assert got and all(f == i and float(f).is_integer() for f, i in got)
        if words is flip_all:
            assert got[0][1] == 384
        if words is stored[0]:
            assert got[0][1] == 0
    code = [int(x) for x in con.execute(  # the first row's code as 64-bit words, and its inverse
        f"SELECT {', '.join(schema.code_words_sql(vault.K))} FROM codes").fetchall()[0]]
    inverse = [w ^ (2**64 - 1) for w in code]
    q, p = search.ranked_statement(vault.K, [code, inverse], None, 10_000, labels=False)
    rows = con.execute(q, p).fetchall()
    assert {int(d) for _, d, _, _ in rows} >= {0, 384}


def test_first_pairs_of_ranked_rows_equal_best_pairs():
    """Rows in the ranking's order (what the statement without labels returns): the one-pass
    ``first_pairs`` picks the recordings ``best_pairs`` does, in its order, and says whether
    the rows held ``top`` recordings."""
    import numpy as np

    rng = np.random.default_rng(13)
    for trial in range(200):
        n = int(rng.integers(1, 60))
        pairs = {(int(rng.integers(0, 12)), int(rng.integers(0, 4)), int(rng.integers(0, 5)))
                 for _ in range(n)}  # (recording, query window, window): each pair once
        rows = sorted(((rid, int(rng.integers(0, 6)), qw, win) for rid, qw, win in pairs),
                      key=lambda r: (r[1], r[0], r[2], r[3]))
        top = int(rng.integers(1, 8))
        want, n_rec = search.best_pairs(rows, top)
        got, n_got = search.first_pairs(rows, top)
        assert [vars(f) for f in got] == [vars(f) for f in want]
        assert (n_got >= top) == (n_rec >= top) and n_got == min(n_rec, top)


@pytest.mark.parametrize("preload_max", [0, 10_000])
def test_labels_held_or_looked_up_equal_the_reference(vault, monkeypatch, preload_max):
    """The labels come from ``store.labels`` (every label read at once, or only the hits'
    looked up: a vault above ``PRELOAD_MAX``), not from a join: the hits are the reference's."""
    from store import labels

    monkeypatch.setattr(labels, "PRELOAD_MAX", preload_max)
    vault._label_cache = None
    for q in _queries(vault):
        for mode in ("two-stage", "traversal"):
            res = vault.search(q, mode=mode, top=10, probe=2)
            ref, _, _, _ = reference_search(vault, q, mode, 2, 10)
            assert _hits(res) == ref
    looked_up = vault._label_cache.statements
    if preload_max:  # the first search's hits, then the count and the whole table, once
        assert looked_up == 3
    else:  # the hits' labels, at every search that returned one not seen before
        assert looked_up > 3
    vault._label_cache = None


def test_statement_without_labels_ranks_the_same_pairs(vault):
    """``ranked_statement(labels=False)`` returns the labelled statement's pairs (the join's
    output order is not the ranking's: ``best_pairs`` takes rows in any order)."""
    con = vault._con
    for q in _queries(vault):
        words = [[int(x) for x in w] for w in q.words]
        for probes in (None, [[int(c)] for c in q.category]):
            sql, params = search.ranked_statement(vault.K, words, probes, 40)
            bare, bare_params = search.ranked_statement(vault.K, words, probes, 40, labels=False)
            assert "recordings" not in bare and bare_params == params
            assert (sorted(r[:4] for r in con.execute(sql, params).fetchall())
                    == sorted(con.execute(bare, bare_params).fetchall()))
