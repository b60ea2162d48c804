"""Tamper matrix (in the manner of age's and SQLCipher's test suites) and secret hygiene.

Envelope level, both ciphers (rossler/mixed, rossler/paper, chacha20poly1305): a flipped byte
in each header field, the nonce, the tag, the body; truncation (inside the header, body, tag);
appended bytes; a blob swapped between two records (associated data); a wrong key. Each is an
``IntegrityError`` whose message names its kind, and no plaintext is released: for the tag-level
cases the keystream is never even generated (the tag is checked first).

Tag-level cases (nonce, tag, body, swap, wrong key) are indistinguishable by design -- one MAC
covers them all -- so they share the "authentication failed" message; at the vault level a wrong
passphrase is caught earlier by the key check (``WrongPassphraseError``) and a swapped blob is
reported with the recording it was found in.

Secrets: the passphrase is never in the vault file, its messages, tracebacks or logs; vault files
are created 0600; the master key is dropped on close/lock.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import traceback
from pathlib import Path

import duckdb
import pytest

from speechvault.errors import (
    IntegrityError,
    PassphraseRequiredError,
    SpeechVaultError,
    WrongPassphraseError,
)
from store import envelope as ev
from store.vault import Vault
from tests.fakes import FakeEncoder, tone_mix, wav_bytes, write_wav

REPO = Path(__file__).resolve().parents[1]
KEY = bytes(range(32))
OTHER_KEY = bytes([KEY[0] ^ 0x01]) + KEY[1:]
PLAIN = wav_bytes(tone_mix(1, 0.1))  # a real little WAV (3.2 KB)
AD = b"\x11" * 32
PW = "Tr0ub4dor&3 – ünïcode pässphrase"
LOG2N = 10

VARIANTS = [("rossler", "mixed"), ("rossler", "paper"), ("chacha20poly1305", "mixed")]
TAG = "authentication failed"


def _flip(blob: bytes, i: int, mask: int = 0x01) -> bytes:
    b = bytearray(blob)
    b[i] ^= mask
    return bytes(b)


@pytest.fixture(params=VARIANTS, ids=lambda v: f"{v[0]}-{v[1]}")
def sealed(request):
    cipher, extraction = request.param
    return cipher, ev.seal(PLAIN, KEY, cipher=cipher, extraction=extraction, associated_data=AD)


@pytest.fixture
def no_decryption(monkeypatch):
    """Fail loudly if a keystream is generated (= something would be decrypted)."""
    def boom(*a, **k):
        raise AssertionError("keystream generated for a blob that failed authentication")

    monkeypatch.setattr(ev, "_rossler_stream", boom)


def _header_cases(cipher: str) -> list[tuple[str, int, int, str]]:
    """(what, offset, xor mask, expected message) for each header field."""
    rossler = cipher == "rossler"
    return [
        ("magic", 0, 0x01, "bad magic"),
        ("version", 4, 0x02, "unknown blob format version"),
        ("cipher id", 5, 0x04, "unknown cipher id"),
        ("extraction id", 6, 0x04, "unknown extraction id" if rossler else "Rossler parameters"),
        ("log2 lanes", 7, 0x01, TAG if rossler else "Rossler parameters"),   # valid value: MAC'd
        ("log2 lanes (out of range)", 7, 0x40, "out of range" if rossler else "Rossler parameters"),
        # sign bit: -0.125 is out of range; chacha's 0.0 becomes -0.0, which equals 0.0, so the
        # header parses and the tag (over the raw header) refuses it
        ("step", 8, 0x80, "out of range" if rossler else TAG),
        ("step (chacha: nonzero)", 9, 0x10, TAG if rossler else "Rossler parameters"),
        ("transient", 16, 0x80, "out of range" if rossler else "Rossler parameters"),
        ("length (high)", 36, 0x01, "truncated blob"),
        ("length (low)", 43, 0x01, ""),  # decided below: truncated or length mismatch
    ]


def test_header_fields(sealed, no_decryption):
    cipher, blob = sealed
    for what, off, mask, msg in _header_cases(cipher):
        bad = _flip(blob, off, mask)
        if what == "length (low)":
            expected = "truncated blob" if (struct.unpack(">Q", bad[36:44])[0] > len(PLAIN)) \
                else "length mismatch"
            msg = expected
        with pytest.raises(IntegrityError, match=msg) as ei:
            ev.open_sealed(bad, KEY, associated_data=AD)
        assert "\n" not in str(ei.value), what


@pytest.mark.parametrize("region", ["nonce", "tag", "body first", "body middle", "body last"])
def test_nonce_tag_body_flips(sealed, region, no_decryption):
    cipher, blob = sealed
    tag_len = ev.tag_size(cipher)
    off = {"nonce": 20 + 7, "tag": len(blob) - tag_len + 5, "body first": ev.HEADER_SIZE,
           "body middle": ev.HEADER_SIZE + len(PLAIN) // 2,
           "body last": ev.HEADER_SIZE + len(PLAIN) - 1}[region]
    for mask in (0x01, 0x80, 0xFF):
        with pytest.raises(IntegrityError, match=TAG):
            ev.open_sealed(_flip(blob, off, mask), KEY, associated_data=AD)


def test_truncation_and_appended_bytes(sealed, no_decryption):
    cipher, blob = sealed
    for n in (0, 3, 10, ev.HEADER_SIZE - 1):
        with pytest.raises(IntegrityError, match="truncated blob|bad magic"):
            ev.open_sealed(blob[:n], KEY, associated_data=AD)
    for n in (ev.HEADER_SIZE, ev.HEADER_SIZE + 100, len(blob) - 1):
        with pytest.raises(IntegrityError, match="truncated blob"):
            ev.open_sealed(blob[:n], KEY, associated_data=AD)
    for extra in (b"\x00", b"garbage" * 100):
        with pytest.raises(IntegrityError, match="length mismatch"):
            ev.open_sealed(blob + extra, KEY, associated_data=AD)


def test_swapped_blob_and_wrong_key(sealed, no_decryption):
    cipher, blob = sealed
    with pytest.raises(IntegrityError, match=TAG):
        ev.open_sealed(blob, KEY, associated_data=b"\x22" * 32)  # another record's AD
    with pytest.raises(IntegrityError, match=TAG):
        ev.open_sealed(blob, OTHER_KEY, associated_data=AD)


def test_untampered_blob_still_opens(sealed):
    assert ev.open_sealed(sealed[1], KEY, associated_data=AD) == PLAIN


def test_distinct_kinds_have_distinct_messages(sealed):
    cipher, blob = sealed
    kinds = {
        "magic": _flip(blob, 0),
        "version": _flip(blob, 4, 2),
        "cipher": _flip(blob, 5, 4),
        "truncated": blob[:-1],
        "appended": blob + b"x",
        "tag": _flip(blob, len(blob) - 1),
    }
    messages = {}
    for k, b in kinds.items():
        with pytest.raises(IntegrityError) as ei:
            ev.open_sealed(b, KEY, associated_data=AD)
        messages[k] = str(ei.value).split(":")[0]
    assert len(set(messages.values())) == len(messages), messages


# ----------------------------------------------------------------------------- vault level
@pytest.fixture(scope="module")
def enc():
    return FakeEncoder(K=128, C=3, seed=5)


@pytest.fixture(params=["rossler", "chacha20poly1305"])
def vault2(request, tmp_path, enc):
    """A closed vault with two recordings; returns (path, {id: original bytes})."""
    path = tmp_path / "t.duckdb"
    files = []
    for i in range(2):
        p = tmp_path / f"r{i}.wav"
        write_wav(p, tone_mix(100 + i, 0.4))
        files.append(p)
    with Vault.create(path, PW, encoder=enc, cipher=request.param, kdf_log2_n=LOG2N) as v:
        rep = v.ingest(files)
        originals = {r.id: Path(f).read_bytes() for r, f in zip(rep.added, files)}
    return path, originals


def _blobs(path) -> dict[int, bytes]:
    con = duckdb.connect(str(path))
    try:
        return {int(i): bytes(b) for i, b in con.execute("SELECT id, blob FROM recordings").fetchall()}
    finally:
        con.close()


def _set_blob(path, rid: int, blob: bytes) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("UPDATE recordings SET blob = ? WHERE id = ?", [blob, rid])
    finally:
        con.close()


def test_vault_swapped_blobs_refused_and_named(vault2, enc):
    path, originals = vault2
    (a, ba), (b, bb) = sorted(_blobs(path).items())
    _set_blob(path, a, bb)
    _set_blob(path, b, ba)
    with Vault.open(path, passphrase=PW, encoder=enc) as v:
        for rid in (a, b):
            with pytest.raises(IntegrityError, match=f"recording {rid}: {TAG}"):
                v.export(rid)
        rep = v.verify()
        assert sorted(f[0] for f in rep.failures) == [a, b]
        assert all(f[1].startswith("r") for f in rep.failures)  # names the recording


def test_vault_wrong_passphrase_refused_before_decryption(vault2, enc, monkeypatch):
    path, _ = vault2
    monkeypatch.setattr(ev, "open_sealed", lambda *a, **k: pytest.fail("decrypted"))
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        Vault.open(path, passphrase=PW + "x", encoder=enc)
    with Vault.open(path, encoder=enc) as v:
        with pytest.raises(PassphraseRequiredError):
            v.export(1)


def test_vault_damaged_key_wrap_refused(vault2, enc):
    path, _ = vault2
    import json

    con = duckdb.connect(str(path))
    wrap = json.loads(con.execute("SELECT key_wrap FROM vault_meta").fetchone()[0])
    w = bytearray.fromhex(wrap["wrapped"])
    w[3] ^= 1
    wrap["wrapped"] = w.hex()
    con.execute("UPDATE vault_meta SET key_wrap = ?", [json.dumps(wrap)])
    con.close()
    with pytest.raises(IntegrityError, match="wrapped master key is damaged"):
        Vault.open(path, passphrase=PW, encoder=enc)


# ----------------------------------------------------------------------------- secrets
def _vault_bytes(path: Path) -> bytes:
    data = b""
    for p in (path, Path(str(path) + ".wal")):
        if p.exists():
            data += p.read_bytes()
    return data


def _needles(pw: str) -> list[bytes]:
    import unicodedata

    out = set()
    for form in ("NFC", "NFD"):
        s = unicodedata.normalize(form, pw)
        out.add(s.encode("utf-8"))
        out.add(s.encode("utf-16-le"))
    out.add(pw.encode("utf-8").hex().encode())
    return sorted(out)


def test_passphrase_never_in_vault_file_messages_or_logs(tmp_path, enc, caplog):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "s.duckdb"
    wav = tmp_path / "a.wav"
    write_wav(wav, tone_mix(7, 0.3))
    (tmp_path / "bad.wav").write_bytes(b"RIFF" + os.urandom(100))
    new_pw = "another secret passphrase 42"
    with Vault.create(path, PW, encoder=enc, kdf_log2_n=LOG2N) as v:
        rep = v.ingest([wav, tmp_path / "bad.wav", tmp_path / "missing.wav"])
        assert len(rep.added) == 1 and len(rep.errors) == 2
        texts = [m for _, m in rep.errors] + [repr(v), str(v.info().to_dict())]
        v.change_passphrase(PW, new_pw)
        v.export(rep.added[0].id)
    for secret in (PW, new_pw):
        for needle in _needles(secret):
            assert needle not in _vault_bytes(path), f"passphrase found in the vault file ({needle!r})"
        assert all(secret not in t for t in texts)
        assert secret not in caplog.text
    # tracebacks of the failures a passphrase can cause
    for attempt in (PW, "wrong " + new_pw):
        try:
            Vault.open(path, passphrase=attempt, encoder=enc)
        except SpeechVaultError as exc:
            tb = "".join(traceback.format_exception(exc))
            assert attempt not in tb and attempt not in repr(exc)
        else:
            pytest.fail("a wrong passphrase unlocked the vault")


def test_new_vault_files_are_private(tmp_path, enc):
    old = os.umask(0o022)  # a permissive umask must not matter
    try:
        path = tmp_path / "m.duckdb"
        wav = tmp_path / "a.wav"
        write_wav(wav, tone_mix(8, 0.3))
        with Vault.create(path, PW, encoder=enc, kdf_log2_n=LOG2N) as v:
            assert os.stat(path).st_mode & 0o777 == 0o600
            v.ingest([wav])
            for p in (path, Path(str(path) + ".wal")):
                if p.exists():
                    assert os.stat(p).st_mode & 0o777 == 0o600, p
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_master_key_dropped_on_close_and_lock(tmp_path, enc):
    v = Vault.create(tmp_path / "k.duckdb", PW, encoder=enc, kdf_log2_n=LOG2N)
    assert v.unlocked
    v.lock()
    assert not v.unlocked and v._master is None
    v.unlock(PW)
    v.close()
    assert v._master is None
    assert "unlocked" not in repr(v) or "locked" in repr(v)


def test_cli_takes_no_passphrase_in_argv():
    """The CLI offers --key-file / $SPEECHVAULT_PASSPHRASE / a hidden prompt, never an option."""
    r = subprocess.run([sys.executable, "-c", "import cli"], cwd=str(REPO), capture_output=True)
    if r.returncode != 0:
        pytest.skip("cli.py does not import in this checkout")
    for cmd in ("init", "ingest", "export", "verify", "passwd", "search"):
        out = subprocess.run([sys.executable, "cli.py", cmd, "--help"], cwd=str(REPO),
                             capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        if out.returncode != 0:
            continue
        assert "--passphrase" not in out.stdout and "--password" not in out.stdout, cmd
