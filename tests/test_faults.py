"""Faults: ``kill -9`` during ingest, a full disk during ingest, and ``verify`` against flipped bytes.

* kill loop: a child process ingests many files (``tests.fakes.FakeEncoder``, small batches, so
  commits are frequent) and is SIGKILLed after a random delay; after every kill the vault opens,
  has no code row without its recording (nor a recording without all its code rows), every
  committed recording exports byte-identical to its source file, and ``verify`` is clean. The
  next child continues on the same vault (already stored files are skipped as duplicates).
  CI: 4 kills; ``-m slow``: 100 kills (``SPEECHVAULT_KILLS`` overrides).
* full disk: the child runs with RLIMIT_FSIZE just above the vault's size (SIGXFSZ ignored, so
  writes fail with EFBIG as on a full disk): ingest ends in a clean ``SpeechVaultError`` and the
  vault still opens, consistent, with every earlier recording intact.
* verify: a flipped byte anywhere in any blob (header, nonce, body, tag; both ciphers) is found
  and the recording named.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from store.vault import Vault
from tests.fakes import FakeEncoder, tone_mix, wav_bytes

REPO = Path(__file__).resolve().parents[1]
PW = "kill -9 survivor"
ENC_ARGS = dict(K=128, C=3, seed=9)
N_FILES = 120

CHILD = textwrap.dedent("""
    import os, resource, signal, sys, json
    sys.path.insert(0, {repo!r})
    from speechvault.errors import SpeechVaultError
    from store.vault import Vault
    from tests.fakes import FakeEncoder
    vault, files, fsize = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    enc = FakeEncoder(**{enc!r})
    v = Vault.open(vault, read_only=False, passphrase=os.environ["SV_PW"], encoder=enc)
    if fsize:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of death, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    print("ready", flush=True)
    try:
        rep = v.ingest(files, batch_size=3,
                       progress=lambda e: print(e.kind, flush=True) if e.kind == "committed" else None)
        v.close()
        print("done", len(rep.added), len(rep.errors), json.dumps(rep.errors)[:2000], flush=True)
    except SpeechVaultError as exc:
        print("error", type(exc).__name__, str(exc), flush=True)
        sys.exit(3)
