"""Concurrency: many read-only searchers at once; writers and readers exclude each other cleanly.

* 8 processes open one vault read-only at the same time (each reports "open" before any is
  told to start), each runs every query in two search modes, and all get exactly the results a
  single process gets.
* a writer while readers are open gets ``VaultBusyError`` ("vault is busy"), not a crash; the
  reverse too (a reader while another process writes); and the readers keep working.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from speechvault.errors import VaultBusyError
from store.vault import Vault
from tests.fakes import FakeEncoder, tone_mix, write_wav

REPO = Path(__file__).resolve().parents[1]
PW = "concurrent pw"
ENC_ARGS = dict(K=128, C=3, seed=13)
SEARCHERS = int(os.environ.get("SPEECHVAULT_SEARCHERS", "8"))

READER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {repo!r})
    from store.vault import Vault
    from tests.fakes import FakeEncoder
    vault, queries = sys.argv[1], json.loads(sys.argv[2])
    v = Vault.open(vault, encoder=FakeEncoder(**{enc!r}))    # read-only
    print("open", flush=True)
    cmd = sys.stdin.readline().strip()
    out = {{}}
    for q in queries:
        for mode in ("two-stage", "traversal"):
            r = v.search(q, mode=mode, top=3)
            out[q + "|" + mode] = [[h.recording_id, h.distance] for h in r.nearest]
    print("result " + json.dumps(out), flush=True)
    sys.stdin.readline()      # stay open until told to close
    v.close()
""")


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    d = tmp_path_factory.mktemp("conc")
    files = []
    for i in range(30):
        p = d / f"c{i:02d}.wav"
        write_wav(p, tone_mix(700 + i, 0.3))
        files.append(p)
    enc = FakeEncoder(**ENC_ARGS)
    path = d / "conc.duckdb"
    with Vault.create(path, PW, encoder=enc, kdf_log2_n=10) as v:
        v.ingest(files)
    queries = [str(f) for f in files[::3]]
    with Vault.open(path, encoder=enc) as v:
        expected = {q + "|" + m: [[h.recording_id, h.distance] for h in v.search(q, mode=m, top=3).nearest]
                    for q in queries for m in ("two-stage", "traversal")}
    return path, queries, expected, enc


def _readers(path: Path, queries: list[str], n: int) -> list[subprocess.Popen]:
    code = READER.format(repo=str(REPO), enc=ENC_ARGS)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), json.dumps(queries)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=str(REPO),
                              env={**os.environ, "OMP_NUM_THREADS": "1"}) for _ in range(n)]
    for p in procs:
        line = p.stdout.readline().strip()
        assert line == "open", (line, p.stderr.read() if p.poll() is not None else "")
    return procs


def _finish(procs: list[subprocess.Popen]) -> list[dict]:
    results = []
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        line = p.stdout.readline()
        assert line.startswith("result "), (line, p.stderr.read())
        results.append(json.loads(line[len("result "):]))
    for p in procs:
        p.stdin.write("close\n")
        p.stdin.flush()
        p.wait(timeout=60)
        assert p.returncode == 0, p.stderr.read()
    return results


def test_eight_concurrent_searchers_all_correct(vault):
    path, queries, expected, _ = vault
    procs = _readers(path, queries, SEARCHERS)  # all SEARCHERS hold the vault open now
    try:
        results = _finish(procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert len(results) == SEARCHERS
    for r in results:
        assert r == expected
    # every query finds itself first (distance 0)
    for q in queries:
        assert expected[q + "|two-stage"][0][1] == 0


def test_writer_while_readers_are_open_is_busy(vault):
    path, queries, expected, enc = vault
    procs = _readers(path, queries[:1], 3)
    try:
        with pytest.raises(VaultBusyError, match="vault is busy"):
            Vault.open(path, read_only=False, passphrase=PW, encoder=enc)
        results = _finish(procs)  # the readers are unaffected
        assert all(r == {k: v for k, v in expected.items() if k.startswith(queries[0] + "|")}
                   for r in results)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_reader_while_a_writer_is_open_is_busy(vault):
    path, _, _, enc = vault
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from store.vault import Vault
        from tests.fakes import FakeEncoder
        v = Vault.open({str(path)!r}, read_only=False, passphrase={PW!r},
                       encoder=FakeEncoder(**{ENC_ARGS!r}))
        print("writing", flush=True)
        sys.stdin.readline()
        v.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        with pytest.raises(VaultBusyError, match="vault is busy"):
            Vault.open(path, encoder=enc)
        with pytest.raises(VaultBusyError, match="vault is busy"):
            Vault.open(path, read_only=False, passphrase=PW, encoder=enc)
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
    with Vault.open(path, encoder=enc) as v:  # free again
        assert v.info().recordings == 30


def test_same_process_read_and_write_handles_are_busy_not_a_crash(vault):
    path, _, _, enc = vault
    with Vault.open(path, encoder=enc):
        with pytest.raises(VaultBusyError):
            Vault.open(path, read_only=False, passphrase=PW, encoder=enc)
