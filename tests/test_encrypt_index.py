"""``speechvault init --encrypt-index``: the whole vault file under DuckDB's database encryption.

Runs the CLI in-process (typer's CliRunner) with ``tests.fakes.FakeEncoder`` patched in and the
DuckDB key's scrypt cost lowered to 2^10 (``store.encrypted_index.INDEX_LOG2_N``; tests only).
Skipped when DuckDB's httpfs extension for the installed DuckDB is not there (it comes with
``pip install 'speechvault[encrypt-index]'``), except the test of that very error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import cli
import store.vault as sv
from speechvault.errors import PassphraseRequiredError, WrongPassphraseError
from store import encrypted_index as ei
from store.vault import Vault
from tests.fakes import FakeEncoder, tone_mix, write_wav

PASS = "correct horse battery staple"
NEW_PASS = "a brand new passphrase"
NAME = "plughxyzzy"          # appears in every stored name
CATEGORY = "quuxcategory"    # the category label given at ingest
TABLES = (b"vault_meta", b"recordings_id_seq", b"schema_migrations", b"codes_unclustered")

needs_ext = pytest.mark.skipif(
    ei.httpfs_extension_path() is None,
    reason="DuckDB's httpfs extension for this DuckDB is not installed "
           "(pip install 'speechvault[encrypt-index]'); encrypted vaults cannot be written")

_FAKE = FakeEncoder()


class _FakeEncoderClass:
    """Stands in for ``hashing.encoder.Encoder`` inside ``store.vault`` (no TFLite needed)."""

    @classmethod
    def from_bytes(cls, tflite_bytes, meta, num_threads=None, fingerprint=None):
        return _FAKE

    @classmethod
    def default(cls, num_threads=None):
        return _FAKE


@pytest.fixture(autouse=True)
def _fast_and_fake(monkeypatch):
    """Fake encoder, cheap DuckDB-key scrypt, no passphrase in the environment."""
    monkeypatch.setattr(sv, "_load_encoder_class", lambda: _FakeEncoderClass)
    monkeypatch.setattr(ei, "INDEX_LOG2_N", 10)
    for var in ("SPEECHVAULT_PASSPHRASE", "SPEECHVAULT_NEW_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)


def run(*args, passphrase: str | None = None, new: str | None = None):
    """Invoke the CLI in-process; returns typer's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    env = {}
    if passphrase is not None:
        env["SPEECHVAULT_PASSPHRASE"] = passphrase
    if new is not None:
        env["SPEECHVAULT_NEW_PASSPHRASE"] = new
    return CliRunner().invoke(cli.app, [str(a) for a in args], env=env)


def assert_one_line_error(r, contains: str) -> None:
    msg = f"exit={r.exit_code}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.exit_code == 1, msg
    assert "Traceback" not in r.stdout + r.stderr, msg
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), msg
    assert contains.lower() in lines[0].lower(), msg


def _clips(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"{NAME}_{i}.wav"
        write_wav(p, tone_mix(i, seconds=0.6))
        out.append(p)
    return out


def _make(tmp_path: Path, name: str, *extra: str) -> tuple[Path, list[Path]]:
    """A vault made through the CLI (init + ingest of three clips)."""
    path = tmp_path / name
    clips = _clips(tmp_path / "clips")
    r = run("init", path, "--kdf-log2n", "10", "--json", *extra, passphrase=PASS)
    assert r.exit_code == 0, r.stderr
    r = run("ingest", path, *clips, "--category", CATEGORY, "--json", passphrase=PASS)
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)["added"]) == 3
    return path, clips


@pytest.fixture
def enc(tmp_path) -> tuple[Path, list[Path]]:
    return _make(tmp_path, "enc.duckdb", "--encrypt-index")


# --------------------------------------------------------------------------- the file
@needs_ext
def test_created_private_and_flagged(enc, tmp_path):
    path, _ = enc
    assert (path.stat().st_mode & 0o777) == 0o600
    assert Vault.index_is_encrypted(path)
    plain, _ = _make(tmp_path, "plain.duckdb")
    assert not Vault.index_is_encrypted(plain)
    r = run("info", path, "--json", passphrase=PASS)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["index_encrypted"] is True


@needs_ext
def test_no_plaintext_names_categories_or_tables(enc, tmp_path):
    path, _ = enc
    plain, _ = _make(tmp_path, "plain.duckdb")
    plain_bytes, enc_bytes = plain.read_bytes(), path.read_bytes()
    for needle in (NAME.encode(), CATEGORY.encode(), *TABLES):
        assert needle in plain_bytes, f"control: {needle!r} should be readable in a plain vault"
        assert needle not in enc_bytes, f"{needle!r} readable in the encrypted vault"


