"""Batch search (speechvault/batch.py, issue 13): several queries, one process, one model load;
JSON Lines; per-query errors; the single-query output unchanged."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speechvault import batch
from store.vault import Vault
from tests.test_cli import EXAMPLES, PASS, ROOT, TFLITE_NOISE, _env, digit_clips, sha256

pytestmark = pytest.mark.skipif(not (ROOT / "hashing" / "models" / "default.tflite").is_file(),
                                reason="no shipped default model")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """A vault of 6 digit clips (default model) and a folder of queries: 4 stored clips, one
    clip that is not stored, and a text file named .wav."""
    d = tmp_path_factory.mktemp("batch")
    clips = digit_clips()[::3][:6]
    v = Vault.create(d / "v.duckdb", PASS, kdf_log2_n=10)
    rep = v.ingest(clips)
    v.close()
    assert len(rep.added) == len(clips)
    qdir = d / "queries"
    qdir.mkdir()
    for c in clips[:4]:
        shutil.copy(c, qdir / c.name)
    other = next(p for p in digit_clips() if p not in clips)
    shutil.copy(other, qdir / ("z_" + other.name))
    (d / "bad.wav").write_text("not audio\n")
    return {"path": d / "v.duckdb", "clips": clips, "qdir": qdir, "bad": d / "bad.wav"}


def run(*args, stdin_path: Path | None = None) -> subprocess.CompletedProcess:
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        return subprocess.run([sys.executable, "-m", "cli", *map(str, args)], env=_env(),
                              cwd=ROOT, stdin=stdin, capture_output=True, text=True, timeout=600)
    finally:
        if stdin_path:
            stdin.close()


def _without_timings(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "timings"}


def errors(r) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(TFLITE_NOISE)]


def test_json_lines_one_per_query_same_results_as_single_searches(lib):
    q = sorted(lib["qdir"].glob("*.wav"))
    r = run("search", lib["path"], q[0], lib["qdir"], str(lib["qdir"] / "z_*.wav"), "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    # q[0] once (the folder repeats it), then the folder's other files; the glob adds nothing new
    assert [x["query"] for x in lines] == [str(p) for p in q]
    for obj, path in zip(lines, q):
        single = run("search", lib["path"], path, "--json")
        assert single.returncode == 0, single.stderr
        one = json.loads(single.stdout)  # the single-query output: one indented object
        assert "query" not in one and single.stdout.count("\n") > 1
        assert _without_timings({k: v for k, v in obj.items() if k != "query"}) == \
            _without_timings(one)
    stored = {c.name for c in lib["clips"]}
    for obj in lines:
        name = Path(obj["query"]).name
        assert obj["matched"] is (name in stored)
        if name in stored:
            assert obj["hits"][0]["name"] == name and obj["hits"][0]["ber"] == 0.0


def test_per_query_errors_are_one_line_each_and_the_rest_is_answered(lib):
    good = lib["clips"][0]
    r = run("search", lib["path"], lib["bad"], good, lib["path"].parent / "missing.wav",
            str(lib["path"].parent / "nothing*.wav"), "--json")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errs = errors(r)
    assert len(errs) == 3 and all(e.startswith("error: ") for e in errs), r.stderr
    assert any("missing.wav" in e for e in errs) and any("nothing*" in e for e in errs)
    assert any(str(lib["bad"]) in e for e in errs)
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [x["query"] for x in lines] == [str(lib["bad"]), str(good)]
    assert "error" in lines[0] and lines[1]["matched"] is True


def test_stdin_query_and_table_output(lib):
    clip = lib["clips"][1]
    r = run("search", lib["path"], "-", "--json", stdin_path=clip)  # one query: single output
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["hits"][0]["name"] == clip.name
    r = run("search", lib["path"], lib["clips"][2], "-", stdin_path=clip)
    assert r.returncode == 0, r.stderr
    assert "2 queries: 2 matched" in r.stdout
    assert clip.name in r.stdout and lib["clips"][2].name in r.stdout
    r = run("search", lib["path"], "-", "-", stdin_path=clip)
    assert r.returncode == 1 and any("only once" in e for e in errors(r))


def test_model_loads_once_for_a_batch(lib, monkeypatch):
    import hashing.encoder as encoder_mod

    made = []
    init = encoder_mod.Encoder.__init__

    def counting(self, *a, **k):
        made.append(1)
        init(self, *a, **k)

    monkeypatch.setattr(encoder_mod.Encoder, "__init__", counting)
    queries = [str(p) for p in sorted(lib["qdir"].glob("*.wav"))]
    out, err = io.StringIO(), io.StringIO()
    code = batch.run_batch_search(queries, lambda: Vault.open(lib["path"]), tau=None, mode="auto",
                                  probe=2, top=5, as_json=True, stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert len(out.getvalue().splitlines()) == len(queries)
    assert len(made) == 1


def test_decrypt_to_writes_each_match_once(lib, tmp_path):
    clip = lib["clips"][3]
    out_dir = tmp_path / "dec"
    out, err = io.StringIO(), io.StringIO()
    code = batch.run_batch_search([str(clip), str(clip), str(lib["qdir"] / clip.name)],
                                  lambda: Vault.open(lib["path"]), tau=None, mode="auto", probe=2,
                                  top=5, decrypt_to=out_dir, passphrase=PASS, as_json=True,
                                  stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert len(lines) == 2  # the same path twice is one query
    assert lines[0]["decrypted"] == lines[1]["decrypted"] and len(lines[0]["decrypted"]) == 1
    written = list(out_dir.iterdir())
    assert len(written) == 1 and sha256(written[0]) == sha256(clip)


def test_progress_bar_only_on_a_terminal(lib):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    queries = [str(c) for c in lib["clips"][:3]]
    for stream, shown in ((Tty(), True), (io.StringIO(), False)):
        code = batch.run_batch_search(queries, lambda: Vault.open(lib["path"]), tau=None,
                                      mode="auto", probe=2, top=5, as_json=True,
                                      stdout=io.StringIO(), stderr=stream)
        assert code == 0
        assert ("search" in stream.getvalue()) is shown, stream.getvalue()


def test_is_batch_keeps_one_file_single(tmp_path):
    f = tmp_path / "a.wav"
    f.write_bytes(b"x")
    assert not batch.is_batch([str(f)])
    assert not batch.is_batch(["-"])
    assert not batch.is_batch([str(tmp_path / "missing.wav")])  # reported as before
    assert batch.is_batch([str(tmp_path)])
    assert batch.is_batch([str(tmp_path / "*.wav")])
    assert batch.is_batch([str(f), str(f)])


def test_examples_folder_needs_no_vault_changes(lib):
    before = sha256(lib["path"])
    r = run("search", lib["path"], EXAMPLES, "--json")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == len(list(EXAMPLES.glob("*.wav")))
    assert sha256(lib["path"]) == before  # search opened it read-only
