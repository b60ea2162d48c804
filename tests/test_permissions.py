"""Every file the vault or an export creates is 0600 from its first byte, under umask 022
(issue 17, item 5): the vault, its ``.wal`` (created by DuckDB at each first commit after a
checkpoint), exports and their temporary files; a symbolic link planted where a temporary or
final file goes is never followed; ``init`` refuses a dangling link and leaves no stub behind
when it fails.

The WAL checks disable ``store.vault._chmod_private`` (the after-the-fact chmod), so they see the
mode DuckDB created the file with -- the window an unprivileged reader had.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import store.vault as sv
from speechvault.errors import InvalidInputError
from store import private_files
from store.vault import Vault
from tests.fakes import FakeEncoder, encoder_loader, tone_mix, write_wav

REPO = Path(__file__).resolve().parents[1]
PW = "permissions passphrase"


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def no_chmod(monkeypatch):
    monkeypatch.setattr(sv, "_chmod_private", lambda path: None)


@pytest.fixture(scope="module")
def enc():
    return FakeEncoder(K=128, C=3, seed=17)


def _wavs(d: Path, n: int, seed: int = 0) -> list[Path]:
    out = []
    for i in range(n):
        p = d / f"w{seed}_{i}.wav"
        write_wav(p, tone_mix(seed * 100 + i, 0.3))
        out.append(p)
    return out


def _modes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in d.iterdir()
            if p.is_file() and not p.is_symlink()}


def test_private_umask_is_reentrant_and_restores(umask022):
    with private_files.private_umask():
        with private_files.private_umask():
            assert os.umask(0o077) == 0o077
        assert os.umask(0o077) == 0o077
    assert os.umask(0o022) == 0o022


def test_wal_is_private_from_its_creation(tmp_path, enc, umask022, no_chmod):
    """Seen after every commit of an ingest (the WAL exists then), with the chmod disabled."""
    store = tmp_path / "vault"
    store.mkdir()
    path = store / "v.duckdb"
    seen: list[dict[str, int]] = []

    def on_event(e):
        if e.kind in ("added", "committed"):
            seen.append(_modes(store))

    with Vault.create(path, PW, encoder=enc, kdf_log2_n=10) as v:
        v.ingest(_wavs(tmp_path, 6), batch_size=2, progress=on_event)
        assert any("v.duckdb.wal" in m for m in seen), seen  # the WAL was there to check
        v.delete(1)
        seen.append(_modes(store))
        v.change_passphrase(PW, PW + " 2")
        seen.append(_modes(store))
    seen.append(_modes(store))
    bad = [m for m in seen if any(mode != 0o600 for mode in m.values())]
    assert not bad, bad


def test_reopened_vault_writes_are_private(tmp_path, enc, umask022, no_chmod):
    path = tmp_path / "v.duckdb"
    Vault.create(path, PW, encoder=enc, kdf_log2_n=10).close()
    seen = []
    with Vault.open(path, read_only=False, passphrase=PW, encoder=enc) as v:
        v.ingest(_wavs(tmp_path, 3), batch_size=1, progress=lambda e: seen.append(_modes(tmp_path)))
    vault_files = [{k: m for k, m in s.items() if k.startswith("v.duckdb")} for s in seen]
    assert all(m == 0o600 for s in vault_files for m in s.values()), vault_files


def test_replaced_chmod_reaches_the_vaults_rooms(tmp_path, enc, monkeypatch):
    """``no_chmod`` replaces ``store.vault._chmod_private``; the writes that live in the rooms
    (``store.vault_ingest``, ``store.vault_keys``) and the handle's own (delete) must all call
    the replaced one, or the WAL checks above would see a chmod'ed file and prove nothing."""
    calls: list[str] = []
    with Vault.create(tmp_path / "v.duckdb", PW, encoder=enc, kdf_log2_n=10) as v:
        monkeypatch.setattr(sv, "_chmod_private", lambda path: calls.append("chmod"))
        for what, write in [("ingest", lambda: v.ingest(_wavs(tmp_path, 2), batch_size=1)),
                            ("delete", lambda: v.delete(1)),
                            ("passwd", lambda: v.change_passphrase(PW, PW + " 2"))]:
            before = len(calls)
            write()
            assert len(calls) > before, what