""")


def _child(vault: Path, files: list[Path], fsize: int = 0) -> subprocess.Popen:
    code = CHILD.format(repo=str(REPO), enc=ENC_ARGS)
    return subprocess.Popen(
        [sys.executable, "-c", code, str(vault), json.dumps([str(f) for f in files]), str(fsize)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO),
        env={**os.environ, "SV_PW": PW, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("kcorpus")
    out = {}
    for i in range(N_FILES):
        p = d / f"k{i:03d}.wav"
        p.write_bytes(wav_bytes(tone_mix(20_000 + i, 0.25 + 0.05 * (i % 4))))
        out[str(p)] = p.read_bytes()
    return out


def check_vault(path: Path, corpus: dict[str, bytes], enc) -> int:
    """Opens; no orphan code rows, no recording short of rows; every recording byte-identical."""
    by_sha = {hashlib.sha256(b).hexdigest(): b for b in corpus.values()}
    with Vault.open(path, passphrase=PW, encoder=enc) as v:
        con = v._db()
        orphans = con.execute("SELECT count(*) FROM codes WHERE recording_id NOT IN "
                              "(SELECT id FROM recordings)").fetchone()[0]
        short = con.execute(
            "SELECT count(*) FROM recordings r LEFT JOIN (SELECT recording_id, count(*) n FROM codes "
            "GROUP BY recording_id) c ON c.recording_id = r.id WHERE coalesce(c.n, 0) <> r.n_windows"
        ).fetchone()[0]
        assert orphans == 0 and short == 0, (orphans, short)
        rows = v.list()
        for r in rows:
            assert v.export(r.id) == by_sha[r.sha256], r
        rep = v.verify()
        assert rep.ok and rep.checked == len(rows), rep.failures
        return len(rows)


def _fresh_files(d: Path, start: int, n: int, corpus: dict[str, bytes]) -> list[Path]:
    """``n`` new distinct small WAVs (added to ``corpus``): every child has real work to do."""
    out = []
    for i in range(start, start + n):
        p = d / f"f{i:05d}.wav"
        p.write_bytes(wav_bytes(tone_mix(50_000 + i, 0.25 + 0.05 * (i % 4))))
        corpus[str(p)] = p.read_bytes()
        out.append(p)
    return out


def kill_loop(tmp_path: Path, corpus: dict[str, bytes], kills: int, seed: int,
              new_per_run: int = 40) -> dict:
    """Each round: a child ingests ``new_per_run`` fresh files plus some already stored ones
    (duplicates) in random order and is SIGKILLed after a random delay."""
    enc = FakeEncoder(**ENC_ARGS)
    path = tmp_path / "kill.duckdb"
    Vault.create(path, PW, encoder=enc, kdf_log2_n=10).close()
    rnd = random.Random(seed)
    corpus = dict(corpus)
    d = tmp_path / "fresh"
    d.mkdir()
    old = [Path(p) for p in corpus]
    stats = {"kills": 0, "finished": 0, "commits_seen": 0, "stored": 0}
    for k in range(kills):
        files = _fresh_files(d, k * new_per_run, new_per_run, corpus) + rnd.sample(old, 10)
        rnd.shuffle(files)
        proc = _child(path, files)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(rnd.uniform(0.0, 1.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            stats["kills"] += 1
        else:
            stats["finished"] += 1
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        stats["commits_seen"] += out.count("committed")
        stats["stored"] = check_vault(path, corpus, enc)
    return stats


def test_kill_9_during_ingest_ci(tmp_path, corpus):
    stats = kill_loop(tmp_path, corpus, kills=4, seed=1)
    assert stats["kills"] + stats["finished"] == 4
    assert stats["kills"] >= 2


@pytest.mark.slow
def test_kill_9_during_ingest_long(tmp_path, corpus):
    n = int(os.environ.get("SPEECHVAULT_KILLS", "100"))
    stats = kill_loop(tmp_path, corpus, kills=n, seed=2)
    print(f"\nkill loop: {stats['kills']} SIGKILLs, {stats['finished']} runs finished first, "
          f"{stats['stored']} recordings stored, {stats['commits_seen']} batch commits seen")
    assert stats["kills"] >= n * 0.7


def test_full_disk_during_ingest(tmp_path, corpus):
    enc = FakeEncoder(**ENC_ARGS)
    path = tmp_path / "full.duckdb"
    files = [Path(p) for p in sorted(corpus)]
    with Vault.create(path, PW, encoder=enc, kdf_log2_n=10) as v:
        assert len(v.ingest(files[:5]).added) == 5
    size = path.stat().st_size
    proc = _child(path, files[5:], fsize=size + 64 * 1024)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err[-3000:]
    assert proc.returncode in (0, 3), (proc.returncode, out, err[-2000:])
    print("\nfull-disk child:", out.splitlines()[-1])
    if proc.returncode == 3:
        assert out.splitlines()[-1].startswith("error StorageError cannot write to the vault")
    else:  # ingest kept going: every file it could not store is reported
        assert "done" in out and json.loads(out.split(" ", 3)[3]) if out.count(" ") >= 3 else True
    n = check_vault(path, corpus, enc)
    assert n >= 5
    # and the vault is still writable afterwards (no limit now)
    with Vault.open(path, read_only=False, passphrase=PW, encoder=enc) as v:
        v.ingest(files[5:10])
    assert check_vault(path, corpus, enc) >= 10


@pytest.mark.parametrize("cipher", ["rossler", "chacha20poly1305"])
def test_verify_finds_a_flipped_byte_anywhere(tmp_path, corpus, cipher):
    enc = FakeEncoder(**ENC_ARGS)
    path = tmp_path / f"flip-{cipher}.duckdb"
    files = [Path(p) for p in sorted(corpus)[:3]]
    with Vault.create(path, PW, encoder=enc, cipher=cipher, kdf_log2_n=10) as v:
        v.ingest(files)
    con = duckdb.connect(str(path))
    blobs = {int(i): (n, bytes(b)) for i, n, b in con.execute(
        "SELECT id, name, blob FROM recordings").fetchall()}
    con.close()
    rnd = random.Random(cipher)
    tag = 32 if cipher == "rossler" else 16
    v = Vault.open(path, passphrase=PW, encoder=enc)
    try:
        assert v.verify().ok
        for rid, (name, blob) in blobs.items():
            positions = {0, 5, 20, 35, 36, 43, 44, len(blob) - tag - 1, len(blob) - tag,
                         len(blob) - 1, rnd.randrange(44, len(blob) - tag)}
            for pos in sorted(positions):
                bad = bytearray(blob)
                bad[pos] ^= 1 << rnd.randrange(8)
                v.close()
                with duckdb.connect(str(path)) as c:
                    c.execute("UPDATE recordings SET blob = ? WHERE id = ?", [bytes(bad), rid])
                v = Vault.open(path, passphrase=PW, encoder=enc)
                rep = v.verify()
                assert [(f[0], f[1]) for f in rep.failures] == [(rid, name)], (pos, rep.failures)
                assert f"recording {rid}" in rep.failures[0][2]
            v.close()
            with duckdb.connect(str(path)) as c:
                c.execute("UPDATE recordings SET blob = ? WHERE id = ?", [blob, rid])
            v = Vault.open(path, passphrase=PW, encoder=enc)
        assert v.verify().ok
    finally:
        v.close()
