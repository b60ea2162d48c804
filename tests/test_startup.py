"""Start-up cost (issue 13): the CLI imports only what a command needs. Checked by module, not by
time (no test depends on wall-clock speed): ``import cli`` and ``--help`` load no numeric,
database, audio or UI library, and no command goes through pydantic."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_cli import ROOT, _env

HEAVY = ("numpy", "duckdb", "textual", "ai_edge_litert", "tflite_runtime", "soundfile", "soxr",
         "threadpoolctl", "tensorflow", "pydantic")


def _loaded_after(code: str) -> list[str]:
    probe = (code + "\nimport sys, json\n"
             f"sys.stderr.write('LOADED=' + json.dumps(sorted({{m.split('.')[0] for m in "
             f"sys.modules}} & set({list(HEAVY)!r}))) + '\\n')\n")
    r = subprocess.run([sys.executable, "-c", probe], env=_env(), cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("LOADED=")]
    assert line, r.stderr
    return json.loads(line[-1][len("LOADED="):])


def test_import_cli_loads_no_heavy_module():
    assert _loaded_after("import cli") == []


def test_import_cli_loads_no_rich_progress_or_table():
    code = ("import cli, sys\n"
            "assert not {'rich.progress', 'rich.table'} & set(sys.modules), sorted(sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("argv", [["--help"], ["search", "--help"], ["ingest", "--help"],
                                  ["bench", "--help"]])
def test_help_loads_no_heavy_module(argv):
    code = (f"import sys\nsys.argv = ['speechvault', *{argv!r}]\nimport cli\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass")
    assert _loaded_after(code) == []


def test_a_command_error_loads_nothing_heavy(tmp_path):
    """Parsing a command's arguments (typer) does not pull in pydantic, and an early error (no
    vault) is reported before numpy or DuckDB are loaded."""
    code = (f"import sys\nsys.argv = ['speechvault', 'search', {str(tmp_path / 'no.duckdb')!r}, "
            f"{str(tmp_path / 'q.wav')!r}, '--top', '3']\nimport cli\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass")
    assert _loaded_after(code) == []


def test_help_to_a_pipe_is_plain_and_loads_no_rich():
    """``--help`` into a pipe or file is plain text (no rich import: start-up); the commands
    are all listed. On a terminal typer's rich help is kept."""
    code = ("import sys\nsys.argv = ['speechvault', '--help']\nimport cli\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('RICH=' + str(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'rich')) + '\\n')\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert "RICH=[]" in r.stderr, r.stderr
    assert r.stdout.startswith("Usage: speechvault")
    for command in ("init", "ingest", "search", "export", "bench", "tui"):
        assert f"\n  {command} " in r.stdout
    assert "╭" not in r.stdout  # no rich panel borders


def test_a_search_loads_no_cryptography(tmp_path):
    """A search reads codes, not sealed audio: opening a vault and searching it imports no
    ``cryptography`` (~15-20 ms of a one-shot search's start-up; it is imported where a key
    is wrapped, unwrapped or a blob sealed)."""
    from tests.fakes import FakeEncoder, tone_mix, write_wav
    from store.vault import Vault

    clip = tmp_path / "q.wav"
    write_wav(clip, tone_mix(440, 1.0))
    path = tmp_path / "v.duckdb"
    with Vault.create(path, "pw for the start-up test", encoder=FakeEncoder(K=64, C=3),
                      kdf_log2_n=10) as v:
        v.ingest([clip])
    code = ("from tests.fakes import FakeEncoder\nfrom store.vault import Vault\n"
            f"v = Vault.open({str(path)!r}, encoder=FakeEncoder(K=64, C=3))\n"
            f"assert v.search({str(clip)!r}).hits\nv.close()\nimport sys\n"
            "sys.stderr.write('CRYPTO=' + str(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'cryptography')) + '\\n')\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert "CRYPTO=[]" in r.stderr, r.stderr
