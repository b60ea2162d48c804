"""Peak memory and time of ingesting and of searching one long recording, per length
(issue 17, item 7: "stream decode and features in blocks ... memory bounded by a constant,
stated in a benchmark").

    python -m model_export.bench_memory --ingest 15 30 60 --search 5 15 30 --out docs/results

The recording: the shipped ``sentence_en-us_1.wav`` (espeak-ng speech) repeated with a random
gain and a little noise to the length asked, 16 kHz mono 16-bit, written block by block. Each
measurement runs in a fresh process with the default model: ``Vault.create`` + ``ingest`` of the
file, or ``Vault.open`` + ``search`` with it as the query (``max_query_seconds`` raised to fit).
The figure is that process's ``ru_maxrss`` (everything it held at its peak: interpreter, TFLite,
DuckDB, the file's bytes, the decoded signal, the features), beside the same for a 10-second
file (the fixed part). Each process runs under an address-space limit (``--limit-gb``, default
6) so that a run that would need more fails with "over the limit" instead of exhausting a
machine shared with others.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "speechvault" / "examples" / "sentence_en-us_1.wav"
PASSPHRASE = "memory bench passphrase"
SR = 16_000

_CHILD = """
import json, os, resource, sys, threading, time
from hashing.encoder import Encoder
from speechvault.errors import SpeechVaultError
from store import blob_chunks
from store.vault import Vault
if os.environ.get("SV_BENCH_CHUNK_KB"):  # --chunk-kb: another chunk size than the shipped one
    blob_chunks.CHUNK_BYTES = int(os.environ["SV_BENCH_CHUNK_KB"]) << 10

# where the peak is: the resident set sampled every 20 ms, with the stage running at the time
phase, peak = ["open"], [0.0, "open"]
def sample():
    while True:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * 4096 / 2 ** 20
        if rss > peak[0]:
            peak[:] = [rss, phase[0]]
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
def staged(cls, name, label):
    real = getattr(cls, name)
    def run(*a, **k):
        before, phase[0] = phase[0], label
        try:
            return real(*a, **k)
        finally:
            phase[0] = before
    setattr(cls, name, run)
staged(Encoder, "encode_file", "decode+features+model")
staged(Vault, "_insert_batch", "seal+store")
staged(Vault, "_search_in_mode", "search SQL")

what, vault, audio, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
t0 = time.perf_counter()
try:
    if what in ("ingest", "ingest-more"):
        with (Vault.create(vault, sys.argv[5], kdf_log2_n=10) if what == "ingest" else
              Vault.open(vault, read_only=False, passphrase=sys.argv[5])) as v:
            v.max_ingest_seconds = seconds + 1
            rep = v.ingest([audio])
        out = {"ok": not rep.errors, "windows": rep.added[0].n_windows if rep.added else 0,
               "errors": [m for _, m in rep.errors]}
    else:
        with Vault.open(vault) as v:
            v.max_query_seconds = seconds + 1
            r = v.search(audio)
        out = {"ok": True, "matched": bool(r.matched),
               "hit": r.hits[0].recording_id if r.hits else None}
except MemoryError:
    out = {"ok": False, "errors": ["over the address-space limit (MemoryError)"]}
except SpeechVaultError as exc:  # e.g. MemoryLimitError: DuckDB's limit while storing
    out = {"ok": False, "errors": [type(exc).__name__ + ": " + exc.message.split(" (")[0]]}
out["s"] = round(time.perf_counter() - t0, 1)
use = resource.getrusage(resource.RUSAGE_SELF)  # CPU: what a loaded machine does not inflate
out["cpu_s"] = round(use.ru_utime + use.ru_stime, 1)
out["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
out["peak_stage"] = peak[1]
print(json.dumps(out))
"""


def long_speech(path: Path, seconds: float, seed: int = 0) -> Path:
    """``seconds`` of the shipped sentence repeated (random gain 0.5-1.0, noise at -50 dBFS),
    written one repetition at a time so the parent never holds the whole signal: a 16-bit WAV,
    or an MP3 (libsndfile's LAME) when ``path`` ends in ``.mp3``."""
    import soundfile as sf

    from hashing.audio import load_audio

    clip = load_audio(str(SOURCE), SR)
    rng = np.random.default_rng(seed)
    left = int(round(seconds * SR))
    kind = ({"format": "MP3", "subtype": "MPEG_LAYER_III"} if path.suffix == ".mp3"
            else {"subtype": "PCM_16"})
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, **kind) as f:
        while left > 0:
            part = clip[:left] * np.float32(rng.uniform(0.5, 1.0))
            part = part + rng.normal(0, 0.003, part.size).astype(np.float32)
            f.write(np.clip(part, -1, 1))
            left -= part.size
    return path


def _limit(gb: float):
    def apply() -> None:
        cap = int(gb * 1024 ** 3)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return apply


#: extra environment of every measured process (``--chunk-kb``, ``--memory-mb``)
CHILD_ENV: dict[str, str] = {}


def measure(what: str, vault: Path, audio: Path, seconds: float, limit_gb: float,
            timeout_s: float = 900.0) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **CHILD_ENV}
    try:
        p = subprocess.run([sys.executable, "-c", _CHILD, what, str(vault), str(audio),
                            str(seconds), PASSPHRASE], capture_output=True, text=True, env=env,
                           cwd=str(REPO), preexec_fn=_limit(limit_gb), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"ok": False, "errors": [f"not done after {timeout_s:.0f} s"], "what": what,
                "minutes": round(seconds / 60, 2),
                "load": Path("/proc/loadavg").read_text().split()[0]}
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        out = {"ok": False, "errors": [f"exit {p.returncode}: {tail[:200]}"]}
    out.update(what=what, minutes=round(seconds / 60, 2),
               load=Path("/proc/loadavg").read_text().split()[0])
    return out


