"""A damaged or hostile vault file: one-line errors, never a traceback (issue 17, item 3).

* hostile metadata written with DuckDB (a NUL in a name, a non-hex SHA-256, ``k = 0``, empty
  class names, a key wrap of ``Infinity`` / ``1`` / ``null``, ``format_version = 1`` over version-2
  tables, ...): ``info``, ``list``, ``search``, ``export``, ``verify`` and ``ingest`` each exit 0 or
  print exactly one ``error:`` line (tests/damage_harness.py classifies);
* random single-byte flips anywhere in the file and truncations (to 90 % and at random): the same,
  36 flips + 2 truncations here, >= 1,000 + 100 with ``-m slow`` (docs/reliability.md has the run);
* ``verify`` survives a damaged block: it names the recording it could not read and goes on;
* scrypt costs 2^20..2^22 work (they failed on hashlib's maxmem) -- ``-m slow``, 1-4 GiB each.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from store.vault import Vault
from tests import damage_harness as dh


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    return dh.build_clean_vault(d)


@pytest.fixture(scope="module", autouse=True)
def _fake_encoder():
    """Module-scoped and autouse, so it runs before ``clean`` (which patches too) and restores
    the real loader for the modules after this one."""
    import store.vault as sv

    saved = sv._load_encoder_class
    dh._patch_fake_encoder()
    yield
    sv._load_encoder_class = saved


def _edited(clean, tmp_path: Path, *statements: tuple[str, list]) -> Path:
    src, _ = clean
    path = tmp_path / "v.duckdb"
    shutil.copy(src, path)
    con = duckdb.connect(str(path))
    try:
        for sql, params in statements:
            con.execute(sql, params)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return path


def _run_all(path: Path, clean, tmp_path: Path, case: str) -> dict[str, dh.Outcome]:
    _, files = clean
    base = path.read_bytes()
    out = {}
    for cmd in dh.COMMANDS:
        path.write_bytes(base)
        wal = Path(str(path) + ".wal")
        if wal.exists():
            wal.unlink()
        out[cmd] = dh.run_command(cmd, path, files, tmp_path, case)
    return out


META = "UPDATE vault_meta SET "
HOSTILE = {
    "nul-in-name": [("UPDATE recordings SET name = ? WHERE id = 1", ["evil\x00name.wav"])],
    "nul-in-category": [("UPDATE recordings SET category = ? WHERE id = 1", ["a\x00b"])],
    "non-hex-sha256": [("UPDATE recordings SET sha256 = ? WHERE id = 1", ["z" * 64])],
    "short-sha256": [("UPDATE recordings SET sha256 = ? WHERE id = 1", ["abc"])],
    "k-zero": [(META + "k = 0", [])],
    "k-negative": [(META + "k = -64", [])],
    "k-huge": [(META + "k = 2000000000", [])],
    "k-mismatch": [(META + "k = 512", [])],
    "c-zero": [(META + "c = 0", [])],
    "class-names-empty": [(META + "class_names = []", [])],
    "class-names-blank": [(META + "class_names = ['', '', '']", [])],
    "class-name-nul": [(META + "class_names = ?", [["a\x00", "b", "c"]])],
    "key-wrap-infinity": [(META + "key_wrap = 'Infinity'", [])],
    "key-wrap-one": [(META + "key_wrap = '1'", [])],
    "key-wrap-null": [(META + "key_wrap = 'null'", [])],
    "key-wrap-not-json": [(META + "key_wrap = '{'", [])],
    "key-wrap-list": [(META + "key_wrap = '[1, 2]'", [])],
    "key-wrap-bad-fields": [(META + "key_wrap = ?", [json.dumps({"kdf": "scrypt", "salt": "zz",
                                                                 "log2_n": 1e308})])],
    "format-version-1-over-v2": [(META + "format_version = 1", [])],
    "format-version-0": [(META + "format_version = 0", [])],
    "format-version-99": [(META + "format_version = 99", [])],
    "model-sha-not-hex": [(META + "model_sha256 = 'xyz'", [])],
    "cipher-unknown": [(META + "cipher = 'rot13'", [])],
    "tau-nan": [(META + "tau = 'NaN'::DOUBLE", [])],
    "tau-infinite": [(META + "tau = 'Infinity'::DOUBLE", [])],
    "n-windows-negative": [("UPDATE recordings SET n_windows = -1 WHERE id = 1", [])],
    "duration-nan": [("UPDATE recordings SET duration = 'NaN'::DOUBLE WHERE id = 1", [])],
    "empty-blob": [("UPDATE recordings SET blob = ''::BLOB WHERE id = 1", [])],
    "codes-category-out-of-range": [("UPDATE codes SET category = 32000", [])],
    "model-row-missing": [("DELETE FROM model", [])],
    "model-meta-not-json": [("UPDATE model SET meta_json = 'nope'", [])],
    "codes-table-dropped": [("DROP TABLE codes", [])],
    "recordings-table-dropped": [("DROP TABLE codes", []), ("DROP TABLE recordings", [])],
    "meta-row-deleted": [("DELETE FROM vault_meta", [])],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_metadata_is_one_line(clean, tmp_path, case):
    path = _edited(clean, tmp_path, *HOSTILE[case])
    outcomes = _run_all(path, clean, tmp_path, case)
    bad = {c: (o.kind, o.detail) for c, o in outcomes.items() if o.kind != "ok"}
    assert not bad, bad


def test_nul_name_exports_under_a_safe_name(clean, tmp_path):
    path = _edited(clean, tmp_path, *HOSTILE["nul-in-name"])
    out = tmp_path / "out"
    out.mkdir()
    from typer.testing import CliRunner

    import cli

    r = CliRunner().invoke(cli.app, ["export", str(path), "1", "-o", str(out)],
                           env={"SPEECHVAULT_PASSPHRASE": dh.PW})
    assert r.exit_code == 0, r.output
    assert [p.name for p in out.iterdir()] == ["recording-1"]


def test_non_hex_sha_is_named_by_verify(clean, tmp_path):
    path = _edited(clean, tmp_path, *HOSTILE["non-hex-sha256"])
    with Vault.open(path, passphrase=dh.PW) as v:
        rep = v.verify()
    # the blob check names the malformed hash; the listing MAC (store.integrity) flags it too
    assert {f[0] for f in rep.failures} == {1} and "SHA-256 is malformed" in rep.failures[0][2]
    assert rep.checked == 8


def _damaged_block_vault(clean, tmp_path: Path) -> Path:
    """A copy with one byte flipped inside the block holding recording 1's blob (found by
    flipping bytes until opening the blob reports a DuckDB checksum error)."""
    src, _ = clean
    data = src.read_bytes()
    with Vault.open(src, passphrase=dh.PW) as v:
        blob = bytes(v._db().execute("SELECT blob FROM recordings WHERE id = 1").fetchone()[0])
    at = data.find(blob[64:128])
    assert at > 0, "blob bytes not found verbatim in the file"
    bad = bytearray(data)
    bad[at + 10] ^= 0x5A
    path = tmp_path / "blk.duckdb"
    path.write_bytes(bytes(bad))
    return path


def test_verify_survives_a_damaged_block_and_says_what_it_could_not_read(clean, tmp_path):
    path = _damaged_block_vault(clean, tmp_path)
    with Vault.open(path, passphrase=dh.PW) as v:
        rep = v.verify()
    assert not rep.ok
    assert rep.checked >= 1
    messages = " | ".join(f[2] for f in rep.failures)
    assert "damaged" in messages or "could not" in messages, rep.failures
    # the CLI: a table of what failed, then one error line
    outcome = dh.run_command("verify", path, clean[1], tmp_path, "blk")
    assert outcome.kind == "ok" and outcome.exit_code == 1, outcome


def test_random_flips_and_truncations_ci(tmp_path):
    tally = dh.run_cases(tmp_path, n_cases=36, seed=1701, truncations=2)
    assert tally.cases == 38 and tally.runs == 38 * 6
    assert not tally.bad, [(o.case, o.command, o.kind, o.detail) for o in tally.bad[:10]]


@pytest.mark.slow
def test_random_flips_and_truncations_long(tmp_path):
    import os

    n = int(os.environ.get("SPEECHVAULT_FLIPS", "1000"))
    t = int(os.environ.get("SPEECHVAULT_TRUNCATIONS", "100"))
    tally = dh.run_cases(tmp_path, n_cases=n, seed=int(os.environ.get("SPEECHVAULT_SEED", "2026")),
                         truncations=t)
    print(f"\n{tally.cases} damaged copies, {tally.runs} command runs, {tally.by_kind}, "
          f"{tally.seconds:.0f} s")
    assert not tally.bad, [(o.case, o.command, o.kind, o.detail) for o in tally.bad[:20]]


@pytest.mark.slow
@pytest.mark.parametrize("log2n", [20, 21, 22])
def test_high_scrypt_costs_work(tmp_path, log2n):
    """hashlib.scrypt refused these (maxmem < 2 GiB); ``store.keys`` now derives them."""
    from typer.testing import CliRunner

    import cli

    path = tmp_path / f"k{log2n}.duckdb"
    r = CliRunner().invoke(cli.app, ["init", str(path), "--kdf-log2n", str(log2n)],
                           env={"SPEECHVAULT_PASSPHRASE": dh.PW})
    assert r.exit_code == 0, (r.output, r.exception)
    with Vault.open(path, passphrase=dh.PW) as v:
        assert v.info().kdf["log2_n"] == log2n and v.unlocked
