"""Concurrency benchmark: searcher processes keep answering while one process ingests.

    python -m model_export.bench_concurrency --out docs/results            # 8 searchers, 600 files
    python -m model_export.bench_concurrency --handles held --out /tmp/c   # the old way, for contrast

What it does (issue 17, item 4), all with real parts: a vault (the shipped default model) with
``--base`` FSDD clips; ``--searchers`` processes each open it once (``Vault.open(shared=True)``,
as the CLI, the TUI and ``ssh-serve`` do) and report "open"; only then one more process ingests
``--files`` other clips with the real command (``speechvault ingest --wait``). Each searcher
searches its queries (clips of the base set) in a loop, ``--pause`` s apart, until the ingest
has ended, timing every ``Vault.search`` call (audio file in, hits out: decode, features,
inference, SQL, and any wait for the writer). Then ``speechvault verify`` and ``info``.

Reported: searches started during the ingest, how many answered (no error), how many within
2 s, latency percentiles, the ingest's time and outcome, verify, and whether the counts are exact
(recordings = base + files, every file added once). ``--handles held`` opens the searchers
and the ingest with held handles (one connection for the handle's life: the behaviour before
issue 17) to show what the shared handles change.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "data" / "fsdd"
PASSPHRASE = "concurrency bench passphrase"
LIMIT_S = 2.0

_SEARCHER = """
import json, sys, time
from store.vault import Vault
from store.access import DEFAULT_READ_WAIT
vault, queries, pause, shared, out = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), \\
    sys.argv[4] == "shared", sys.argv[5]
v = Vault.open(vault, shared=shared, wait=DEFAULT_READ_WAIT)
v.search(queries[0])  # loads the model from the vault before the clock starts
spent = [0.0]  # seconds in the vault's connect: waiting for a writer, then DuckDB's open
real_connect = v._access.connect
def timed_connect():
    t = time.time()
    try:
        return real_connect()
    finally:
        spent[0] += time.time() - t
v._access.connect = timed_connect
print("open", flush=True)
with open(out, "w") as f:
    i = 0
    while True:
        q = queries[i % len(queries)]
        i += 1
        t0 = time.time()
        spent[0] = 0.0
        try:
            r = v.search(q)
            rec = {"t0": t0, "s": time.time() - t0, "ok": True, "matched": bool(r.matched),
                   "coding": sum(r.timings.get(k, 0.0) for k in ("decode", "features", "inference")),
                   "connect": spent[0]}
        except Exception as exc:  # a refusal is a result of the benchmark, not a crash
            rec = {"t0": t0, "s": time.time() - t0, "ok": False, "error": str(exc)[:300]}
        f.write(json.dumps(rec) + "\\n")
        f.flush()
        if __import__("os").path.exists(vault + ".bench-stop"):
            break
        time.sleep(pause)
v.close()
"""

_HELD_INGEST = """
import json, sys
from store.vault import Vault
vault, files = sys.argv[1], json.loads(sys.argv[2])
with Vault.open(vault, read_only=False, passphrase=sys.argv[3]) as v:
    r = v.ingest(files)
print(json.dumps({"added": [a.id for a in r.added], "errors": r.errors}))
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys, cli; sys.argv[0] = 'speechvault'; cli.main()", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
            "SPEECHVAULT_PASSPHRASE": PASSPHRASE}


