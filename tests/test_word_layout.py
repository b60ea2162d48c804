"""Vault formats 5 and 6 (issue 13): the code words were stored as BIGINT (the same 64 bits) in
format 5, for DuckDB's native ``bit_count(BIGINT)``, and are ceil(K/128) HUGEINT since format 6
(one ``bit_count`` per 128 bits); a format-4 vault (UBIGINT words) and a format-5 vault upgrade
in place.

The fixtures (tests/golden/vault_v4 and vault_v5, made by the format-4 and format-5 code, see
their make_fixture.py) hold recordings whose words use the top bit, and the hits that code gave
on them; the format-5 one has K = 320, not a multiple of 128. After the upgrade: the same words
(``codes_of``), the same hits in every mode, the integrity MACs verify without a re-MAC, and an
interrupted upgrade leaves the old file as it was."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

import store.vault as sv
from speechvault.errors import VaultFormatError
from store import schema
from store.records import QueryCode
from store.vault import Vault
from tests.fakes import FakeEncoder, encoder_loader, tone_mix, wav_bytes

GOLDEN = Path(__file__).resolve().parent / "golden" / "vault_v4"
PW = "format four passphrase"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())
GOLDEN5 = GOLDEN.parent / "vault_v5"
PW5 = "format five passphrase"
EXPECTED5 = json.loads((GOLDEN5 / "expected.json").read_text())
ENC5 = dict(K=320, C=3, seed=73, clip_seconds=0.5)


@pytest.fixture(autouse=True)
def _fixture_model(monkeypatch):
    """The vault's stored model is the fixture's FakeEncoder: load that one."""
    monkeypatch.setattr(sv, "_load_encoder_class", encoder_loader(
        FakeEncoder(K=128, C=3, seed=71, clip_seconds=0.5)))


def _golden(tmp_path: Path) -> Path:
    dst = tmp_path / "v4.duckdb"
    dst.write_bytes(gzip.decompress((GOLDEN / "vault-v4-rossler.duckdb.gz").read_bytes()))
    return dst


def _word_types(path: Path) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t for c, t in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'codes'").fetchall() if c[0] == "w" and c[1:].isdigit()}
    finally:
        con.close()


def _queries(v: Vault) -> dict[str, object]:
    """The queries of make_fixture.py, rebuilt from the same recipe."""
    c = v.codes_of(3)
    w = c.words.copy()
    w[:, 0] ^= np.uint64(0xF0F0)
    return {"stored r4": wav_bytes(tone_mix(9304, 0.7)), "new": wav_bytes(tone_mix(9399, 1.1)),
            "code of r3, bits flipped": QueryCode(
                category=c.category, words=w, K=v.K,
                probs=np.eye(v.C, dtype=np.float32)[c.category])}


def test_format4_vault_upgrades_with_the_same_codes_and_hits(tmp_path):
    path = _golden(tmp_path)
    assert _word_types(path) == {"UBIGINT"}
    with pytest.raises(VaultFormatError, match="read-write"):
        Vault.open(path)
    with Vault.open(path, read_only=False) as v:  # no passphrase: nothing is re-MACed
        assert v.format_version == schema.FORMAT_VERSION == 7
    assert _word_types(path) == {"HUGEINT"}  # through format 5 (BIGINT) to 6, then keys (7)
    with Vault.open(path, passphrase=PW) as v:
        got = {str(r.id): [[str(int(x)) for x in row] for row in v.codes_of(r.id).words]
               for r in v.list()}
        assert got == EXPECTED["codes"]
        assert any(int(x) >= 2**63 for rows in got.values() for row in rows for x in row)
        qs = _queries(v)
        for s in EXPECTED["searches"]:
            res = v.search(qs[s["query"]], mode=s["mode"], top=6, probe=2)
            hits = [[h.recording_id, h.name, h.category, h.distance, h.query_window, h.window]
                    for h in res.nearest]
            assert hits == s["hits"], (s["query"], s["mode"])
        rep = v.verify()  # listing and index MACs made over the format-4 words
        assert rep.ok and not rep.notes and rep.checked == 6
    con = duckdb.connect(str(path))  # an unrecorded version change is still a changed setting
    con.execute("DELETE FROM schema_migrations WHERE version = 5")
    con.close()
    with Vault.open(path, passphrase=PW) as v:
        assert any("format_version changed" in f[2] for f in v.verify().failures)


def test_an_interrupted_upgrade_leaves_format4(tmp_path, monkeypatch):
    """The rewrite of ``codes`` is inside the upgrade's transaction: a failure after the new
    table was filled and the old one dropped rolls back to the format-4 vault, intact."""
    path = _golden(tmp_path)

    def boom(con):
        real(con)
        raise RuntimeError("crash in the middle of the upgrade")

    real = schema.MIGRATIONS[4]
    monkeypatch.setitem(schema.MIGRATIONS, 4, boom)
    with pytest.raises(Exception, match="crash in the middle"):
        Vault.open(path, read_only=False)
    monkeypatch.undo()
    assert _word_types(path) == {"UBIGINT"}
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT format_version FROM vault_meta").fetchone()[0] == 4
    assert con.execute("SELECT count(*) FROM codes").fetchone()[0] == sum(
        len(rows) for rows in EXPECTED["codes"].values())
    con.close()
    with Vault.open(path, read_only=False, passphrase=PW) as v:  # and upgrades afterwards
        assert v.verify().ok


@pytest.mark.parametrize("from_version", [4, 5, 6])
def test_an_upgrade_step_is_idempotent(tmp_path, monkeypatch, from_version):
    """Running a word-layout step again on the vault it already upgraded changes no row."""
    path = _golden(tmp_path) if from_version == 4 else _golden5(tmp_path, monkeypatch)
    with Vault.open(path, read_only=False):
        pass
    con = duckdb.connect(str(path))
    before = con.execute("SELECT * FROM codes ORDER BY recording_id, win").fetchall()
    con.execute("BEGIN TRANSACTION")
    schema.MIGRATIONS[from_version](con)
    con.execute("COMMIT")
    assert con.execute("SELECT * FROM codes ORDER BY recording_id, win").fetchall() == before
    con.close()


def test_words_round_trip_through_the_signed_columns():
    """Every bit pattern, the top bit included, survives the BIGINT storage both ways."""
    w = np.array([[0, 1, 2**63 - 1], [2**63, 2**64 - 1, 0xDEADBEEF << 32]], dtype=np.uint64)
    s = schema.signed_words(w)
    assert s.dtype == np.int64 and s[1, 0] == -(2**63) and s[1, 1] == -1
    assert np.array_equal(schema.unsigned_words(s), w)


def test_a_version_edited_to_5_without_its_upgrade_is_refused_in_one_line(tmp_path, capsys):
    """``format_version`` set to 5 (the step recorded, ``blob_chunks`` added) by hand on a
    format-4 file: the words are still UBIGINT, so the vault is named damaged instead of
    searched with unsigned words."""
    from store.blob_chunks import DDL

    path = _golden(tmp_path)
    con = duckdb.connect(str(path))
    con.execute(DDL)
    con.execute("UPDATE vault_meta SET format_version = 5")
    con.execute("INSERT INTO schema_migrations (version, applied, description) "
                "VALUES (5, now(), 'forged')")
    con.close()
    with pytest.raises(VaultFormatError, match="damaged.*BIGINT"):
        Vault.open(path)


# ---------------------------------------------------------------- format 5 -> 6 (HUGEINT words)
def _golden5(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr(sv, "_load_encoder_class", encoder_loader(FakeEncoder(**ENC5)))
    dst = tmp_path / "v5.duckdb"
    dst.write_bytes(gzip.decompress((GOLDEN5 / "vault-v5-rossler.duckdb.gz").read_bytes()))
    return dst


def _queries5(v: Vault) -> dict[str, object]:
    """The queries of vault_v5/make_fixture.py, rebuilt from the same recipe."""
    c = v.codes_of(3)
    w = c.words.copy()
    w[:, 0] ^= np.uint64(0xF0F0)
    w[:, -1] ^= np.uint64(1 << 63)
    return {"stored r4": wav_bytes(tone_mix(9504, 0.7)), "new": wav_bytes(tone_mix(9599, 1.1)),
            "code of r3, bits flipped": QueryCode(
                category=c.category, words=w, K=v.K,
                probs=np.eye(v.C, dtype=np.float32)[c.category])}


def _hits5(v: Vault) -> list[list]:
    qs = _queries5(v)
    out = []
    for s in EXPECTED5["searches"]:
        res = v.search(qs[s["query"]], mode=s["mode"], top=8, probe=2)
        out.append([[h.recording_id, h.name, h.category, h.distance, h.query_window, h.window]
                    for h in res.nearest])
    return out


def test_format5_vault_upgrades_to_hugeint_words_with_the_same_codes_and_hits(tmp_path,
                                                                               monkeypatch):
    """K = 320: three HUGEINT words, the last holding the code's fifth 64-bit word alone."""
    path = _golden5(tmp_path, monkeypatch)
    assert _word_types(path) == {"BIGINT"}
    with pytest.raises(VaultFormatError, match="read-write"):
        Vault.open(path)
    with Vault.open(path, read_only=False) as v:  # no passphrase: nothing is re-MACed
        assert v.format_version == schema.FORMAT_VERSION == 7
    assert _word_types(path) == {"HUGEINT"}
    con = duckdb.connect(str(path), read_only=True)
    assert [c for c, in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                    "table_name = 'codes' ORDER BY ordinal_position").fetchall()
            if c[1:].isdigit()] == ["w0", "w1", "w2", *(f"k{b}" for b in range(20))]
    assert con.execute("SELECT version FROM schema_migrations ORDER BY version DESC "
                       "LIMIT 2").fetchall() == [(7,), (6,)]
    con.close()
    with Vault.open(path, passphrase=PW5) as v:
        got = {str(r.id): [[str(int(x)) for x in row] for row in v.codes_of(r.id).words]
               for r in v.list()}
        assert got == EXPECTED5["codes"]
        assert any(int(x) >= 2**63 for rows in got.values() for row in rows for x in row)
        assert _hits5(v) == [s["hits"] for s in EXPECTED5["searches"]]
        rep = v.verify()  # listing and index MACs made over the format-5 words
        assert rep.ok and not rep.notes and rep.checked == 8
        _assert_keys_are_the_slices(v)


