"""Shared vault handles (issue 17, item 4): searches go on during an ingest in another process,
an ingest starts while searchers hold the vault, and a refusal names the holder.

Every wait here is an event between processes (a line on a pipe), never a clock: a process
pauses at a known point (between two ingest commits, inside a session) and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from speechvault.errors import SpeechVaultError, VaultBusyError
from store import access as _access
from store.holders import short_command
from store.vault import Vault
from tests.fakes import FakeEncoder, tone_mix, write_wav

REPO = Path(__file__).resolve().parents[1]
PW = "shared access pw"
ENC_ARGS = dict(K=128, C=3, seed=21)

# Ingest ``files`` with a shared read-write handle, two files per commit; after the first
# commit say "paused" and wait for a line on stdin, then finish and print the ids added.
PAUSING_INGEST = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {repo!r})
    from store.vault import Vault
    from tests.fakes import FakeEncoder
    vault, files = sys.argv[1], json.loads(sys.argv[2])
    paused = []
    def progress(event):
        if event.kind == "committed" and not paused:
            paused.append(1)
            print("paused", flush=True)
            sys.stdin.readline()
    with Vault.open(vault, read_only=False, passphrase={pw!r}, encoder=FakeEncoder(**{enc!r}),
                    shared=True, wait=60) as v:
        r = v.ingest(files, progress=progress, batch_size=2)
    print("done " + json.dumps([a.id for a in r.added]), flush=True)
""")

# Hold a shared read-write handle inside one session (DuckDB's write lock and the turnstile
# taken) until a line arrives on stdin.
IN_SESSION = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from store.vault import Vault
    from tests.fakes import FakeEncoder
    v = Vault.open(sys.argv[1], read_only=False, passphrase={pw!r},
                   encoder=FakeEncoder(**{enc!r}), shared=True, wait=60)
    with v._lock:
        v._db().execute("SELECT count(*) FROM recordings").fetchone()
        print("in session", flush=True)
        sys.stdin.readline()
    print("between sessions", flush=True)
    sys.stdin.readline()
    v.close()