# --------------------------------------------------------------------------- reading
@needs_ext
def test_search_finds_the_original(enc):
    path, clips = enc
    r = run("search", path, clips[1], "--json", passphrase=PASS)
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["matched"] and d["hits"][0]["name"] == clips[1].name
    r = run("list", path, "--json", passphrase=PASS)
    assert r.exit_code == 0, r.stderr
    assert {row["category"] for row in json.loads(r.stdout)} == {CATEGORY}


@needs_ext
@pytest.mark.parametrize("command", ["search", "list", "info", "export", "verify", "ingest",
                                     "passwd", "tui"])
def test_without_passphrase_is_one_line(enc, command):
    path, clips = enc
    args = {"search": [clips[0]], "export": ["1", "-o", "-"], "ingest": [clips[0]]}
    r = run(command, path, *args.get(command, []))
    if command == "tui":  # without a terminal the TUI refuses first (issue 15), in one line too
        assert_one_line_error(r, "needs a terminal")
        return
    assert_one_line_error(r, "passphrase")
    if command in ("search", "list", "info"):
        assert_one_line_error(r, ei.NEEDS_PASSPHRASE)


@needs_ext
@pytest.mark.parametrize("command", ["search", "list", "info", "export"])
def test_wrong_passphrase_is_one_line(enc, command):
    path, clips = enc
    args = {"search": [clips[0]], "export": ["1", "-o", "-"]}
    r = run(command, path, *args.get(command, []), passphrase="not it")
    assert_one_line_error(r, "wrong passphrase")


@needs_ext
def test_library_errors(enc):
    path, _ = enc
    with pytest.raises(PassphraseRequiredError, match="index is encrypted"):
        Vault.open(path)
    with pytest.raises(WrongPassphraseError):
        Vault.open(path, index_passphrase="not it")
    with Vault.open(path, index_passphrase=PASS) as v:   # opened, not unlocked
        assert v.index_encrypted and not v.unlocked and len(v.list()) == 3


# --------------------------------------------------------------------------- export / passwd
@needs_ext
def test_export_byte_identical(enc, tmp_path):
    path, clips = enc
    out = tmp_path / "out.wav"
    r = run("export", path, "2", "-o", out, passphrase=PASS)
    assert r.exit_code == 0, r.stderr
    assert out.read_bytes() == clips[1].read_bytes()
    r = run("verify", path, "--json", passphrase=PASS)
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"], r.stderr


@needs_ext
def test_passwd_reencrypts(enc, tmp_path):
    path, clips = enc
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    r = run("passwd", path, passphrase=PASS, new=NEW_PASS)
    assert r.exit_code == 0, r.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() != before
    assert (path.stat().st_mode & 0o777) == 0o600
    assert not any(p.name.endswith(".rekey") for p in path.parent.iterdir())
    assert_one_line_error(run("list", path, passphrase=PASS), "wrong passphrase")
    out = tmp_path / "after.wav"
    r = run("export", path, "3", "-o", out, passphrase=NEW_PASS)
    assert r.exit_code == 0, r.stderr
    assert out.read_bytes() == clips[2].read_bytes()
    # still writable: the id sequence survived the copy
    extra = tmp_path / "extra.wav"
    write_wav(extra, tone_mix(42, seconds=0.6))
    r = run("ingest", path, extra, "--json", passphrase=NEW_PASS)
    assert r.exit_code == 0, r.stderr
    assert [a["id"] for a in json.loads(r.stdout)["added"]] == [4]
    r = run("search", path, clips[0], "--json", passphrase=NEW_PASS)
    assert json.loads(r.stdout)["hits"][0]["name"] == clips[0].name


# --------------------------------------------------------------------------- the TUI
@needs_ext
def test_tui_opens_an_encrypted_vault(enc):
    pytest.importorskip("textual")
    import asyncio

    from tests.test_tui import settle
    from tui.app import SpeechVaultApp

    path, _ = enc

    class _Vault(Vault):
        @classmethod
        def open(cls, p, **kw):
            kw.setdefault("encoder", _FAKE)
            return super().open(p, **kw)

    async def go() -> None:
        app = SpeechVaultApp(path, vault_cls=_Vault, passphrase=PASS, freeze=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            assert app.vault is not None and app.vault.index_encrypted
            assert app.screen.query_one("#recordings").row_count == 3

    asyncio.run(go())


# --------------------------------------------------------------------------- no extension
def test_missing_extension_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(ei, "httpfs_extension_path", lambda: None)
    path = tmp_path / "v.duckdb"
    r = run("init", path, "--kdf-log2n", "10", "--encrypt-index", passphrase=PASS)
    assert_one_line_error(r, "pip install 'speechvault[encrypt-index]'")
    assert not path.exists() and not Path(str(path) + ".wal").exists()
    assert not os.listdir(tmp_path)
