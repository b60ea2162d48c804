"""Integrity of blobs, index, model and settings (issue 17, items 1 and 2; store/integrity.py).

* a (blob, sha256) pair swapped between two rows: ``export`` refuses both, ``verify`` names both
  (before format 4 the blob's tag covered only its own row's SHA-256: export returned the other
  recording's audio and verify said ok);
* every edit of tests/tamper_edits.py (settings, model, index, listing, record set) is a
  ``verify`` failure that names what changed, and ``ingest`` refuses a vault whose settings or
  model no longer verify (one line, nothing written);
* a format-3 vault made by the code before this change (tests/golden/vault_v3, both ciphers)
  opens, exports byte-identical and verifies with an "unbound (legacy)" note; ``upgrade``
  (``Vault.bind``) re-seals it bound, after which it exports byte-identical, verifies clean and
  catches a swap; the migration is idempotent;
* rekey, reindex and deletes keep the vault verifiable.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

import store.vault as sv
from speechvault.errors import IntegrityError, VaultFormatError
from store import schema
from store.vault import Vault
from tests import tamper_edits as te
from tests.fakes import SR, FakeEncoder, encoder_loader, tone_mix, wav_bytes

PW = "integrity test passphrase"
GOLDEN = Path(__file__).resolve().parent / "golden" / "vault_v3"
GOLDEN_PW = "format three passphrase"
ENC = dict(K=128, C=3, seed=61)


@pytest.fixture(autouse=True)
def _fake_model(monkeypatch):
    monkeypatch.setattr(sv, "_load_encoder_class", encoder_loader(FakeEncoder(**ENC)))


def _files(d: Path, n: int, base: int) -> list[Path]:
    out = []
    for i in range(n):
        p = d / f"r{base + i}.wav"
        p.write_bytes(wav_bytes(tone_mix(base + i, 0.3)))
        out.append(p)
    return out


@pytest.fixture(scope="module", params=["rossler", "chacha20poly1305"])
def clean(request, tmp_path_factory):
    """(vault path, its files, a spare file, the copy taken before recording 3 was deleted)."""
    d = tmp_path_factory.mktemp(f"clean-{request.param}")
    files = _files(d, 5, 9300)
    mp = pytest.MonkeyPatch()
    mp.setattr(sv, "_load_encoder_class", encoder_loader(FakeEncoder(**ENC)))
    try:
        path = d / "v.duckdb"
        with Vault.create(path, PW, encoder=FakeEncoder(**ENC), cipher=request.param,
                          kdf_log2_n=10) as v:
            v.ingest(files)
    finally:
        mp.undo()
    spare = _files(d, 1, 9400)[0]
    return path, files, spare, request.param


def _copy(clean, tmp_path: Path, name: str = "case.duckdb") -> Path:
    dst = tmp_path / name
    shutil.copy(clean[0], dst)
    return dst


def _apply(path: Path, name: str, tmp_path: Path) -> None:
    ctx = {}
    if name in te.DELETE_WITH_KEY_FIRST:
        ctx["old_copy"] = tmp_path / "old-copy.duckdb"
        shutil.copy(path, ctx["old_copy"])
        with Vault.open(path, read_only=False, passphrase=PW) as v:
            v.delete(te.DELETE_WITH_KEY_FIRST[name])
    con = duckdb.connect(str(path))
    try:
        te.EDITS[name][0](con, ctx)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _verify(path: Path):
    with Vault.open(path, passphrase=PW) as v:
        return v.verify()


# ----------------------------------------------------------------------------- item 1
def test_swapped_blob_refused_by_export_and_flagged_by_verify(clean, tmp_path):
    path = _copy(clean, tmp_path)
    _apply(path, "swap-blob", tmp_path)
    with Vault.open(path, passphrase=PW) as v:
        for rid in (1, 2):
            with pytest.raises(IntegrityError, match="authentication failed") as ei:
                v.export(rid)
            assert f"recording {rid}" in str(ei.value) and "\n" not in str(ei.value)
        assert v.export(3) == clean[1][2].read_bytes()  # the others still open
        rep = v.verify()
    assert not rep.ok
    assert {1, 2} <= {f[0] for f in rep.failures}
    assert rep.checked == 5


def test_blob_bound_to_its_vault(clean, tmp_path):
    """A blob moved into another vault under the same key (a copy with a new vault id) fails."""
    path = _copy(clean, tmp_path)
    _apply(path, "vault-id", tmp_path)
    with Vault.open(path, passphrase=PW) as v:
        with pytest.raises(IntegrityError, match="authentication failed"):
            v.export(1)


# ----------------------------------------------------------------------------- item 2
#: the words verify uses to name each edit (any one of them, in some failure message)
NAMED = {
    "swap-blob": "authentication failed",
    "reinsert-deleted": "record_macs",
    "silent-delete": "record_macs",
    "cipher-downgrade": "setting cipher changed",
    "tau-0.49": "setting tau changed",
    "class-names-meta": "setting class_names changed",
    "class-names-both": "setting class_names changed",
    "vault-id": "setting vault_id changed",
    "integrity-null": "authentication failed",
    "integrity-edited": "integrity record was altered",
    "feature-pre_emphasis": "metadata JSON (feature settings) changed",
    "feature-fmin": "metadata JSON (feature settings) changed",
    "feature-top_db": "metadata JSON (feature settings) changed",
    "tflite-swapped-fixed-up": "TFLite bytes changed",
    "tflite-swapped": "TFLite bytes changed",
    "fingerprint-inverted": "fingerprint changed",
    "fingerprint-inverted-fixed-up": "fingerprint changed",
    "fingerprint-scrambled-fixed-up": "fingerprint changed",
    "codes-inverted": "index rows (codes) changed",
    "codes-copied": "index rows (codes) changed",
    "codes-category": "index rows (codes) changed",
    "codes-row-deleted": "index rows (codes) changed",
    "codes-slice-key": "slice keys no longer match",
    "name": "listing",
    "category-label": "listing",
    "n-windows": "listing",
}


def test_every_edit_has_a_name():
    assert set(NAMED) == set(te.EDITS)


@pytest.mark.parametrize("name", list(te.EDITS))
def test_each_tamper_class_is_named_by_verify(clean, tmp_path, name):
    if name == "cipher-downgrade" and clean[3] != "chacha20poly1305":
        pytest.skip("a downgrade needs a chacha20poly1305 vault")
    path = _copy(clean, tmp_path)
    _apply(path, name, tmp_path)
    rep = _verify(path)
    assert not rep.ok, name
    messages = " | ".join(m for _, _, m in rep.failures)
    assert NAMED[name] in messages, messages
    assert all("\n" not in m for m in messages)


SETTINGS_EDITS = ["cipher-downgrade", "tau-0.49", "class-names-both", "feature-pre_emphasis",
                  "tflite-swapped-fixed-up", "fingerprint-inverted-fixed-up", "integrity-edited",
                  "integrity-null"]


@pytest.mark.parametrize("name", SETTINGS_EDITS)
def test_ingest_refuses_changed_settings(clean, tmp_path, name):
    if name == "cipher-downgrade" and clean[3] != "chacha20poly1305":
        pytest.skip("a downgrade needs a chacha20poly1305 vault")
    path = _copy(clean, tmp_path)
    _apply(path, name, tmp_path)
    with Vault.open(path, read_only=False, passphrase=PW) as v:
        with pytest.raises(IntegrityError) as ei:
            v.ingest([clean[2]])
        assert "\n" not in str(ei.value)
        assert len(v.list()) == 5
    if name != "integrity-null":  # (refused by the blobs themselves: the bind cannot open them)
        assert "integrity check" in str(ei.value)


def test_keyed_and_keyless_deletes(clean, tmp_path):
    path = _copy(clean, tmp_path)
    with Vault.open(path, read_only=False, passphrase=PW) as v:
        v.delete(1)  # with the key: the record set is re-signed
        rep = v.verify()
        assert rep.ok and not rep.notes
    with Vault.open(path, read_only=False) as v:
        v.delete(2)  # without it: a note until the next keyed write
    rep = _verify(path)
    assert rep.ok and any("deleted without the passphrase" in n and "2" in n for n in rep.notes)
    with Vault.open(path, read_only=False, passphrase=PW) as v:
        assert len(v.ingest([clean[2]]).added) == 1
        rep = v.verify()
    assert rep.ok and not rep.notes


def test_rekey_and_reindex_keep_the_vault_verifiable(clean, tmp_path):
    path = _copy(clean, tmp_path)
    with Vault.open(path, read_only=False, passphrase=PW) as v:
        v.rekey(PW)
        assert v.verify().ok
        other = FakeEncoder(K=128, C=3, seed=62)
        other.sample_rate, other.fingerprint_bytes = SR, None  # what reindex reads of a model
        v.reindex(other)
        rep = v.verify()
        assert rep.ok, rep.failures
        assert v.export(5) == clean[1][4].read_bytes()


def test_keyless_search_refuses_settings_that_contradict_the_model(clean, tmp_path):
    path = _copy(clean, tmp_path)
    _apply(path, "class-names-meta", tmp_path)
    with Vault.open(path) as v:
        with pytest.raises(VaultFormatError, match="class_names does not match the stored model"):
            v.search(str(clean[1][0]))


# ----------------------------------------------------------------------------- upgrade
def _golden(tmp_path: Path, cipher: str) -> Path:
    dst = tmp_path / f"v3-{cipher}.duckdb"
    dst.write_bytes(gzip.decompress((GOLDEN / f"vault-v3-{cipher}.duckdb.gz").read_bytes()))
    return dst


def _golden_originals() -> dict[str, bytes]:
    """The files the fixture was made from (tests/golden/vault_v3/make_fixture.py)."""
    out = {}
    for i in range(4):
        b = wav_bytes(tone_mix(9100 + i, 0.3))
        out[hashlib.sha256(b).hexdigest()] = b
    return out


@pytest.mark.parametrize("cipher", ["rossler", "chacha20poly1305"])
def test_format3_vault_upgrades_and_binds(tmp_path, cipher):
    path = _golden(tmp_path, cipher)
    originals = _golden_originals()
    with pytest.raises(VaultFormatError, match="read-write"):
        Vault.open(path)
    with Vault.open(path, read_only=False, passphrase=GOLDEN_PW) as v:
        assert v.format_version == schema.FORMAT_VERSION and not v.bound
        rows = v.list()
        assert len(rows) == 4 and {r.sha256 for r in rows} == set(originals)
        for r in rows:  # legacy blobs still open
            assert v.export(r.id) == originals[r.sha256]
        rep = v.verify()
        assert rep.ok and any("unbound (legacy)" in n for n in rep.notes)
        vault_id = v.vault_id
        assert v.bind() == 4 and v.bound
        assert v.bind() == 0  # idempotent
        for r in rows:
            assert v.export(r.id) == originals[r.sha256]
        rep = v.verify()
        assert rep.ok and not rep.notes and rep.checked == 4
        assert v.vault_id == vault_id
        assert v.search(wav_bytes(tone_mix(9102, 0.3))).hits[0].recording_id == rows[2].id
    con = duckdb.connect(str(path))  # the v3 -> v4 migration again changes nothing
    con.execute("BEGIN TRANSACTION")
    schema.MIGRATIONS[3](con)
    assert con.execute("SELECT vault_id FROM vault_meta").fetchone()[0] == vault_id
    con.execute("COMMIT")
    te.EDITS["swap-blob"][0](con, {})
    con.close()
    with Vault.open(path, passphrase=GOLDEN_PW) as v:
        with pytest.raises(IntegrityError):
            v.export(1)
        assert {1, 2} <= {f[0] for f in v.verify().failures}


def test_ingest_binds_a_legacy_vault(tmp_path):
    path = _golden(tmp_path, "rossler")
    new = _files(tmp_path, 1, 9500)
    with Vault.open(path, read_only=False, passphrase=GOLDEN_PW) as v:
        assert not v.bound
        assert len(v.ingest(new).added) == 1
        assert v.bound
        rep = v.verify()
        assert rep.ok and not rep.notes and rep.checked == 5
        assert v.export(5) == new[0].read_bytes()


def test_cli_upgrade(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import cli

    path = _golden(tmp_path, "chacha20poly1305")
    env = {"SPEECHVAULT_PASSPHRASE": GOLDEN_PW, "COLUMNS": "200"}
    r = CliRunner().invoke(cli.app, ["verify", str(path)], env=env)
    assert r.exit_code == 1 and "read-write" in r.stderr  # a read-only command does not migrate
    with Vault.open(path, read_only=False):  # migrated to format 4, still unbound (legacy)
        pass
    r = CliRunner().invoke(cli.app, ["verify", str(path)], env=env)
    assert r.exit_code == 0 and "note: 4 recording(s) unbound (legacy)" in r.stdout
    r = CliRunner().invoke(cli.app, ["upgrade", str(path)], env=env)
    assert r.exit_code == 0, r.stderr
    assert "bound: 4 recording(s) re-sealed" in r.stderr
    r = CliRunner().invoke(cli.app, ["upgrade", str(path)], env=env)
    assert r.exit_code == 0 and "already bound" in r.stderr
    r = CliRunner().invoke(cli.app, ["verify", str(path)], env=env)
    assert r.exit_code == 0 and "ok" in r.stdout and "note:" not in r.stdout + r.stderr


# ----------------------------------------------------------------------------- hostile values
HOSTILE = {
    "vault-id-not-hex": "UPDATE vault_meta SET vault_id = 'zz'",
    "vault-id-null": "UPDATE vault_meta SET vault_id = NULL",
    "integrity-not-json": "UPDATE vault_meta SET integrity = 'not json'",
    "integrity-array": "UPDATE vault_meta SET integrity = '[1, 2]'",
    "integrity-no-mac": "UPDATE vault_meta SET integrity = '{\"v\": 1}'",
    "record-macs-dropped": "DROP TABLE record_macs",
    "record-mac-short": "UPDATE record_macs SET listing_mac = '\\x01'::BLOB WHERE recording_id = 1",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_integrity_values_are_one_line_errors(tmp_path, name):
    """Every command on a vault with a hostile format-4 value: exit 0 or one ``error:`` line."""
    from tests import damage_harness as dh

    clean, files = dh.build_clean_vault(tmp_path / "src")
    path = tmp_path / "v.duckdb"
    shutil.copy(clean, path)
    con = duckdb.connect(str(path))
    con.execute(HOSTILE[name])
    con.execute("CHECKPOINT")
    con.close()
    base = path.read_bytes()
    outcomes = {}
    for cmd in dh.COMMANDS:
        path.write_bytes(base)
        outcomes[cmd] = dh.run_command(cmd, path, files, tmp_path, name)
    assert all(o.kind == "ok" for o in outcomes.values()), outcomes
    assert outcomes["verify"].exit_code == 1, outcomes["verify"]  # never "ok"