""")


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(REPO), env={**os.environ, "OMP_NUM_THREADS": "1"})


def _say(proc: subprocess.Popen, line: str = "go") -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _expect(proc: subprocess.Popen, prefix: str) -> str:
    line = proc.stdout.readline()
    assert line.startswith(prefix), (line, proc.stderr.read() if proc.poll() is not None else "")
    return line.strip()


@pytest.fixture()
def vault(tmp_path):
    enc = FakeEncoder(**ENC_ARGS)
    base = []
    for i in range(6):
        p = tmp_path / f"base{i}.wav"
        write_wav(p, tone_mix(300 + i, 0.3))
        base.append(p)
    new = []
    for i in range(8):
        p = tmp_path / f"new{i}.wav"
        write_wav(p, tone_mix(900 + i, 0.3))
        new.append(p)
    path = tmp_path / "shared.duckdb"
    with Vault.create(path, PW, encoder=enc, kdf_log2_n=10) as v:
        v.ingest(base)
    return path, enc, base, new


def test_search_during_an_ingest_in_another_process_returns_results(vault):
    path, enc, base, new = vault
    ing = _spawn(PAUSING_INGEST.format(repo=str(REPO), pw=PW, enc=ENC_ARGS), str(path),
                 json.dumps([str(p) for p in new]))
    try:
        _expect(ing, "paused")  # the ingest holds its read-write handle, between two commits
        with Vault.open(path, encoder=enc, shared=True, wait=30) as r:
            hit = r.search(base[2], mode="traversal", top=1).hits[0]
            assert (hit.name, hit.distance) == (base[2].name, 0)
            assert r.info().recordings == len(base) + 2  # the first commit is visible
            _say(ing)  # let the ingest finish while this searcher keeps its handle
            ids = json.loads(_expect(ing, "done ")[len("done "):])
            assert len(ids) == len(new)
            assert r.search(new[-1], mode="traversal", top=1).hits[0].name == new[-1].name
            assert r.info().recordings == len(base) + len(new)
        assert ing.wait(timeout=60) == 0, ing.stderr.read()
    finally:
        if ing.poll() is None:
            ing.kill()


def test_search_waits_for_a_writer_session_then_answers(vault):
    path, enc, base, _ = vault
    w = _spawn(IN_SESSION.format(repo=str(REPO), pw=PW, enc=ENC_ARGS), str(path))
    try:
        _expect(w, "in session")
        result: dict = {}

        def search() -> None:
            try:
                with Vault.open(path, encoder=enc, shared=True, wait=120) as r:
                    result["hit"] = r.search(base[0], mode="traversal", top=1).hits[0].name
            except Exception as exc:  # reported below
                result["error"] = exc

        t = threading.Thread(target=search)
        t.start()
        t.join(0.5)
        assert t.is_alive() and not result  # cannot get in while the writer's session lasts
        _say(w)  # the writer ends its session (its handle stays open)
        _expect(w, "between sessions")
        t.join(120)
        assert result == {"hit": base[0].name}
    finally:
        if w.poll() is None:
            _say(w)
        w.wait(timeout=60)


def test_ingest_while_a_searcher_holds_the_vault_completes(vault):
    path, enc, base, new = vault
    with Vault.open(path, encoder=enc, shared=True, wait=30) as r:
        assert r.search(base[1], mode="traversal", top=1).hits[0].distance == 0
        ing = _spawn(PAUSING_INGEST.format(repo=str(REPO), pw=PW, enc=ENC_ARGS), str(path),
                     json.dumps([str(p) for p in new]))
        _expect(ing, "paused")
        _say(ing)
        ids = json.loads(_expect(ing, "done ")[len("done "):])
        assert ing.wait(timeout=60) == 0, ing.stderr.read()
        assert len(ids) == len(new)
        assert r.info().recordings == len(base) + len(new)
    with Vault.open(path, passphrase=PW, encoder=enc) as v:
        rep = v.verify()
        assert rep.checked == len(base) + len(new) and not rep.failures


def test_refusal_names_a_held_reader_and_never_says_writing(vault, tmp_path):
    path, enc, _, new = vault
    with Vault.open(path, encoder=enc) as held:  # a held handle: DuckDB's shared lock, kept
        assert held.info().recordings == 6
        env = {**os.environ, "SPEECHVAULT_PASSPHRASE": PW, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            [sys.executable, "-c", "import sys, cli; sys.argv[0] = 'speechvault'; cli.main()",
             "ingest", str(path), str(new[0]), "--wait", "0"],
            capture_output=True, text=True, env=env, cwd=str(REPO))
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert err.startswith("error: vault is busy: ") and "\n" not in err, err
    assert f"pid {os.getpid()} " in err and "has it open read-only" in err, err
    assert "writing" not in err, err


def test_refusal_names_the_writer_between_its_commits(vault):
    path, enc, base, _ = vault
    w = _spawn(IN_SESSION.format(repo=str(REPO), pw=PW, enc=ENC_ARGS), str(path))
    try:
        _expect(w, "in session")
        _say(w)
        _expect(w, "between sessions")  # holds the writer file, no DuckDB lock
        with pytest.raises(VaultBusyError) as ei:
            Vault.open(path, read_only=False, passphrase=PW, encoder=enc, shared=True, wait=0)
        msg = str(ei.value)
        assert f"pid {w.pid} (python" in msg and "has it open for writing since" in msg, msg
        with Vault.open(path, encoder=enc, shared=True, wait=30) as r:  # readers still get in
            assert r.search(base[3], mode="traversal", top=1).hits[0].name == base[3].name
    finally:
        if w.poll() is None:
            _say(w)
        w.wait(timeout=60)
    with Vault.open(path, read_only=False, passphrase=PW, encoder=enc, shared=True) as v:
        assert v.info().recordings == 6  # the writer file is free again


def test_nested_calls_share_one_session(vault):
    path, enc, _, _ = vault
    with Vault.open(path, encoder=enc, shared=True) as v:
        calls = []
        real = v._access.connector
        v._access.connector = lambda: calls.append(1) or real()
        v._access._drop_idle()  # the connection of open() was kept idle: start from none
        info = v.info()  # info -> category_counts, model_name: nested, one connection
        assert info.recordings == 6 and len(calls) == 1
        assert v._con is None  # the session ended; the reader keeps the connection idle
        v.list()
        assert len(calls) == 1  # no writer came: the idle connection served again
        with Vault.open(path, read_only=False, passphrase=PW, encoder=enc, shared=True,
                        wait=60) as w:  # a writer in this process: the idle connection yields
            w.delete(1)
        assert v.info().recordings == 5 and len(calls) == 2  # reconnected, sees the delete


def test_lock_files_are_private(vault):
    path, enc, _, _ = vault
    with Vault.open(path, read_only=False, passphrase=PW, encoder=enc, shared=True):
        for f in (_access.lock_file(path), _access.writer_file(path)):
            assert f.exists() and (f.stat().st_mode & 0o777) == 0o600


def test_short_command_keeps_no_arguments():
    assert short_command(["/x/.venv/bin/speechvault", "ingest", "/secret/names.wav"]) \
        == "speechvault ingest"
    assert short_command(["/usr/bin/python3", "-c", "code"]) == "python3"
    assert short_command([]) == ""


def test_opening_a_recording_by_mistake_leaves_no_lock_files(vault):
    _, enc, base, _ = vault
    for ro in (True, False):
        with pytest.raises(SpeechVaultError):  # not a vault: one line, as before
            Vault.open(base[0], read_only=ro, passphrase=PW, encoder=enc, shared=True)
    assert not _access.lock_file(base[0]).exists() and not _access.writer_file(base[0]).exists()
