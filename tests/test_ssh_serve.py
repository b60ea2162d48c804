"""The search-only SSH forced command (issue 15 item 4): the query arrives on stdin; nothing but
`search` / `search --json` (or the TUI with a terminal) runs. sshd's part is simulated by
``$SSH_ORIGINAL_COMMAND``, exactly what sshd sets for a ForceCommand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechvault.errors import InvalidInputError
from speechvault.ssh_serve import read_query, remote_request

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "speechvault" / "examples"


def test_remote_request_allows_exactly_search():
    assert remote_request(None) == ("tui", False)
    assert remote_request("  ") == ("tui", False)
    assert remote_request("search") == ("search", False)
    assert remote_request("search --json") == ("search", True)
    for bad in ("bash", "search /etc/passwd", "scp -t /tmp", "internal-sftp", "search --json x",
                "tui /other.duckdb", "search 'unclosed"):
        with pytest.raises(InvalidInputError, match="only searches"):
            remote_request(bad)


def test_read_query_limits_size_and_refuses_nothing(tmp_path):
    import io

    assert read_query(io.BytesIO(b"abc"), 10) == b"abc"
    with pytest.raises(InvalidInputError, match="larger than"):
        read_query(io.BytesIO(b"x" * (2 * 1024 * 1024)), 1024 * 1024)
    with pytest.raises(InvalidInputError, match="0 bytes"):
        read_query(io.BytesIO(b""), 10)


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    from store.vault import Vault

    d = tmp_path_factory.mktemp("sshserve")
    clips = sorted(EXAMPLES.glob("*.wav"))[:6]
    with Vault.create(d / "v.duckdb", "pw", kdf_log2_n=10) as v:
        v.ingest(clips)
    return d / "v.duckdb", clips


def _serve(vault_path, command, stdin_bytes, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHVAULT_")}
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "cli", "ssh-serve", str(vault_path), *extra],
                          input=stdin_bytes, capture_output=True, cwd=ROOT, env=env, timeout=600)


def test_search_with_the_query_on_stdin(vault):
    path, clips = vault
    r = _serve(path, "search --json", clips[2].read_bytes())
    assert r.returncode == 0, r.stderr.decode()
    res = json.loads(r.stdout)
    assert res["matched"] and res["hits"][0]["name"] == clips[2].name
    r = _serve(path, "search", clips[2].read_bytes())
    assert r.returncode == 0 and clips[2].name in r.stdout.decode()


@pytest.mark.parametrize("command", ["bash", "search /etc/passwd", "scp -f /srv/vault.duckdb"])
def test_anything_else_is_refused_in_one_line(vault, command):
    path, clips = vault
    r = _serve(path, command, clips[0].read_bytes())
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(err) == 1 and err[0].startswith("error: ")
    assert "only searches" in err[0] and r.stdout == b""


def test_no_command_without_a_terminal_and_oversized_queries_are_refused(vault):
    path, clips = vault
    r = _serve(path, None, b"")
    assert r.returncode == 1 and "needs a terminal" in r.stderr.decode()
    r = _serve(path, "search", b"\0" * (2 * 1024 * 1024), "--max-mb", "1")
    assert r.returncode == 1 and "larger than 1 MiB" in r.stderr.decode()
