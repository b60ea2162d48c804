"""store.search / Vault.search: retrieval of changed copies, two-stage vs traversal vs multi-probe,
SQL BER == numpy BER, no-match, multi-window queries, UBIGINT high bits, bound parameters,
and row-group pruning after clustering (EXPLAIN ANALYZE)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hashing.codes import ber as np_ber
from speechvault.errors import InvalidInputError
from store import schema, search
from store.records import QueryCode
from store.sql_dialects import DUCKDB
from store.vault import Vault
from tests.fakes import FakeEncoder, FakeWindowCodes, tone_mix, write_wav

PW = "pw for search tests"


@pytest.fixture(scope="module")
def enc() -> FakeEncoder:
    return FakeEncoder(K=384, C=4, seed=11, clip_seconds=0.5)


@pytest.fixture(scope="module")
def lib(tmp_path_factory, enc):
    """60 recordings (1-2 windows each) in a read-write vault; yields (vault, signals)."""
    d = tmp_path_factory.mktemp("lib")
    signals, paths = [], []
    for i in range(60):
        y = tone_mix(2000 + i, 0.4 if i % 3 else 0.9)
        p = d / f"s{i:02d}.wav"
        write_wav(p, y)
        signals.append(y)
        paths.append(p)
    v = Vault.create(d / "lib.duckdb", PW, encoder=enc, kdf_log2_n=10)
    rep = v.ingest(paths)
    assert len(rep.added) == 60
    yield v, signals, rep.added
    v.close()


def _all_codes(v: Vault):
    """(recording ids, windows, categories, words) of the whole index, from SQL."""
    cols = ", ".join(schema.code_words_sql(v.K))  # the code's 64-bit words (format 6: HUGEINT)
    r = v._con.execute(f"SELECT recording_id, win, category, {cols} FROM codes").fetchnumpy()
    words = np.stack([r[c].astype(np.uint64) for c in schema.code_word_columns(v.K)], axis=1)
    return r["recording_id"], r["win"], r["category"], words


def test_changed_copy_finds_original(lib, enc):
    v, signals, added = lib
    for i in (0, 7, 31):
        quieter = (signals[i] * 10 ** (-3 / 20)).astype(np.float32)  # -3 dB (a paper CPO)
        noisy = signals[i] + np.random.default_rng(i).normal(0, 0.002, signals[i].shape).astype(np.float32)
        for q in (quieter, noisy):
            res = v.search(q)
            assert res.matched
            assert res.hits[0].recording_id == added[i].id
            assert res.hits[0].ber < res.tau and res.hits[0].is_match
            assert res.mode == "auto" and not res.fell_back  # matched in its category
            assert set(res.timings) >= {"decode", "features", "inference", "category_stage",
                                        "hamming_stage", "total"}


def test_sql_ber_equals_numpy(lib, enc):
    v, signals, added = lib
    rid, win, cat, words = _all_codes(v)
    q = v.encode_query(tone_mix(999, 0.4))
    res = v.search(q, mode="traversal", top=1000, tau=0.49)
    assert len(res.nearest) == 60  # every recording once
    d = np_ber(q.words[0], words, v.K)
    expect = {}
    for r, x in zip(rid, d):
        expect[int(r)] = min(expect.get(int(r), 1.0), float(x))
    for h in res.nearest:
        assert h.ber == pytest.approx(expect[h.recording_id], abs=1e-12)
        assert h.distance == round(h.ber * v.K)
    bers = [h.ber for h in res.nearest]
    assert bers == sorted(bers)


def test_two_stage_subset_of_multi_probe_subset_of_traversal(lib, enc):
    v, signals, added = lib
    rid, win, cat, words = _all_codes(v)
    for seed in range(6):
        q = v.encode_query(tone_mix(seed * 17 + 1, 0.4))
        kw = dict(tau=0.45, top=1000)
        two = v.search(q, mode="two-stage", **kw)
        mp = v.search(q, mode="multi-probe", probe=2, **kw)
        mp_all = v.search(q, mode="multi-probe", probe=v.C, **kw)
        trav = v.search(q, mode="traversal", **kw)
        ids = lambda r: {h.recording_id for h in r.hits if h.is_match}
        assert ids(two) <= ids(mp) <= ids(trav)
        assert ids(mp_all) == ids(trav)
        # stage 1 kept exactly the rows of the query's category
        qcat = int(q.category[0])
        assert two.candidates == int(np.sum(cat == qcat))
        assert two.probed_categories == [v.class_names[qcat]]
        assert len(mp.probed_categories) == 2 and v.class_names[qcat] in mp.probed_categories
        assert trav.candidates == trav.total_rows == len(rid)
        # every two-stage hit has a window of the query's category; its BER matches traversal's
        trav_ber = {h.recording_id: h.ber for h in trav.nearest}
        for h in two.nearest:
            assert qcat in set(cat[rid == h.recording_id].tolist())
            assert h.ber >= trav_ber[h.recording_id] - 1e-12
        # multi-probe with probe=1 is two-stage
        one = v.search(q, mode="multi-probe", probe=1, **kw)
        assert [(h.recording_id, h.ber) for h in one.nearest] == [(h.recording_id, h.ber) for h in two.nearest]


def test_auto_falls_back_to_traversal_when_the_category_has_no_match(lib, enc):
    """Mode "auto" (the default): a query whose category h1 is wrong (a CPO can change it) finds
    nothing in that category, so every row is searched and the original is found after all."""
    v, signals, added = lib
    q = v.encode_query(signals[5])
    wrong = (int(q.category[0]) + 1) % v.C
    q2 = QueryCode(category=np.full(q.n_windows, wrong), words=q.words, K=q.K, probs=q.probs)
    two = v.search(q2, mode="two-stage")
    assert not two.matched
    auto = v.search(q2)
    assert auto.mode == "auto" and auto.fell_back and auto.matched
    assert auto.hits[0].recording_id == added[5].id and auto.hits[0].ber == 0.0
    assert auto.candidates == two.candidates + auto.total_rows
    assert auto.to_dict()["fell_back"] is True
    ok = v.search(q)
    assert ok.matched and not ok.fell_back and ok.candidates < ok.total_rows


def test_no_match_reports_nearest(lib):
    v, _, _ = lib
    q = v.encode_query(tone_mix(4242, 0.4))
    res = v.search(q, tau=0.01, top=3, mode="traversal")
    assert res.matched is False
    assert len(res.hits) == 3 and res.hits == res.nearest
    assert all(not h.is_match for h in res.hits)
    assert res.hits[0].ber <= res.hits[1].ber <= res.hits[2].ber
    assert res.to_dict()["matched"] is False


def test_query_with_several_windows_reports_each_recording_once(lib, enc):
    v, signals, added = lib
    # a query made of two library signals back to back (0.5 s clips: s01 = 0.4 s pads to one window)
    y = np.concatenate([np.pad(signals[1], (0, 8000 - len(signals[1]))),
                        np.pad(signals[2], (0, 8000 - len(signals[2])))])
    q = v.encode_query(y)
    assert q.n_windows == 2
    res = v.search(q, mode="traversal", top=60, tau=0.45)
    ids = [h.recording_id for h in res.nearest]
    assert len(ids) == len(set(ids))
    top2 = {h.recording_id: h for h in res.hits[:2]}
    assert set(top2) == {added[1].id, added[2].id}
    assert top2[added[1].id].query_window == 0 and top2[added[2].id].query_window == 1
    assert top2[added[1].id].ber == 0.0 and top2[added[2].id].ber == 0.0
    # min over query windows: each reported BER is the smaller of the per-window searches
    for w in range(2):
        single = QueryCode(category=q.category[w:w + 1], words=q.words[w:w + 1], K=q.K,
                           probs=q.probs[w:w + 1])
        r1 = {h.recording_id: h.ber for h in v.search(single, mode="traversal", top=60, tau=0.45).nearest}
        for h in res.nearest:
            assert h.ber <= r1[h.recording_id] + 1e-12


class HighBitEncoder(FakeEncoder):
    """Codes with the top bit of every word set (values > 2^63): UBIGINT must round-trip them."""

    WORDS = np.array([2**64 - 1, 2**63, 2**63 + 1, 0xDEADBEEF00000000 | 2**63,
                      0x8000000000000001 ^ 0x00FF00FF00FF00FF, 2**63 + 12345], dtype=np.uint64)

    def encode_audio(self, y):
        wc = super().encode_audio(y)
        n = wc.words.shape[0]
        words = np.tile(self.WORDS, (n, 1))
        return FakeWindowCodes(category=np.zeros(n, np.int64), probs=wc.probs, bits=wc.bits,
                               words=words, K=self.K)


def test_ubigint_high_bits_roundtrip(tmp_path):
    enc = HighBitEncoder(K=384, C=4, seed=3)
    v = Vault.create(tmp_path / "hb.duckdb", PW, encoder=enc, kdf_log2_n=10)
    p = tmp_path / "a.wav"
    write_wav(p, tone_mix(1, 0.3))
    rid = v.ingest([p]).added[0].id
    stored = v.codes_of(rid)
    assert stored.words.dtype == np.uint64
    np.testing.assert_array_equal(stored.words[0], HighBitEncoder.WORDS)
    assert int(stored.words[0, 0]) == 2**64 - 1
    # the same words: distance 0; flipping the top bit of every word: distance W
    q = QueryCode(category=[0], words=HighBitEncoder.WORDS, K=384)
    assert v.search(q).hits[0].distance == 0
    flipped = HighBitEncoder.WORDS ^ np.uint64(2**63)
    h = v.search(QueryCode(category=[0], words=flipped, K=384), tau=0.49).nearest[0]
    assert h.distance == 6 and h.ber == pytest.approx(6 / 384)
    v.close()
    with Vault.open(tmp_path / "hb.duckdb") as r:  # and after reopening from disk
        np.testing.assert_array_equal(r.codes_of(rid).words[0], HighBitEncoder.WORDS)


def test_odd_k_padding_words(tmp_path):
    """K not a multiple of 64: ceil(K/64) code words in W = ceil(K/128) columns, BER divides
    by K."""
    enc = FakeEncoder(K=100, C=3, seed=5)
    v = Vault.create(tmp_path / "k100.duckdb", PW, encoder=enc, kdf_log2_n=10)
    assert schema.word_columns(100) == ["w0"] and schema.code_word_columns(100) == ["w0", "w1"]
    p = tmp_path / "a.wav"
    write_wav(p, tone_mix(5, 0.3))
    v.ingest([p])
    q = v.encode_query(tone_mix(6, 0.3))
    h = v.search(q, mode="traversal", tau=0.49).nearest[0]
    assert h.ber == pytest.approx(np_ber(q.words[0], v.codes_of(h.recording_id).words[0], 100))
    v.close()


def test_query_validation(lib):
    v, _, _ = lib
    with pytest.raises(InvalidInputError):
        v.search(QueryCode(category=[0], words=np.zeros(2, np.uint64), K=128))
    with pytest.raises(InvalidInputError):
        v.search(QueryCode(category=[9], words=np.zeros(6, np.uint64), K=384))
    with pytest.raises(InvalidInputError):
        v.search(QueryCode(category=[0], words=np.zeros(6, np.uint64), K=384), mode="fulltext")
    with pytest.raises(InvalidInputError):
        v.search(QueryCode(category=[0], words=np.zeros(6, np.uint64), K=384), top=0)


def test_sql_is_parameterised_only():
    for builder in (search.rows_sql, search.grouped_sql):
        sql = builder(384, 2)
        assert re.findall(r"\$(\d+)", sql) == [str(i) for i in range(1, 7)]  # 3 words, 2 cats, limit
        stripped = re.sub(r"\$\d+|\bw\d\b", "", sql)
        # 255: the exact 128-bit bit count on DuckDB < 2 (store.schema.word_bit_count)
        assert set(re.findall(r"\d+", stripped)) <= {"4294967296", "255"}
        assert "WHERE" not in builder(384, None)
    with pytest.raises(ValueError):
        schema.word_columns(0)


def test_fast_path_equals_grouped_fallback(lib, monkeypatch):
    """best_per_recording (top-L rows, growing L) == the GROUP BY statement, incl. when L must
    grow (multi-window recordings, tiny first L) and when it falls back to grouping."""
    v, _, _ = lib
    assert max(r.n_windows for r in v.list()) == 2
    con = v._con
    for seed in range(4):
        q = v.encode_query(tone_mix(seed + 77, 0.4))
        words = [int(x) for x in q.words[0]]
        bound = DUCKDB.word_values(words)  # as bound to the HUGEINT words (format 6)
        for cats in (None, [int(q.category[0])], [0, 1, 2]):
            for top in (1, 5, 60):
                n = None if cats is None else len(cats)
                ref = con.execute(search.grouped_sql(v.K, n), [*bound, *(cats or []), top]).fetchall()
                ref = [(int(a), int(b), int(c)) for a, b, c in ref]
                assert search.best_per_recording(con, v.K, words, cats, top) == ref
                for fallback in (40, 10**6):  # grouped fallback / L grows 32 -> 128 -> ...
                    monkeypatch.setattr(search, "FIRST_L_FACTOR", 0)  # L starts at 32
                    monkeypatch.setattr(search, "GROUPED_FALLBACK_ROWS", fallback)
                    assert search.best_per_recording(con, v.K, words, cats, top) == ref
                    monkeypatch.undo()


def _row_groups_scanned(con, sql, params) -> tuple[int, int]:
    plan = "\n".join(str(r[1]) for r in con.execute("EXPLAIN ANALYZE " + sql, params).fetchall())
    m = re.findall(r"Row Groups Scanned:\s*(\d+)\s*/\s*(\d+)", plan)
    if not m:
        pytest.skip("this DuckDB's EXPLAIN ANALYZE does not report row groups scanned")
    return min((int(a), int(b)) for a, b in m)


def test_clustering_prunes_row_groups(tmp_path):
    """~4 row groups of synthetic codes in random category order: the category filter must scan
    every row group before ``compact`` and only the category's run after it."""
    enc = FakeEncoder(K=384, C=4, seed=1)
    v = Vault.create(tmp_path / "big.duckdb", PW, encoder=enc, kdf_log2_n=10)
    n = 4 * schema.ROW_GROUP_ROWS
    words = ", ".join(f"(hash(i * 7 + {k}) >> 1)::HUGEINT AS w{k}" for k in range(3))
    keys = ", ".join(f"{e} AS {c}" for c, e in schema.stored_slice_keys_sql(384).items())
    v._con.execute(f"INSERT INTO codes BY NAME SELECT *, {keys} FROM (SELECT i AS recording_id, "
                   f"0 AS win, (hash(i) % 4)::SMALLINT AS category, {words} FROM range({n}) t(i))")
    v._con.execute("CHECKPOINT")
    sql = search.rows_sql(384, 1)
    params = [1, 2, 3, 2, 10]  # 3 HUGEINT words (format 6), the category, L
    before = _row_groups_scanned(v._con, sql, params)
    assert before[0] == before[1]
    v._con.execute(f"UPDATE vault_meta SET codes_unclustered = {n}")
    assert search.needs_compaction(n, n)
    v.compact()
    after = _row_groups_scanned(v._con, sql, params)
    n_cat = v._con.execute("SELECT count(*) FROM codes WHERE category = 2").fetchone()[0]
    # a contiguous run of n_cat rows touches at most ceil(n_cat / row group) + 1 row groups
    assert after[0] < after[1]
    assert after[0] <= -(-n_cat // schema.ROW_GROUP_ROWS) + 1
    assert v._con.execute("SELECT codes_unclustered FROM vault_meta").fetchone()[0] == 0
    assert v._con.execute("SELECT count(*) FROM codes").fetchone()[0] == n
    v.close()


def test_total_timing_is_the_wall_clock_of_the_call(lib):
    """`total` covers every stage once: at least their sum, at most the caller's own clock."""
    import time

    v, signals, _ = lib
    stages = ("decode", "features", "inference", "category_stage", "hamming_stage")
    t0 = time.perf_counter()
    res = v.search(signals[3])
    wall = time.perf_counter() - t0
    assert sum(res.timings[k] for k in stages) <= res.timings["total"] <= wall
    q = v.encode_query(signals[3])  # a code made beforehand: its coding stages are added
    res = v.search(q)
    assert res.timings["total"] >= q.timings["features"] + q.timings["inference"]
