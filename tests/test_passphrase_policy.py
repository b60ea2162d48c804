"""New passphrases below a floor are refused unless ``--weak-passphrase`` (then a warning), and a
cheap scrypt cost warns (issue 17, "Also"). Existing vaults still open with any passphrase."""

from __future__ import annotations

import pytest

import store.vault as sv
from speechvault.errors import InvalidInputError
from speechvault.passphrase import (
    MIN_PASSPHRASE_CHARS,
    kdf_cost_warnings,
    new_passphrase_warnings,
)
from store.vault import Vault
from tests.fakes import FakeEncoder, encoder_loader

WEAK = [" ", "a", "\n", "  \t ", "short", "1234567", " abcdefg "]
STRONG = ["12345678", "correct horse", "  eight ch  ", "ünïcödé!"]


@pytest.mark.parametrize("pw", WEAK)
def test_weak_refused_unless_allowed(pw):
    with pytest.raises(InvalidInputError, match="--weak-passphrase"):
        new_passphrase_warnings(pw)
    warnings = new_passphrase_warnings(pw, allow_weak=True)
    assert len(warnings) == 1 and "weak passphrase" in warnings[0]


@pytest.mark.parametrize("pw", STRONG)
def test_strong_accepted_silently(pw):
    assert len(pw.strip()) >= MIN_PASSPHRASE_CHARS
    assert new_passphrase_warnings(pw) == []


def test_kdf_cost_warning_threshold():
    assert kdf_cost_warnings(10) and "2^10" in kdf_cost_warnings(10)[0]
    assert kdf_cost_warnings(13)
    assert kdf_cost_warnings(14) == [] and kdf_cost_warnings(17) == []


@pytest.fixture
def cli_run(monkeypatch):
    from typer.testing import CliRunner

    import cli

    enc = FakeEncoder(K=128, C=3, seed=41)

    monkeypatch.setattr(sv, "_load_encoder_class", encoder_loader(enc))

    def run(*args, env=None):
        return CliRunner().invoke(cli.app, [str(a) for a in args], env=env or {})

    return run


def test_cli_init_and_passwd_floor(cli_run, tmp_path):
    path = tmp_path / "v.duckdb"
    r = cli_run("init", path, "--kdf-log2n", "14", env={"SPEECHVAULT_PASSPHRASE": "a"})
    assert r.exit_code == 1 and r.stderr.startswith("error: the passphrase is only 1 character")
    assert r.stderr.count("\n") == 1 and not path.exists()
    r = cli_run("init", path, "--kdf-log2n", "14", env={"SPEECHVAULT_PASSPHRASE": "\n"})
    assert r.exit_code == 1 and "empty apart from white space" in r.stderr
    r = cli_run("init", path, "--kdf-log2n", "14", "--weak-passphrase",
                env={"SPEECHVAULT_PASSPHRASE": "a"})
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("warning: weak passphrase") and "error" not in r.stderr
    # an existing weak vault opens as before
    with Vault.open(path, passphrase="a") as v:
        assert v.unlocked
    env = {"SPEECHVAULT_PASSPHRASE": "a", "SPEECHVAULT_NEW_PASSPHRASE": "b"}
    r = cli_run("passwd", path, env=env)
    assert r.exit_code == 1 and "--weak-passphrase" in r.stderr
    with Vault.open(path, passphrase="a") as v:  # unchanged
        assert v.unlocked
    env["SPEECHVAULT_NEW_PASSPHRASE"] = "a much better passphrase"
    assert cli_run("passwd", path, env=env).exit_code == 0
    with Vault.open(path, passphrase="a much better passphrase") as v:
        assert v.unlocked


def test_cli_init_warns_about_a_cheap_kdf(cli_run, tmp_path):
    env = {"SPEECHVAULT_PASSPHRASE": "long enough passphrase"}
    r = cli_run("init", tmp_path / "a.duckdb", "--kdf-log2n", "10", env=env)
    assert r.exit_code == 0 and "warning: --kdf-log2n 10 makes each passphrase guess cheap" in r.stderr
    r = cli_run("init", tmp_path / "b.duckdb", "--kdf-log2n", "14", env=env)
    assert r.exit_code == 0 and "warning" not in r.stderr
