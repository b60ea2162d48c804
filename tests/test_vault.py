"""store.vault: create/open/info, ingest/export round trip, dedup, bad files, cancel, keys,
tampering, model binding, non-vault files, lock conflicts, verbatim names. FakeEncoder only
(the real cipher and key wrap; scrypt at log2_n=10 to keep the tests quick)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import duckdb
import numpy as np
import pytest
import soundfile as sf

from speechvault.errors import (
    IntegrityError,
    InvalidInputError,
    ModelMismatchError,
    NotFoundError,
    PassphraseRequiredError,
    VaultBusyError,
    VaultFormatError,
    WrongPassphraseError,
)
from store import schema
from store.vault import Vault
from tests.fakes import SR, FakeEncoder, tone_mix, wav_bytes, write_wav

PW = "correct horse battery staple"
LOG2N = 10


@pytest.fixture(scope="module")
def enc() -> FakeEncoder:
    return FakeEncoder(K=384, C=4, seed=7, clip_seconds=0.5)


def _varied_wav(i: int) -> bytes:
    """100 distinct small files: lengths 0.2-1.4 s (1-3 windows), mono/stereo, 3 rates, 2 subtypes."""
    seconds = 0.2 + 0.3 * (i % 5)
    sr = (SR, 8000, 22050)[i % 3]
    y = tone_mix(1000 + i, seconds, sr)
    if i % 4 == 1:
        y = np.stack([y, tone_mix(5000 + i, seconds, sr)], axis=1)
    return wav_bytes(y, sr, "FLOAT" if i % 7 == 3 else "PCM_16")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("corpus")
    paths = []
    for i in range(100):
        p = d / f"rec_{i:03d}.wav"
        p.write_bytes(_varied_wav(i))
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def filled(tmp_path_factory, corpus, enc):
    """A read-write vault holding the 100-file corpus (ingested once for the module)."""
    path = tmp_path_factory.mktemp("vault") / "filled.duckdb"
    events = []
    v = Vault.create(path, PW, encoder=enc, kdf_log2_n=LOG2N)
    rep = v.ingest(corpus, progress=events.append, batch_size=16)
    v.close()
    return path, rep, events


def _new(tmp_path, enc, name="v.duckdb", **kw) -> Vault:
    return Vault.create(tmp_path / name, PW, encoder=enc, kdf_log2_n=LOG2N, **kw)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _consistent(con) -> None:
    """No partial rows: every recording has exactly n_windows index rows, no orphan codes."""
    bad = con.execute(
        "SELECT count(*) FROM recordings r LEFT JOIN "
        "(SELECT recording_id, count(*) AS n FROM codes GROUP BY recording_id) c "
        "ON c.recording_id = r.id WHERE coalesce(c.n, 0) <> r.n_windows").fetchone()[0]
    orphans = con.execute(
        "SELECT count(*) FROM codes WHERE recording_id NOT IN (SELECT id FROM recordings)").fetchone()[0]
    assert bad == 0 and orphans == 0


# ----------------------------------------------------------------------------- create / open
def test_create_open_info(tmp_path, enc):
    v = _new(tmp_path, enc, cipher="chacha20poly1305", tau=0.2)
    assert v.unlocked and not v.read_only
    info = v.info()
    assert info.format_version == schema.FORMAT_VERSION
    assert info.cipher == "chacha20poly1305"
    assert info.model_sha256 == enc.sha256 and info.K == 384 and info.C == 4
    assert info.class_names == enc.class_names
    assert info.tau == pytest.approx(0.2)
    assert info.recordings == 0 and info.windows == 0
    assert info.kdf == {"kdf": "scrypt", "log2_n": LOG2N, "r": 8, "p": 1}
    d = info.to_dict()
    json.dumps(d)  # JSON-safe
    assert PW not in json.dumps(d)
    v.close()
    assert (os.stat(tmp_path / "v.duckdb").st_mode & 0o777) == 0o600
    # the passphrase is not in the file
    assert PW.encode() not in (tmp_path / "v.duckdb").read_bytes()

    with Vault.open(tmp_path / "v.duckdb") as r:
        assert r.read_only and not r.unlocked
        i2 = r.info()
        assert (i2.model_sha256, i2.K, i2.cipher, i2.tau) == (enc.sha256, 384, "chacha20poly1305", 0.2)
        tfl, meta_json = r.model_bytes()  # the vault carries its model: portable
        assert tfl == enc.tflite_bytes and json.loads(meta_json)["K"] == 384
    with pytest.raises(InvalidInputError):
        _new(tmp_path, enc)  # exists: never overwritten


def test_create_refuses_bad_arguments(tmp_path, enc):
    with pytest.raises(InvalidInputError):
        Vault.create(tmp_path / "a.duckdb", "", encoder=enc, kdf_log2_n=LOG2N)
    with pytest.raises(InvalidInputError):
        Vault.create(tmp_path / "b.duckdb", PW, encoder=enc, kdf_log2_n=LOG2N, cipher="rot13")
    assert not (tmp_path / "a.duckdb").exists() and not (tmp_path / "b.duckdb").exists()


# ----------------------------------------------------------------------------- ingest / export
def test_roundtrip_100_files_byte_identical(filled, corpus):
    path, rep, events = filled
    assert len(rep.added) == 100 and not rep.errors and not rep.skipped_duplicates
    assert not rep.cancelled
    assert [e.kind for e in events].count("added") == 100
    assert [e.kind for e in events].count("committed") == 7  # 16 files per transaction
    assert [e.index for e in events if e.kind == "added"] == list(range(1, 101))
    assert {e.total for e in events} == {100}
    with Vault.open(path, passphrase=PW) as v:
        by_name = {r.name: r for r in v.list()}
        assert len(by_name) == 100
        for p in corpus:
            row = by_name[p.name]
            original = p.read_bytes()
            assert row.sha256 == _sha(original) and row.size == len(original)
            assert _sha(v.export(row.id)) == _sha(original)
        info = sf.info(str(corpus[1]))
        r1 = by_name[corpus[1].name]
        assert (r1.sample_rate, r1.channels) == (info.samplerate, info.channels)
        assert r1.duration == pytest.approx(info.duration)
        assert max(r.n_windows for r in by_name.values()) == 3  # 1.4 s at 0.5 s windows
        _consistent(v._con)
        assert v.verify().ok


def test_export_to(filled, tmp_path):
    path, rep, _ = filled
    with Vault.open(path, passphrase=PW) as v:
        rid = rep.added[5].id
        out = v.export_to(rid, tmp_path)
        assert out.name == rep.added[5].name
        assert _sha(out.read_bytes()) == rep.added[5].sha256
        with pytest.raises(InvalidInputError):
            v.export_to(rid, out)  # never overwrites
        with pytest.raises(NotFoundError):
            v.export(10_000)


def test_category_label_given_or_predicted(tmp_path, enc, corpus):
    v = _new(tmp_path, enc)
    rep = v.ingest(corpus[:3], category="greetings")
    assert {r.category for r in rep.added} == {"greetings"}
    rep2 = v.ingest(corpus[3:6])
    for r, p in zip(rep2.added, corpus[3:6]):
        assert r.category == enc.class_names[int(enc.encode_file(p).category[0])]
    assert v.category_counts()["greetings"] == 3
    v.close()


def test_dedup_by_content(tmp_path, enc, corpus):
    v = _new(tmp_path, enc)
    copy = tmp_path / "same_bytes_other_name.wav"
    copy.write_bytes(corpus[0].read_bytes())
    rep = v.ingest([corpus[0], corpus[1], copy, corpus[1]])
    assert [r.name for r in rep.added] == [corpus[0].name, corpus[1].name]
    ids = {r.name: r.id for r in rep.added}
    assert sorted(rep.skipped_duplicates) == sorted(
        [(str(copy), ids[corpus[0].name]), (str(corpus[1]), ids[corpus[1].name])])
    rep2 = v.ingest([corpus[0]])
    assert rep2.added == [] and rep2.skipped_duplicates == [(str(corpus[0]), ids[corpus[0].name])]
    assert v.info().recordings == 2
    v.close()


def test_bad_files_reported_and_skipped(tmp_path, enc, corpus):
    bad_random = tmp_path / "noise.wav"
    bad_random.write_bytes(os.urandom(3000))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.wav"
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(corpus[2].read_bytes()[:30])
    v = _new(tmp_path, enc)
    rep = v.ingest([corpus[0], bad_random, empty, missing, truncated, corpus[1]], batch_size=100)
    assert [r.name for r in rep.added] == [corpus[0].name, corpus[1].name]
    assert [p for p, _ in rep.errors] == [str(bad_random), str(empty), str(missing), str(truncated)]
    for _, msg in rep.errors:
        assert msg and "\n" not in msg
    assert v.info().recordings == 2
    _consistent(v._con)
    v.close()


def test_failed_insert_leaves_no_partial_rows(tmp_path, enc, corpus, monkeypatch):
    """A database failure after the recording row but before its codes: the batch is retried file
    by file; the failing file is reported, the others are stored, nothing half-written remains."""
    v = _new(tmp_path, enc)
    orig = Vault._insert_recording

    def flaky(self, con, item):
        if item["name"] == corpus[1].name:
            con.execute("INSERT INTO recordings (name, category, sha256, sample_rate, channels, "
                        "duration, size, added, n_windows, blob) VALUES "
                        "('x', 'x', ?, 1, 1, 1, 1, now(), 1, ''::BLOB)", [item["sha256"]])
            con.execute("SELECT 1 / 0 :: INTEGER + 'boom'::INTEGER")  # raises a duckdb error
        return orig(self, con, item)

    monkeypatch.setattr(Vault, "_insert_recording", flaky)
    rep = v.ingest(corpus[:3])
    assert [r.name for r in rep.added] == [corpus[0].name, corpus[2].name]
    assert [p for p, _ in rep.errors] == [str(corpus[1])]
    assert v.info().recordings == 2
    assert v._con.execute("SELECT count(*) FROM recordings WHERE name = 'x'").fetchone()[0] == 0
    _consistent(v._con)
    v.close()


def test_cancel_between_files_keeps_committed(tmp_path, enc, corpus):
    v = _new(tmp_path, enc)
    cancel = threading.Event()
    seen = []

    def progress(ev):
        seen.append(ev)
        if ev.kind == "added" and sum(e.kind == "added" for e in seen) == 5:
            cancel.set()

    rep = v.ingest(corpus[:20], progress=progress, cancel=cancel, batch_size=5)
    assert rep.cancelled
    assert len(rep.added) == 5
    assert seen[-1].kind == "cancelled"
    v.close()
    with Vault.open(tmp_path / "v.duckdb") as r:
        assert [x.name for x in r.list()] == [p.name for p in corpus[:5]]
        _consistent(r._con)


def test_read_only_refuses_writes(filled):
    path, rep, _ = filled
    with Vault.open(path, passphrase=PW) as v:
        with pytest.raises(InvalidInputError):
            v.ingest([])
        with pytest.raises(InvalidInputError):
            v.delete(rep.added[0].id)
        with pytest.raises(InvalidInputError):
            v.change_passphrase(PW, "x")


def test_delete(tmp_path, enc, corpus):
    v = _new(tmp_path, enc)
    rep = v.ingest(corpus[:4])
    gone = rep.added[1]
    assert v.search(str(corpus[1])).hits[0].recording_id == gone.id
    v.delete(gone.id)
    assert [r.id for r in v.list()] == [rep.added[i].id for i in (0, 2, 3)]
    assert gone.id not in [h.recording_id for h in v.search(str(corpus[1])).nearest]
    with pytest.raises(NotFoundError):
        v.get(gone.id)
    with pytest.raises(NotFoundError):
        v.delete(gone.id)
    _consistent(v._con)
    # a deleted file can be added again
    assert len(v.ingest([corpus[1]]).added) == 1
    v.close()


def test_multi_window_recording(tmp_path, enc):
    y = np.concatenate([tone_mix(1, 0.5), tone_mix(2, 0.5), tone_mix(3, 0.5)])
    long = tmp_path / "long.wav"
    write_wav(long, y)
    v = _new(tmp_path, enc)
    rec = v.ingest([long]).added[0]
    assert rec.n_windows == 3
    codes = v.codes_of(rec.id)
    assert codes.words.shape == (3, 6) and list(codes.window) == [0, 1, 2]
    np.testing.assert_array_equal(codes.words, enc.encode_file(long).words)
    # the middle third alone finds the recording once, by window 1
    res = v.search(tone_mix(2, 0.5), mode="traversal")
    assert res.matched and len(res.hits) == 1
    assert (res.hits[0].recording_id, res.hits[0].window, res.hits[0].ber) == (rec.id, 1, 0.0)
    v.close()


# ----------------------------------------------------------------------------- keys
def test_wrong_passphrase_and_locked_operations(filled):
    path, rep, _ = filled
    with pytest.raises(WrongPassphraseError):
        Vault.open(path, passphrase="wrong")
    with Vault.open(path) as v:
        with pytest.raises(WrongPassphraseError):
            v.unlock("Correct horse battery staple")
        assert not v.unlocked
        with pytest.raises(PassphraseRequiredError):
            v.export(rep.added[0].id)
        with pytest.raises(PassphraseRequiredError):
            v.verify()
        # the index is searchable without the passphrase (untrusted-server threat model)
        assert v.search(v.codes_of(rep.added[0].id)).hits[0].recording_id == rep.added[0].id
        v.unlock(PW)
        assert _sha(v.export(rep.added[0].id)) == rep.added[0].sha256


def test_change_passphrase(tmp_path, enc, corpus):
    v = _new(tmp_path, enc)
    rid = v.ingest(corpus[:2]).added[0].id
    with pytest.raises(WrongPassphraseError):
        v.change_passphrase("nope", "new pass")
    v.change_passphrase(PW, "new pass ✓")
    v.close()
    with pytest.raises(WrongPassphraseError):
        Vault.open(tmp_path / "v.duckdb", passphrase=PW)
    with Vault.open(tmp_path / "v.duckdb", passphrase="new pass ✓") as r:
        assert _sha(r.export(rid)) == _sha(corpus[0].read_bytes())
    raw = (tmp_path / "v.duckdb").read_bytes()
    assert b"new pass" not in raw and PW.encode() not in raw


# ----------------------------------------------------------------------------- tampering
def _set_blob(path, rid, blob):
    con = duckdb.connect(str(path))
    con.execute("UPDATE recordings SET blob = ? WHERE id = ?", [blob, rid])
    con.close()


def _get_blob(path, rid) -> bytes:
    con = duckdb.connect(str(path), read_only=True)
    b = bytes(con.execute("SELECT blob FROM recordings WHERE id = ?", [rid]).fetchone()[0])
    con.close()
    return b


def test_flipped_byte_detected_by_export_and_verify(tmp_path, enc, corpus):
    v = _new(tmp_path, enc)
    added = v.ingest(corpus[:4]).added
    v.close()
    path = tmp_path / "v.duckdb"
    victim = added[2]
    blob = bytearray(_get_blob(path, victim.id))
    blob[len(blob) // 2] ^= 0x01
    _set_blob(path, victim.id, bytes(blob))
    with Vault.open(path, passphrase=PW) as r:
        with pytest.raises(IntegrityError) as ei:
            r.export(victim.id)
        assert str(victim.id) in str(ei.value)
        rep = r.verify()
        assert not rep.ok and rep.checked == 4
        assert [(i, n) for i, n, _ in rep.failures] == [(victim.id, victim.name)]
        assert _sha(r.export(added[0].id)) == added[0].sha256  # the others still export
    # the vault still opens and searches afterwards
    with Vault.open(path) as r:
        assert r.info().recordings == 4


def test_swapped_blobs_fail_the_tag(tmp_path, enc, corpus):
    """Blobs are sealed with associated data = the recording's SHA-256, so moving a valid blob
    to another record fails authentication."""
    v = _new(tmp_path, enc)
    a, b = v.ingest(corpus[:2]).added
    v.close()
    path = tmp_path / "v.duckdb"
    ba, bb = _get_blob(path, a.id), _get_blob(path, b.id)
    _set_blob(path, a.id, bb)
    _set_blob(path, b.id, ba)
    with Vault.open(path, passphrase=PW) as r:
        with pytest.raises(IntegrityError):
            r.export(a.id)
        assert sorted(i for i, _, _ in r.verify().failures) == [a.id, b.id]


def test_truncated_and_garbage_blob_do_not_crash_verify(tmp_path, enc, corpus):
    v = _new(tmp_path, enc)
    a, b, c = v.ingest(corpus[:3]).added
    v.close()
    path = tmp_path / "v.duckdb"
    _set_blob(path, a.id, _get_blob(path, a.id)[:10])
    _set_blob(path, b.id, b"")
    with Vault.open(path, passphrase=PW) as r:
        rep = r.verify()
        assert sorted(i for i, _, _ in rep.failures) == [a.id, b.id]
        for _, _, msg in rep.failures:
            assert "\n" not in msg
        with pytest.raises(IntegrityError):
            r.export(b.id)


# ----------------------------------------------------------------------------- model binding
def test_model_mismatch_refused(filled, enc):
    path, _, _ = filled
    other = FakeEncoder(K=384, C=4, seed=8)
    with pytest.raises(ModelMismatchError) as ei:
        Vault.open(path, encoder=other)
    assert enc.sha256[:12] in str(ei.value) and other.sha256[:12] in str(ei.value)
    with Vault.open(path, encoder=enc) as v:  # the right model is accepted
        assert v.encoder is enc


# ----------------------------------------------------------------------------- not a vault
def test_non_vault_files_refused(tmp_path, enc):
    rnd = tmp_path / "random.bin"
    rnd.write_bytes(os.urandom(10_000))
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    for p in (rnd, empty, other):
        for ro in (True, False):
            with pytest.raises(VaultFormatError) as ei:
                Vault.open(p, read_only=ro)
            assert "\n" not in str(ei.value) and str(p) in str(ei.value)
    with pytest.raises(VaultFormatError):
        Vault.open(tmp_path)  # a directory
    with pytest.raises(NotFoundError):
        Vault.open(tmp_path / "nope.duckdb")
    assert not (tmp_path / "nope.duckdb").exists()


def test_newer_format_version_refused(tmp_path, enc):
    _new(tmp_path, enc).close()
    con = duckdb.connect(str(tmp_path / "v.duckdb"))
    con.execute("UPDATE vault_meta SET format_version = ?", [schema.FORMAT_VERSION + 1])
    con.close()
    with pytest.raises(VaultFormatError, match="newer"):
        Vault.open(tmp_path / "v.duckdb")


def test_upgrade_path_runs_migrations(tmp_path, enc, monkeypatch):
    """The migrations table is keyed by version: a current vault meets a pretend next version."""
    _new(tmp_path, enc).close()
    path = tmp_path / "v.duckdb"
    cur = schema.FORMAT_VERSION
    monkeypatch.setattr(schema, "FORMAT_VERSION", cur + 1)
    monkeypatch.setitem(schema.MIGRATIONS, cur,
                        lambda con: con.execute("ALTER TABLE recordings ADD COLUMN note VARCHAR"))
    with pytest.raises(VaultFormatError, match="read-write"):
        Vault.open(path)  # read-only: no upgrade in place
    Vault.open(path, read_only=False).close()
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT format_version FROM vault_meta").fetchone()[0] == cur + 1
    assert [r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()] == [cur, cur + 1]
    assert "note" in [r[0] for r in con.execute("DESCRIBE recordings").fetchall()]
    con.close()


def test_version_1_vault_is_upgraded_and_keeps_its_recordings(tmp_path, enc):
    """A format-1 vault (no model.fingerprint column) opened read-write becomes version 2 and
    still searches and exports what it held."""
    v = _new(tmp_path, enc)
    src = tmp_path / "a.wav"
    write_wav(src, tone_mix(7))
    rid = v.ingest([src]).added[0].id
    v.close()
    path = tmp_path / "v.duckdb"
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE model DROP COLUMN fingerprint")
    con.execute("UPDATE vault_meta SET format_version = 1")
    con.execute("DELETE FROM schema_migrations WHERE version > 1")
    con.close()
    with Vault.open(path, read_only=False, passphrase=PW, encoder=enc) as v2:
        assert v2.info().format_version == schema.FORMAT_VERSION
        assert v2.search(src).hits[0].recording_id == rid
        assert v2.export(rid) == src.read_bytes()
    con = duckdb.connect(str(path), read_only=True)
    assert "fingerprint" in [r[0] for r in con.execute("DESCRIBE model").fetchall()]
    con.close()


# ----------------------------------------------------------------------------- lock conflicts
def test_busy_when_another_process_writes(filled):
    path, _, _ = filled
    code = textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(path)!r})
        con.execute("BEGIN TRANSACTION")
        con.execute("UPDATE vault_meta SET tau = tau")
        print("ready", flush=True)
        sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        for ro in (True, False):
            with pytest.raises(VaultBusyError) as ei:
                Vault.open(path, read_only=ro)
            # the holder is named (pid, and how: the kernel's lock table)
            assert str(ei.value).startswith(f"vault is busy: pid {proc.pid} (python")
            assert "has it open read-write" in str(ei.value)
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
    with Vault.open(path) as v:  # free again
        assert v.info().recordings == 100


# ----------------------------------------------------------------------------- verbatim text
NASTY = [
    "it's \"quoted\"",
    "semi; DROP TABLE recordings; --",
    "new\nline\tand tab",
    "ünïcødé 中文 🎙",
    "100% _like_ \\ back",
]


def test_names_and_categories_stored_verbatim(tmp_path, enc):
    paths = []
    for i, name in enumerate(NASTY):
        p = tmp_path / (name.replace("/", "_") + ".wav")
        write_wav(p, tone_mix(300 + i))
        paths.append(p)
    v = _new(tmp_path, enc)
    for p, label in zip(paths, NASTY):
        rep = v.ingest([p], category=label)
        assert not rep.errors
    rows = v.list()
    assert [r.name for r in rows] == [p.name for p in paths]
    assert [r.category for r in rows] == NASTY
    assert set(v.category_counts()) == set(NASTY)
    for label in NASTY:
        assert [r.category for r in v.list(category=label)] == [label]
    assert [r.name for r in v.list(name_like="100% _like_")] == [paths[4].name]
    assert v.list(name_like="%") == [rows[4]]  # literal substring, not a LIKE pattern
    assert [r.name for r in v.list(name_like="ÜNÏ")] == [paths[3].name]
    hit = v.search(str(paths[1])).hits[0]
    assert (hit.name, hit.category) == (paths[1].name, NASTY[1])
    v.close()
    with Vault.open(tmp_path / "v.duckdb") as r:
        assert [x.category for x in r.list()] == NASTY  # tables all still there


def test_store_imports_no_ui_or_tensorflow():
    code = ("import sys, store.vault, store.search, store.schema, store.records; "
            "bad = [m for m in ('textual', 'typer', 'tensorflow') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=str(Path(__file__).parents[1]),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