def run(ingest_min: list[float], search_min: list[float], limit_gb: float, work: Path,
        formats: list[str], second: bool = False) -> list[dict]:
    rows = []
    for fmt in formats:
        base = long_speech(work / f"ten-seconds.{fmt}", 10.0)
        mb = round(base.stat().st_size / 2 ** 20, 2)
        for what in ("ingest", "search"):
            rows.append({**measure(what, work / f"base-{fmt}.duckdb", base, 10.0, limit_gb),
                         "format": fmt, "mb": mb})
        for m in sorted(set(ingest_min) | set(search_min)):
            audio = long_speech(work / f"{m:g}min.{fmt}", m * 60)
            vault = work / f"{m:g}min-{fmt}.duckdb"
            mb = round(audio.stat().st_size / 2 ** 20, 1)
            rows.append({**measure("ingest", vault, audio, m * 60, limit_gb), "format": fmt, "mb": mb})
            if m in search_min and rows[-1].get("ok"):
                rows.append({**measure("search", vault, audio, m * 60, limit_gb), "format": fmt,
                             "mb": mb})
            if second and rows[-1].get("ok"):  # another file as long, into the vault holding one
                other = long_speech(work / f"{m:g}min-b.{fmt}", m * 60, seed=1)
                rows.append({**measure("ingest-more", vault, other, m * 60, limit_gb),
                             "format": fmt, "mb": mb})
                other.unlink()
            audio.unlink()
            vault.unlink()
    return rows


def markdown(rows: list[dict], command: str, limit_gb: float) -> str:
    lines = [
        "# Long inputs: peak memory and time (issue 17, item 7)", "",
        f"Command: `{command}`", "",
        "One fresh process per row (default model; `ru_maxrss` of that process; address space "
        f"capped at {limit_gb:g} GB). The machine: 2 cores shared with other agents; the load "
        "(1-minute average) is given per row.", "",
        "| what | format | file MB | minutes | peak RSS (MB) | stage at the peak | seconds | CPU s "
        "| result | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        res = ("ok" if r.get("ok") else "; ".join(r.get("errors", []))[:200])
        if r["what"].startswith("ingest") and r.get("ok"):
            res += f", {r.get('windows')} windows"
        if r["what"] == "search" and r.get("ok"):
            res += f", matched {r.get('matched')}"
        lines.append(f"| {r['what']} | {r.get('format', '-')} | {r.get('mb', '-')} | {r['minutes']} "
                     f"| {r.get('rss_mb', '-')} | {r.get('peak_stage', '-')} | {r.get('s', '-')} "
                     f"| {r.get('cpu_s', '-')} | {res} | {r['load']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ingest", type=float, nargs="*", default=[15, 30, 60])
    ap.add_argument("--search", type=float, nargs="*", default=[5, 15])
    ap.add_argument("--formats", nargs="*", default=["wav"], choices=["wav", "mp3"])
    ap.add_argument("--limit-gb", type=float, default=6.0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--second", action="store_true",
                    help="also ingest a second file of each length into the vault holding the "
                         "first (row 'ingest-more')")
    ap.add_argument("--chunk-kb", type=int,
                    help="store new recordings in chunks of this many KiB instead of "
                         "store.blob_chunks.CHUNK_BYTES (to compare sizes)")
    ap.add_argument("--memory-mb", type=int,
                    help="DuckDB's memory limit while an ingest stores, MB (default: "
                         "store.connection.INGEST_MEMORY_MB; SPEECHVAULT_INGEST_MEMORY_MB)")
    a = ap.parse_args(argv)
    if a.chunk_kb:
        CHILD_ENV["SV_BENCH_CHUNK_KB"] = str(a.chunk_kb)
    if a.memory_mb:
        CHILD_ENV["SPEECHVAULT_INGEST_MEMORY_MB"] = str(a.memory_mb)
    command = "python -m model_export.bench_memory " + " ".join(argv or sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="sv-mem-") as tmp:
        rows = run(a.ingest, a.search, a.limit_gb, Path(tmp), a.formats, a.second)
    text = markdown(rows, command, a.limit_gb)
    print(text)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "long_inputs_memory.md").write_text(text)
        (a.out / "long_inputs_memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
