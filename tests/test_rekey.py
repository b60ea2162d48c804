"""``passwd --rekey`` and an all-or-nothing ``passwd`` (issue 17, item 6).

* after a rekey every recording exports byte-identical and ``verify`` is clean, and the master
  key of an OLD copy of the vault (unwrapped with the old passphrase) opens no blob of the
  rekeyed vault -- neither a re-sealed one nor one added afterwards (plain ``passwd`` keeps the
  master key: the old copy opens everything, which is what rekey is for);
* a damaged blob aborts the rekey before anything is written;
* ``kill -9`` during a rekey: the vault is wholly under the old key or wholly under the new one;
* a full disk during ``passwd`` / ``passwd --rekey``: a one-line error, and exactly one of the two
  passphrases opens a vault whose every recording verifies.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from speechvault.errors import IntegrityError, WrongPassphraseError
from store import envelope as ev
from store import keys
from store.integrity import blob_ad
from store.vault import Vault
from tests.fakes import FakeEncoder, encoder_loader, tone_mix, wav_bytes

REPO = Path(__file__).resolve().parents[1]
OLD, NEW = "the old passphrase", "the new passphrase"
ENC = dict(K=128, C=3, seed=61)


def _files(d: Path, n: int, start: int = 0) -> dict[str, bytes]:
    out = {}
    for i in range(start, start + n):
        p = d / f"r{i:03d}.wav"
        p.write_bytes(wav_bytes(tone_mix(9000 + i, 0.3)))
        out[str(p)] = p.read_bytes()
    return out


def _master_of(path: Path, passphrase: str) -> bytes:
    con = duckdb.connect(str(path), read_only=True)
    try:
        wrap = json.loads(con.execute("SELECT key_wrap FROM vault_meta").fetchone()[0])
    finally:
        con.close()
    return keys.unwrap_master_key(keys.KeyWrap.from_dict(wrap), passphrase)


def _blobs(path: Path) -> dict[int, tuple[bytes, bytes]]:
    """id -> (the blob's associated data: bound to the vault and the record id, blob)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        vid = con.execute("SELECT vault_id FROM vault_meta").fetchone()[0]
        return {int(i): (blob_ad(vid, int(i), s), bytes(b)) for i, s, b in
                con.execute("SELECT id, sha256, blob FROM recordings").fetchall()}
    finally:
        con.close()


def _opens(blob: bytes, ad: bytes, master: bytes) -> bool:
    try:
        ev.open_sealed(blob, master, associated_data=ad)
    except IntegrityError:
        return False
    return True


@pytest.mark.parametrize("cipher", ["rossler", "chacha20poly1305"])
def test_rekey_locks_out_an_old_copy(tmp_path, cipher):
    enc = FakeEncoder(**ENC)
    files = _files(tmp_path, 5)
    path = tmp_path / "v.duckdb"
    with Vault.create(path, OLD, encoder=enc, cipher=cipher, kdf_log2_n=10) as v:
        v.ingest(list(files))
    old_copy = tmp_path / "old-copy.duckdb"
    shutil.copy(path, old_copy)
    old_master = _master_of(old_copy, OLD)
    with Vault.open(path, read_only=False, passphrase=OLD, encoder=enc) as v:
        assert v.rekey(OLD, NEW) == 5
        more = _files(tmp_path, 2, start=50)
        v.ingest(list(more))
        assert v.verify().ok
        by_sha = {__import__("hashlib").sha256(b).hexdigest(): b for b in {**files, **more}.values()}
        for r in v.list():
            assert v.export(r.id) == by_sha[r.sha256]
    with pytest.raises(WrongPassphraseError):
        Vault.open(path, passphrase=OLD, encoder=enc)
    new_master = _master_of(path, NEW)
    assert new_master != old_master
    blobs = _blobs(path)
    assert len(blobs) == 7
    assert not any(_opens(b, s, old_master) for s, b in blobs.values())
    assert all(_opens(b, s, new_master) for s, b in blobs.values())
    # plain passwd, for contrast: the old copy's key still opens what is added afterwards
    with Vault.open(path, read_only=False, passphrase=NEW, encoder=enc) as v:
        v.change_passphrase(NEW, OLD + " again")
        v.ingest(list(_files(tmp_path, 1, start=80)))
    assert all(_opens(b, s, new_master) for s, b in _blobs(path).values())


def test_rekey_same_passphrase_and_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import cli
    import store.vault as sv

    enc = FakeEncoder(**ENC)

    monkeypatch.setattr(sv, "_load_encoder_class", encoder_loader(enc))
    files = _files(tmp_path, 3)
    path = tmp_path / "v.duckdb"
    with Vault.create(path, OLD, encoder=enc, kdf_log2_n=10) as v:
        v.ingest(list(files))
    before = _master_of(path, OLD)
    env = {"SPEECHVAULT_PASSPHRASE": OLD, "SPEECHVAULT_NEW_PASSPHRASE": OLD}
    r = CliRunner().invoke(cli.app, ["passwd", str(path)], env=env)
    assert r.exit_code == 1 and "same as the old one" in r.stderr
    r = CliRunner().invoke(cli.app, ["passwd", str(path), "--rekey"], env=env)
    assert r.exit_code == 0, r.output
    assert "3 recording(s) re-sealed" in r.stderr
    assert _master_of(path, OLD) != before
    with Vault.open(path, passphrase=OLD, encoder=enc) as v:
        assert v.verify().ok and v.verify().checked == 3


def test_a_damaged_blob_aborts_the_rekey_untouched(tmp_path):
    enc = FakeEncoder(**ENC)
    path = tmp_path / "v.duckdb"
    with Vault.create(path, OLD, encoder=enc, kdf_log2_n=10) as v:
        v.ingest(list(_files(tmp_path, 3)))
    blobs = _blobs(path)
    bad = bytearray(blobs[2][1])
    bad[-1] ^= 1
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE recordings SET blob = ? WHERE id = 2", [bytes(bad)])
    before = _blobs(path)
    with Vault.open(path, read_only=False, passphrase=OLD, encoder=enc) as v:
        with pytest.raises(IntegrityError, match="recording 2"):
            v.rekey(OLD, NEW)
    assert _blobs(path) == before
    with Vault.open(path, passphrase=OLD, encoder=enc) as v:
        assert [f[0] for f in v.verify().failures] == [2]


CHILD = textwrap.dedent("""
    import os, resource, signal, sys
    sys.path.insert(0, {repo!r})
    from speechvault.errors import SpeechVaultError
    from store.vault import Vault
    from tests.fakes import FakeEncoder
    path, what, fsize = sys.argv[1], sys.argv[2], int(sys.argv[3])
    v = Vault.open(path, read_only=False, passphrase={old!r}, encoder=FakeEncoder(**{enc!r}))
    if fsize:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    print("ready", flush=True)
    try:
        if what == "rekey":
            v.rekey({old!r}, {new!r})
        else:
            v.change_passphrase({old!r}, {new!r})
        print("done", flush=True)
    except SpeechVaultError as exc:
        print("error", str(exc), flush=True)
        sys.exit(3)
""")


def _child(path: Path, what: str, fsize: int = 0) -> subprocess.Popen:
    code = CHILD.format(repo=str(REPO), old=OLD, new=NEW, enc=ENC)
    return subprocess.Popen([sys.executable, "-c", code, str(path), what, str(fsize)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(REPO))


def _consistent(path: Path, originals: dict[str, bytes]) -> str:
    """Exactly one passphrase opens the vault, and under it every recording verifies and
    exports byte-identical. Returns which one."""
    enc = FakeEncoder(**ENC)
    works = []
    for pw in (OLD, NEW):
        try:
            v = Vault.open(path, passphrase=pw, encoder=enc)
        except WrongPassphraseError:
            continue
        with v:
            rep = v.verify()
            assert rep.ok and rep.checked == len(originals), rep.failures
            assert sorted(v.export(r.id) for r in v.list()) == sorted(originals.values())
        works.append(pw)
    assert len(works) == 1, works
    return works[0]


def test_kill_9_during_rekey_is_all_or_nothing(tmp_path):
    originals = _files(tmp_path, 40)
    path = tmp_path / "v.duckdb"
    with Vault.create(path, OLD, encoder=FakeEncoder(**ENC), kdf_log2_n=10) as v:
        v.ingest(list(originals))
    pristine = path.read_bytes()
    rnd = random.Random(17)
    seen = set()
    for _ in range(4):
        path.write_bytes(pristine)
        wal = Path(str(path) + ".wal")
        if wal.exists():
            wal.unlink()
        p = _child(path, "rekey")
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rnd.uniform(0.0, 0.6))
        p.kill()
        p.wait()
        seen.add(_consistent(path, originals))
    assert seen  # each round checked (which side a kill lands on is timing)


@pytest.mark.parametrize("what", ["passwd", "rekey"])
@pytest.mark.parametrize("room", ["wal-only", "nothing"])
def test_full_disk_during_passwd_is_all_or_nothing(tmp_path, what, room):
    """"wal-only": the commit reaches the WAL, the checkpoint fails (the change stands, and the
    message says so); "nothing": the commit itself fails (the old passphrase stands)."""
    originals = _files(tmp_path, 6)
    path = tmp_path / "v.duckdb"
    with Vault.create(path, OLD, encoder=FakeEncoder(**ENC), kdf_log2_n=10) as v:
        v.ingest(list(originals))
    size = path.stat().st_size
    p = _child(path, what, fsize=size + 4096 if room == "wal-only" else 512)
    out, err = p.communicate(timeout=120)
    assert "Traceback" not in err, err
    lines = [ln for ln in out.splitlines() if ln.strip()]
    print(what, room, lines)
    assert lines[0] == "ready" and len(lines) == 2, out
    if lines[1].startswith("error"):
        assert p.returncode == 3
    which = _consistent(path, originals)
    if "unchanged" in lines[1] or "rolled back" in lines[1]:
        assert which == OLD, lines[1]
    elif "committed" in lines[1] or lines[1] == "done":
        assert which == NEW, lines[1]
