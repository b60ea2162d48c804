"""The index/model/meta tamper matrix (issue 17, items 1 and 2): what each command does.

For every edit of ``tests/tamper_edits.py`` (made with DuckDB on a copy of a clean vault coded by
the shipped default model, six example clips), run ``verify``, ``search``, ``export`` and
``ingest`` through the CLI (typer's CliRunner, in this process) and record:

* verify: exit code and the first problem ``Vault.verify`` names;
* search (keyless, a copy of recording 2 as the query): the same hits as on the clean vault,
  other hits ("CHANGED"), or a one-line refusal;
* export 1 (and 2 for the swap): byte-identical to the ingested file, "WRONG BYTES", or refused;
* ingest of a new file: stored or refused.

A *silent change* is a search or export that differs from the clean vault while ``verify``
says ok; a *traceback* any exception escaping the CLI, or stderr that is not one ``error:``
line. The goal: 0 and 0. Run::

    nice -n 10 .venv/bin/python -m tests.tamper_matrix > docs/results/tamper_matrix.md
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from tests import tamper_edits as te

PW = "tamper matrix passphrase"
REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "speechvault" / "examples"
CLIPS = ["0_en_1.wav", "1_en-us_1.wav", "2_en-f3_1.wav", "3_en-m3_1.wav", "4_en_1.wav",
         "5_en-us_1.wav"]
SPARE = "6_en-f3_1.wav"


def _one_line_error(stderr: str) -> bool:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("error: ")


def _cli(args: list) -> tuple[str, int, str, str]:
    """(kind, exit code, stdout, stderr); kind "ok" (exit 0 or one error line) or "traceback"."""
    from typer.testing import CliRunner

    import cli

    r = CliRunner().invoke(cli.app, [str(a) for a in args],
                           env={"SPEECHVAULT_PASSPHRASE": PW, "COLUMNS": "200"})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return "traceback", r.exit_code, r.stdout, f"{type(r.exception).__name__}: {r.exception}"
    if r.exit_code != 0 and not _one_line_error(r.stderr):
        return "traceback", r.exit_code, r.stdout, r.stderr.strip()[:300]
    return "ok", r.exit_code, r.stdout, r.stderr.strip()


def _short(msg: str, n: int = 90) -> str:
    msg = " ".join(msg.replace("error: ", "").split()).replace("|", "/")
    return msg if len(msg) <= n else msg[: n - 3] + "..."


def build(d: Path, cipher: str) -> tuple[Path, list[Path], Path]:
    from store.vault import Vault

    d.mkdir(parents=True, exist_ok=True)
    files = [EXAMPLES / c for c in CLIPS]
    path = d / "clean.duckdb"
    with Vault.create(path, PW, cipher=cipher, kdf_log2_n=10) as v:
        v.ingest(files)
    return path, files, EXAMPLES / SPARE


def _hits(stdout: str) -> list[tuple[int, bool]]:
    res = json.loads(stdout)
    return [(h["recording_id"], h["is_match"]) for h in res["hits"]]


def _count(out: dict, command: str, kind: str, err: str) -> None:
    if kind == "traceback":
        out["tracebacks"] += 1
        out["tb"].append(f"{out['edit']} / {command}: {_short(err, 300)}")


def run_case(name: str, clean: Path, files: list[Path], spare: Path, work: Path,
             baseline: list) -> dict:
    from store.vault import Vault

    out = {"edit": name, "what": te.EDITS[name][1], "tracebacks": 0, "tb": []}
    case = work / name
    case.mkdir()
    base = case / "edited.duckdb"
    shutil.copy(clean, base)
    ctx = {"other_tflite": (REPO / "hashing/models/fsdd-cnn-k384.tflite").read_bytes()}
    if name in te.DELETE_WITH_KEY_FIRST:
        ctx["old_copy"] = case / "old-copy.duckdb"
        shutil.copy(base, ctx["old_copy"])
        with Vault.open(base, read_only=False, passphrase=PW) as v:
            v.delete(te.DELETE_WITH_KEY_FIRST[name])
    con = duckdb.connect(str(base))
    te.EDITS[name][0](con, ctx)
    con.execute("CHECKPOINT")
    con.close()
    edited = base.read_bytes()

    def fresh() -> Path:
        base.write_bytes(edited)
        return base

    kind, code, _, err = _cli(["verify", fresh()])
    _count(out, "verify", kind, err)
    named = ""
    try:
        with Vault.open(fresh(), passphrase=PW) as v:
            rep = v.verify()
        named = rep.failures[0][2] if rep.failures else ("; ".join(rep.notes) or "")
        verify_ok = rep.ok
    except Exception as exc:  # a refusal to open is a (loud) verify result too
        named, verify_ok = f"{type(exc).__name__}: {exc}", code == 0
    out["verify"] = ("ok" if code == 0 else "FLAGS") + (f": {_short(named)}" if named else "")
    out["verify_ok"] = code == 0

    kind, code, stdout, err = _cli(["search", fresh(), files[1], "--json"])
    _count(out, "search", kind, err)
    if code != 0:
        out["search"], out["search_changed"] = f"refused: {_short(err, 70)}", False
    else:
        changed = _hits(stdout) != baseline
        out["search"], out["search_changed"] = ("CHANGED" if changed else "same"), changed
    wrong, results = False, []
    for rid in ((1, 2) if name == "swap-blob" else (1,)):
        dest = case / f"export-{rid}.wav"
        kind, code, _, err = _cli(["export", fresh(), rid, "-o", dest])
        _count(out, "export", kind, err)
        if code != 0:
            results.append(f"{rid}: refused ({_short(err, 60)})")
        elif dest.read_bytes() == files[rid - 1].read_bytes():
            results.append(f"{rid}: identical")
        else:
            wrong = True
            results.append(f"{rid}: WRONG BYTES")
    out["export"], out["export_wrong"] = "; ".join(results), wrong
    kind, code, _, err = _cli(["ingest", fresh(), spare])
    _count(out, "ingest", kind, err)
    out["ingest"] = "stored" if code == 0 else f"refused: {_short(err, 70)}"
    out["silent"] = (out["search_changed"] or wrong) and out["verify_ok"]
    shutil.rmtree(case, ignore_errors=True)
    return out


def run(work: Path, cipher: str) -> list[dict]:
    clean, files, spare = build(work / f"src-{cipher}", cipher)
    kind, code, stdout, err = _cli(["search", clean, files[1], "--json"])
    assert code == 0, err
    baseline = _hits(stdout)
    rows = []
    for name in te.EDITS:
        if name == "cipher-downgrade" and cipher != "chacha20poly1305":
            continue
        rows.append(run_case(name, clean, files, spare, work / cipher, baseline))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| edit | verify | search (keyless) | export | ingest |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['edit']}`: {r['what']} | {r['verify']} | {r['search']} | "
                     f"{r['export']} | {r['ingest']} |")
    return "\n".join(lines)


def main() -> None:
    t0 = time.perf_counter()
    out = []
    totals = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cipher in ("chacha20poly1305", "rossler"):
            (Path(tmp) / cipher).mkdir()
            rows = run(Path(tmp), cipher)
            totals[cipher] = {"edits": len(rows),
                              "flagged_by_verify": sum(not r["verify_ok"] for r in rows),
                              "search_changed": sum(r["search_changed"] for r in rows),
                              "export_wrong": sum(r["export_wrong"] for r in rows),
                              "silent_changes": sum(r["silent"] for r in rows),
                              "tracebacks": sum(r["tracebacks"] for r in rows)}
            out.append(f"### {cipher} vault\n\n{table(rows)}\n")
            out += [f"- traceback: {t}" for r in rows for t in r["tb"]]
    print("<!-- made by: nice -n 10 .venv/bin/python -m tests.tamper_matrix -->")
    print("\n".join(out))
    print("Totals: " + json.dumps(totals))
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