def test_exports_are_private_and_do_not_follow_planted_links(tmp_path, enc, umask022):
    path = tmp_path / "v.duckdb"
    with Vault.create(path, PW, encoder=enc, kdf_log2_n=10) as v:
        rid = v.ingest(_wavs(tmp_path, 1)).added[0].id
        original = v.export(rid)
        out = tmp_path / "out"
        out.mkdir()
        victim = tmp_path / "victim.txt"
        victim.write_bytes(b"precious")
        # a link at the old predictable temporary name and at the destination's name
        (out / "a.wav.partial").symlink_to(victim)
        dest = v.export_to(rid, out / "a.wav")
        assert dest.read_bytes() == original
        assert dest.stat().st_mode & 0o777 == 0o600
        assert victim.read_bytes() == b"precious"
        assert not [p for p in out.iterdir() if p.name.endswith(".partial") and not p.is_symlink()]
        (out / "b.wav").symlink_to(victim)
        with pytest.raises(InvalidInputError, match="already exists"):
            v.export_to(rid, out / "b.wav")
        dangling = out / "c.wav"
        dangling.symlink_to(tmp_path / "nowhere.wav")
        with pytest.raises(InvalidInputError, match="already exists"):
            v.export_to(rid, dangling)
        assert not (tmp_path / "nowhere.wav").exists()
        assert victim.read_bytes() == b"precious"


def test_write_private_overwrite_replaces_a_link_not_its_target(tmp_path, umask022):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "link"
    link.symlink_to(victim)
    private_files.write_private(link, b"new", overwrite=True)
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert link.stat().st_mode & 0o777 == 0o600
    assert victim.read_bytes() == b"keep"


def test_create_refuses_a_dangling_symlink(tmp_path, enc):
    target = tmp_path / "elsewhere.duckdb"
    link = tmp_path / "v.duckdb"
    link.symlink_to(target)
    with pytest.raises(InvalidInputError, match="symbolic link"):
        Vault.create(link, PW, encoder=enc, kdf_log2_n=10)
    assert not target.exists() and link.is_symlink()


def test_create_leaves_no_stub_when_the_disk_is_full(tmp_path):
    """A child creates a vault with RLIMIT_FSIZE = 64 KiB (EFBIG, like ENOSPC): a one-line
    error, nothing at the path (no stub blocking a retry), no temporary folder left over."""
    code = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from speechvault.errors import SpeechVaultError
        from store.vault import Vault
        from tests.fakes import FakeEncoder
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        try:
            Vault.create(sys.argv[1], "x" * 12, encoder=FakeEncoder(K=128, C=3), kdf_log2_n=10)
        except SpeechVaultError as exc:
            print("error", exc)
            sys.exit(3)
        print("created")
    """)
    path = tmp_path / "full.duckdb"
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                       cwd=str(REPO), timeout=120)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stdout.startswith("error ") and r.stdout.count("\n") == 1, r.stdout
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())
    # and a retry with space works
    Vault.create(path, "x" * 12, encoder=FakeEncoder(K=128, C=3), kdf_log2_n=10).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_cli_export_and_init_permissions(tmp_path, enc, umask022, monkeypatch):
    from typer.testing import CliRunner

    import cli

    monkeypatch.setattr(sv, "_load_encoder_class", encoder_loader(enc))
    env = {"SPEECHVAULT_PASSPHRASE": PW}
    run = lambda *a: CliRunner().invoke(cli.app, [str(x) for x in a], env=env)  # noqa: E731
    path = tmp_path / "v.duckdb"
    r = run("init", path, "--kdf-log2n", "12")
    assert r.exit_code == 0, r.output
    assert run("ingest", path, *_wavs(tmp_path, 1)).exit_code == 0
    out = tmp_path / "x.wav"
    assert run("export", path, "1", "-o", out).exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "x.wav.partial").symlink_to(victim)
    assert run("export", path, "1", "-o", out, "--force").exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600 and victim.read_bytes() == b"keep"
    link = tmp_path / "dangling.duckdb"
    link.symlink_to(tmp_path / "target.duckdb")
    r = run("init", link, "--kdf-log2n", "12")
    assert r.exit_code == 1 and "already exists" in r.output
    assert not (tmp_path / "target.duckdb").exists()
    assert isinstance(r.exception, SystemExit)
    assert all(m == 0o600 for n, m in _modes(tmp_path).items() if n.startswith(("v.duckdb", "x.wav")))