def _clips(n_base: int, n_files: int) -> tuple[list[str], list[str]]:
    """Disjoint FSDD clips, spread over digits and speakers: ``n_base`` for the vault before the
    run (the searchers' queries), ``n_files`` for the ingest."""
    every = sorted(str(p) for p in FSDD.glob("*/*.wav"))
    if len(every) < n_base + n_files:
        raise SystemExit(f"error: {FSDD}: {len(every)} clips, {n_base + n_files} needed")
    picked = every[::max(1, len(every) // (n_base + n_files))][: n_base + n_files]
    base = picked[::max(1, len(picked) // n_base)][:n_base]
    taken = set(base)
    return base, [p for p in picked if p not in taken][:n_files]


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _latency(recs: list[dict], limit: float = LIMIT_S) -> dict:
    answered = [r for r in recs if r["ok"]]
    lat = [r["s"] for r in answered]
    vault = [r["s"] - r.get("coding", 0.0) for r in answered]  # connect, wait, SQL
    conn = [r.get("connect", 0.0) for r in answered]  # waiting for the writer + connecting
    return {"searches": len(recs), "answered": len(answered),
            "within": sum(x <= limit for x in lat),
            "p50": round(_pct(lat, 0.5), 3), "p95": round(_pct(lat, 0.95), 3),
            "p99": round(_pct(lat, 0.99), 3), "max": round(max(lat, default=0), 3),
            "vault_p50": round(_pct(vault, 0.5), 3), "vault_p99": round(_pct(vault, 0.99), 3),
            "connect_p50": round(_pct(conn, 0.5), 3), "connect_p99": round(_pct(conn, 0.99), 3),
            "connect_max": round(max(conn, default=0), 3),
            "matched_pct": round(100.0 * sum(r.get("matched", False) for r in answered)
                                 / max(1, len(answered)), 2)}


def run(out_dir: Path, searchers: int, n_files: int, n_base: int, pause: float,
        handles: str, work: Path, idle_s: float = 15.0) -> dict:
    vault = work / "bench.duckdb"
    base, files = _clips(n_base, n_files)
    env = _env()
    subprocess.run(_cli("init", str(vault), "--kdf-log2n", "12"), check=True, env=env,
                   capture_output=True)
    subprocess.run(_cli("ingest", str(vault), *base, "--json"), check=True, env=env,
                   capture_output=True)
    load_before = Path("/proc/loadavg").read_text().strip()
    procs, logs = [], []
    for i in range(searchers):
        log = work / f"searcher{i}.jsonl"
        queries = base[i::searchers] or base
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _SEARCHER, str(vault), json.dumps(queries), str(pause),
             handles, str(log)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO)))
        logs.append(log)
    for p in procs:  # every searcher holds the vault open before the ingest starts
        line = p.stdout.readline().strip()
        if line != "open":
            raise SystemExit(f"error: a searcher did not open the vault: {p.stderr.read()[-500:]}")
    t_idle = time.time()
    time.sleep(idle_s)  # the same searchers with no ingest: the latency the ingest adds to
    load_idle = Path("/proc/loadavg").read_text().strip()
    t_start = time.time()
    if handles == "shared":
        ing = subprocess.run(_cli("ingest", str(vault), *files, "--json", "--wait", "60"),
                             env=env, capture_output=True, text=True)
    else:
        ing = subprocess.run([sys.executable, "-c", _HELD_INGEST, str(vault), json.dumps(files),
                              PASSPHRASE], env=env, capture_output=True, text=True, cwd=str(REPO))
    t_end = time.time()
    load_during = Path("/proc/loadavg").read_text().strip()
    Path(str(vault) + ".bench-stop").touch()
    for p in procs:
        p.communicate(timeout=120)
    recs = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    during = [r for r in recs if t_start <= r["t0"] <= t_end]
    idle = [r for r in recs if t_idle <= r["t0"] < t_start]
    answered = [r for r in during if r["ok"]]
    fast = [r for r in answered if r["s"] <= LIMIT_S]
    errors: dict[str, int] = {}
    for r in during:
        if not r["ok"]:
            errors[r["error"][:160]] = errors.get(r["error"][:160], 0) + 1
    try:
        added = len(json.loads(ing.stdout)["added"]) if ing.returncode == 0 else 0
    except (ValueError, KeyError):
        added = 0
    ver = subprocess.run(_cli("verify", str(vault), "--json"), env=env, capture_output=True,
                         text=True)
    info = json.loads(subprocess.run(_cli("info", str(vault), "--json"), env=env, check=True,
                                     capture_output=True, text=True).stdout)
    lat = [r["s"] for r in answered]
    return {
        "handles": handles, "searchers": searchers, "files": n_files, "base": n_base,
        "pause_s": pause, "load_before": load_before, "load_after_ingest": load_during,
        "load_after_idle": load_idle, "idle_s": idle_s,
        "idle": _latency(idle), "during": _latency(during),
        "ingest_s": round(t_end - t_start, 2), "ingest_exit": ing.returncode,
        "ingest_stderr": ing.stderr.strip().splitlines()[-1:] if ing.returncode else [],
        "added": added,
        "searches_during_ingest": len(during), "answered": len(answered),
        "answered_within_2s": len(fast),
        "answered_pct": round(100.0 * len(answered) / max(1, len(during)), 2),
        "within_2s_pct": round(100.0 * len(fast) / max(1, len(during)), 2),
        "matched_pct": round(100.0 * sum(r.get("matched", False) for r in answered)
                             / max(1, len(answered)), 2),
        "latency_s": {"p50": round(_pct(lat, 0.5), 3), "p95": round(_pct(lat, 0.95), 3),
                      "p99": round(_pct(lat, 0.99), 3), "max": round(max(lat, default=0), 3)},
        "errors": errors, "searches_total": len(recs),
        "verify_exit": ver.returncode, "verify": (json.loads(ver.stdout) if ver.stdout else {}),
        "recordings": info.get("recordings"), "expected_recordings": n_base + n_files,
        "counts_exact": info.get("recordings") == n_base + added and added == n_files,
    }


def markdown(r: dict, command: str) -> str:
    ok = (r["within_2s_pct"] >= 99.0 and r["ingest_exit"] == 0 and r["verify_exit"] == 0
          and r["counts_exact"])
    v = r["verify"]
    i, d = r["idle"], r["during"]
    lines = [
        f"# Concurrency: {r['searchers']} searchers + 1 ingest of {r['files']} files "
        f"({r['handles']} handles)", "",
        f"Command: `{command}`", "",
        f"Load (`/proc/loadavg`, 2 cores shared with other agents): before `{r['load_before']}`,"
        f" after the ingest `{r['load_after_ingest']}`.", "",
        "| figure | value |", "|---|---|",
        f"| searches started during the ingest | {r['searches_during_ingest']} |",
        f"| answered (no error) | {r['answered']} ({r['answered_pct']} %) |",
        f"| answered within 2 s | {r['answered_within_2s']} ({r['within_2s_pct']} %) |",
        f"| latency p50 / p95 / p99 / max (s) | {r['latency_s']['p50']} / {r['latency_s']['p95']}"
        f" / {r['latency_s']['p99']} / {r['latency_s']['max']} |",
        f"| answers that matched (query = a stored clip) | {r['matched_pct']} % |",
        f"| ingest | exit {r['ingest_exit']}, {r['added']} of {r['files']} added, "
        f"{r['ingest_s']} s |",
        f"| verify | exit {r['verify_exit']}, {v.get('checked', '?')} checked, "
        f"{len(v.get('failures', []) or [])} failures |",
        f"| recordings after / expected | {r['recordings']} / {r['expected_recordings']} "
        f"(exact: {r['counts_exact']}) |",
        f"| pause between one searcher's searches | {r['pause_s']} s |", "",
        "The same searchers with no ingest (the first {0:.0f} s, before it started) and during "
        "it: search wall time (an audio file in, hits out), its part outside coding the "
        "query (connecting, waiting for the writer, SQL), and of that the vault's connect "
        "(waiting for the writer's session to end, then opening the file):".format(r["idle_s"]), "",
        "| phase | searches | answered | within 2 s | p50 / p95 / p99 / max (s) "
        "| outside coding p50 / p99 (s) | of which connecting p50 / p99 / max (s) | matched |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {name} | {x['searches']} | {x['answered']} | {x['within']} | {x['p50']} / "
          f"{x['p95']} / {x['p99']} / {x['max']} | {x['vault_p50']} / {x['vault_p99']} "
          f"| {x['connect_p50']} / {x['connect_p99']} / {x['connect_max']} | {x['matched_pct']} % |"
          for name, x in (("no ingest", i), ("during the ingest", d))], "",
        f"Load after the no-ingest phase: `{r['load_after_idle']}`.", "",
        f"Target (>= 99 % answered within 2 s, ingest completes, verify ok, counts exact): "
        f"**{'met' if ok else 'NOT met'}**.", "",
    ]
    if r["errors"]:
        lines += ["Refusals and errors during the ingest:", ""]
        lines += [f"- {n} x `{msg}`" for msg, n in sorted(r["errors"].items(), key=lambda kv: -kv[1])]
        lines.append("")
    if r["ingest_stderr"]:
        lines += [f"Ingest said: `{r['ingest_stderr'][0]}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write concurrency[-held].md and .json here")
    ap.add_argument("--searchers", type=int, default=8)
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--base", type=int, default=100)
    ap.add_argument("--pause", type=float, default=0.25)
    ap.add_argument("--handles", choices=("shared", "held"), default="shared")
    ap.add_argument("--idle-seconds", type=float, default=15.0,
                    help="searchers alone before the ingest starts (the baseline)")
    a = ap.parse_args(argv)
    command = "python -m model_export.bench_concurrency " + " ".join(argv or sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="sv-conc-") as tmp:
        r = run(a.out, a.searchers, a.files, a.base, a.pause, a.handles, Path(tmp),
                a.idle_seconds)
    text = markdown(r, command)
    print(text)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        stem = "concurrency" if a.handles == "shared" else "concurrency-held"
        (a.out / f"{stem}.md").write_text(text)
        (a.out / f"{stem}.json").write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
