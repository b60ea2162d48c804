"""Vault format 5 (issue 13): the code words are stored as BIGINT (the same 64 bits), for
DuckDB's native ``bit_count(BIGINT)``; a format-4 vault (UBIGINT words) upgrades in place.

The fixture (tests/golden/vault_v4, made by the format-4 code, see its make_fixture.py) holds
six recordings whose words use the top bit, and the hits the format-4 code gave on it. After the
upgrade: the same words (``codes_of``), the same hits in every mode, the integrity MACs verify
without a re-MAC, and an interrupted upgrade leaves the format-4 file as it was."""

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
            "WHERE table_name = 'codes'").fetchall() if c[1:].isdigit()}
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
        assert v.format_version == schema.FORMAT_VERSION == 5
    assert _word_types(path) == {"BIGINT"}
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


def test_the_upgrade_step_is_idempotent(tmp_path):
    path = _golden(tmp_path)
    with Vault.open(path, read_only=False):
        pass
    con = duckdb.connect(str(path))
    before = con.execute("SELECT * FROM codes ORDER BY recording_id, win").fetchall()
    con.execute("BEGIN TRANSACTION")
    schema.MIGRATIONS[4](con)
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