def _slices(words: np.ndarray, K: int) -> list[list[int]]:
    """Each code's 16-bit slices read from its bits (bit i of the code = bit i % 64 of word
    i // 64), independently of ``schema.slice_keys``."""
    bits = np.unpackbits(np.ascontiguousarray(words, np.uint64).view(np.uint8), axis=1,
                         bitorder="little")
    return [[int(np.dot(row[16 * b:16 * b + 16], 1 << np.arange(16))) for b in range(K // 16)]
            for row in bits]


def _assert_keys_are_the_slices(v: Vault) -> None:
    """Every stored slice key is the 16 bits of its row's code that it names (format 7)."""
    kcols = schema.key_columns(v.K)
    for r in v.list():
        keys = v._query(f"SELECT {', '.join(kcols)} FROM codes WHERE recording_id = ? "
                        "ORDER BY win", [r.id])
        assert [list(k) for k in keys] == _slices(v.codes_of(r.id).words, v.K)


@pytest.mark.parametrize("step", [5, 6])
def test_an_interrupted_upgrade_step_leaves_its_format_then_upgrades(tmp_path, monkeypatch,
                                                                      step):
    """A crash in step 5 -> 6 leaves format 5; one in step 6 -> 7 leaves format 6 (step 5
    committed before it): each step is one transaction."""
    path = _golden5(tmp_path, monkeypatch)

    def boom(con):
        real(con)
        raise RuntimeError("crash in the middle of the upgrade")

    real = schema.MIGRATIONS[step]
    with monkeypatch.context() as m:
        m.setitem(schema.MIGRATIONS, step, boom)
        with pytest.raises(Exception, match="crash in the middle"):
            Vault.open(path, read_only=False)
    assert _word_types(path) == {"BIGINT" if step == 5 else "HUGEINT"}
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT format_version FROM vault_meta").fetchall() == [(step,)]
    assert schema._column_type(con, "k0") is None  # no keys before format 7
    con.close()
    with Vault.open(path, read_only=False, passphrase=PW5) as v:
        assert v.verify().ok
        assert _hits5(v) == [s["hits"] for s in EXPECTED5["searches"]]
        _assert_keys_are_the_slices(v)


def test_a_version_edited_to_7_without_its_keys_is_refused(tmp_path, monkeypatch):
    path = _golden5(tmp_path, monkeypatch)

    def stop(con):
        raise RuntimeError("stopped before the keys")

    with monkeypatch.context() as m:  # a format-6 vault: step 6 -> 7 never ran
        m.setitem(schema.MIGRATIONS, 6, stop)
        with pytest.raises(Exception, match="stopped before"):
            Vault.open(path, read_only=False)
    con = duckdb.connect(str(path))
    con.execute("UPDATE vault_meta SET format_version = 7")
    con.close()
    with pytest.raises(VaultFormatError, match="damaged.*slice keys"):
        Vault.open(path)


def test_a_version_edited_to_6_without_its_upgrade_is_refused(tmp_path, monkeypatch):
    path = _golden5(tmp_path, monkeypatch)
    con = duckdb.connect(str(path))
    con.execute("UPDATE vault_meta SET format_version = 6")
    con.close()
    with pytest.raises(VaultFormatError, match="damaged.*HUGEINT"):
        Vault.open(path)


@pytest.mark.parametrize("K", [64, 100, 128, 192, 320, 384, 512])
def test_words_round_trip_through_the_hugeint_columns(K):
    """Every bit pattern (top bits of each half included) is stored and read back as the same
    64-bit words, signed for the lake too; the stored values are the bound query values, and
    the SQL Hamming distance is numpy's, K not a multiple of 128 included."""
    from store.sql_dialects import DUCKDB

    rng = np.random.default_rng(K)
    W64 = schema.n_words(K, schema.CODE_WORD_BITS)
    assert schema.n_words(K) == -(-K // 128) == len(schema.word_columns(K))
    w = rng.integers(0, 2**64, (40, W64), dtype=np.uint64)
    w[0], w[1], w[2], w[3] = 2**64 - 1, 0, 2**63, 2**63 - 1
    w[4, 1::2], w[4, ::2] = 2**63, 0  # each HUGEINT word -2^127 (DuckDB 1.5 calls its product an overflow)
    if K % 64:  # the padding bits of the last word are 0 (hashing.codes.pack_words)
        w[:, -1] &= np.uint64((1 << (K % 64)) - 1)
    con = duckdb.connect()
    con.execute(schema.codes_ddl(K))
    schema.insert_codes(con, "codes", K, np.arange(40), np.zeros(40), np.zeros(40), w, None)
    order = " FROM codes ORDER BY recording_id"
    res = con.execute(f"SELECT {', '.join(schema.code_words_sql(K))}{order}").fetchnumpy()
    cols = schema.code_word_columns(K)
    assert np.array_equal(np.stack([np.asarray(res[c], np.uint64) for c in cols], 1), w)
    res = con.execute(f"SELECT {', '.join(schema.code_words_sql(K, signed=True))}{order}"
                      ).fetchnumpy()
    assert np.array_equal(np.stack([np.asarray(res[c], np.int64) for c in cols], 1),
                          schema.signed_words(w))
    stored = con.execute(f"SELECT {', '.join(schema.word_columns(K))}{order}").fetchall()
    assert [list(r) for r in stored] == schema.stored_words(w)
    for q in (w[0], w[5], ~w[0]):
        vals = DUCKDB.word_values(q)
        dist = " + ".join(DUCKDB.hamming(c, f"${i + 1}::HUGEINT")
                          for i, c in enumerate(schema.word_columns(K)))
        got = [d for d, in con.execute(f"SELECT {dist}{order}", vals).fetchall()]
        want = [int(np.unpackbits((row ^ q).view(np.uint8)).sum()) for row in w]
        assert got == want
    keys = con.execute(f"SELECT {', '.join(schema.key_columns(K))}{order}").fetchall()
    derived = ", ".join(schema.stored_slice_keys_sql(K).values())
    assert con.execute(f"SELECT {derived}{order}").fetchall() == keys
    assert [list(k) for k in keys] == _slices(w, K)


def test_a_k320_vault_round_trips_codes_and_finds_itself(tmp_path, monkeypatch):
    """A fresh vault with K = 320 (three HUGEINT words): each recording's stored code
    searched finds it at distance 0 in every mode, and the MACs verify."""
    enc = FakeEncoder(K=320, C=3, seed=5, clip_seconds=0.5)
    monkeypatch.setattr(sv, "_load_encoder_class", encoder_loader(enc))
    files = []
    for i in range(5):
        f = tmp_path / f"k{i}.wav"
        f.write_bytes(wav_bytes(tone_mix(7100 + i, 0.3 + 0.4 * (i % 3))))
        files.append(f)
    with Vault.create(tmp_path / "k320.duckdb", "k320 passphrase", encoder=enc,
                      kdf_log2_n=10) as v:
        assert len(v.ingest(files).added) == 5
        for r in v.list():
            stored = v.codes_of(r.id)
            assert stored.words.shape[1] == 5 and stored.words.dtype == np.uint64
            q = QueryCode(category=stored.category, words=stored.words, K=v.K,
                          probs=np.eye(v.C, dtype=np.float32)[stored.category])
            for mode in ("auto", "two-stage", "traversal", "multi-probe"):
                top = v.search(q, mode=mode, top=3, probe=2).nearest[0]
                assert (top.recording_id, top.distance) == (r.id, 0), mode
        assert v.verify().ok
    assert _word_types(tmp_path / "k320.duckdb") == {"HUGEINT"}


@pytest.mark.parametrize("keyed", [True, False])
def test_excerpt_statement_on_hugeint_words_equals_the_64_bit_words(keyed):
    """The excerpt statement's 16-bit key slices and distances on a vault's 128-bit words
    (format 6) give the rows the same statement gives on the code's 64-bit words (the lake's
    layout, format 5's bits): the same slices, the same candidate pairs."""
    from store import excerpt as ex
    from store.sql_dialects import DUCKDB, DUCKDB_LAKE

    K, rng = 384, np.random.default_rng(11)
    n = 400
    words = rng.integers(0, 2**64, (n, 6), dtype=np.uint64)
    rid, starts = np.arange(n) // 20 + 1, (np.arange(n) % 20) * 16
    q = words[40:52].copy()  # recording 3's windows, about 1 bit in 24 flipped
    for b in range(64):
        q ^= (rng.random(q.shape) < 0.04).astype(np.uint64) << np.uint64(b)
    frames = starts[40:52] + 3
    wide = duckdb.connect()
    wide.execute(schema.codes_ddl(K))
    schema.insert_codes(wide, "codes", K, rid, np.zeros(n), rid % 3, words, starts)
    narrow = duckdb.connect()
    narrow.execute("CREATE TABLE codes (recording_id BIGINT, win INTEGER, category SMALLINT, "
                   "start INTEGER, " + ", ".join(f"{c} BIGINT" for c in schema.code_word_columns(K))
                   + ")")
    narrow.register("f", {"rid": rid, "start": starts, "cat": rid % 3,
                          **{f"w{i}": schema.signed_words(words)[:, i] for i in range(6)}})
    narrow.execute("INSERT INTO codes SELECT rid, 0, cat, start, w0, w1, w2, w3, w4, w5 FROM f")
    rule = ex.ExcerptRule(n_candidates=4, key_bands=24)
    got = {}
    for name, con, dialect in (("wide", wide, DUCKDB), ("narrow", narrow, DUCKDB_LAKE)):
        sql = ex.excerpt_sql(K, False, keyed, 24, dialect)
        got[name] = con.execute(sql, ex.excerpt_params(frames, q, None, K, rule, keyed,
                                                      dialect)).fetchall()
    assert got["wide"] == got["narrow"] and {r[0] for r in got["wide"]} >= {3}
