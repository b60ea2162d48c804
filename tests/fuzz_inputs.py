"""A million mutated audio files through decode, ingest and search, in one process (issue 17,
"Must show": fuzzing to the goal).

    python -m tests.fuzz_inputs --n 1000000 --out /tmp/fuzz   # the runner (nice -n 19 it)

Why in-process and mutation-based: a fresh process per input costs ~0.5 s, so 10^6 inputs would
take days; hypothesis' shrinking machinery is slow per example as well. Here a few small seed
files (0.25 s of speech) of each format soundfile writes are mutated (bit flips, interesting
bytes, u16/u32 header fields set to extremes, truncation, insertion, duplication, splices of two
seeds) with a seeded RNG, so a failing input is reproducible from its index alone. Every mutant
goes through ``load_audio`` (most die there within a millisecond). A decodable mutant goes on
through the real path of a vault -- ``Vault.ingest`` (decode again, encode with the default TFLite
model, seal, store, integrity MAC; ``--batch`` files per call) and ``Vault.search`` with the same
bytes -- when its shape is new (seed format x decoded length in 0.1 s steps) and otherwise with
probability ``1/--sample-rest``: a vault round trip costs ~70 ms against ~1 ms for a decode, so
sending every decodable mutant (about 30 %) would turn 10^6 inputs into days. The summary
counts each stage.

What counts as a failure:
* an exception that is not a ``SpeechVaultError`` (a traceback the user would see), or a
  ``SpeechVaultError`` whose message is not one line;
* a decoded signal that is not finite mono float32 in [-1, 1];
* an ingest call that raises (a bad file must be reported in its errors) or reports an error
  that is not one line; a search that raises anything but a ``SpeechVaultError``;
* a hang: one input (or one ingest batch: ``--hang-s`` per file in it) taking longer than
  ``--hang-s`` seconds (a watchdog
  thread writes the input to ``hang-<index>.bin`` and ends the process with exit code 3);
* a "Traceback" printed on stderr (fd 2 goes to ``stderr.log`` and is scanned at the end).

Failing inputs are written to ``--out`` as ``fail-<index>.<ext>`` with a line in ``failures.txt``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "speechvault" / "examples"
PASSPHRASE = "fuzz passphrase"
#: seed formats: (extension, soundfile format, subtype)
FORMATS = [("wav", "WAV", "PCM_16"), ("wav", "WAV", "FLOAT"), ("wav", "WAV", "PCM_U8"),
           ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"), ("opus", "OGG", "OPUS"),
           ("mp3", "MP3", "MPEG_LAYER_III"), ("aiff", "AIFF", "PCM_24"), ("caf", "CAF", "ALAW"),
           ("au", "AU", "ULAW")]
INTERESTING8 = (0, 1, 0x7F, 0x80, 0xFF)
INTERESTING32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000, 44100, 8000)


def seed_files() -> list[tuple[str, bytes]]:
    """Small files (0.25 s, two speakers, mono and stereo) of every format this libsndfile
    writes; a format it cannot write is left out."""
    import soundfile as sf

    from hashing.audio import load_audio

    clips = [load_audio(str(EXAMPLES / n), 16_000)[2000:6000]
             for n in ("3_en-m3_1.wav", "sentence_en-us_1.wav")]
    out = []
    for ext, fmt, sub in FORMATS:
        for i, y in enumerate(clips):
            data = y if i == 0 else np.stack([y, y[::-1]], axis=1)  # one mono, one stereo seed
            sr = 48_000 if sub == "OPUS" else (16_000 if i == 0 else 22_050)
            buf = io.BytesIO()
            try:
                sf.write(buf, data, sr, format=fmt, subtype=sub)
            except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
                continue
            out.append((ext, buf.getvalue()))
    return out


def mutate(rng: np.random.Generator, seeds: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """One mutant of a random seed: 1-6 edits, half of them inside the first 64 bytes (where
    the headers are)."""
    ext, base = seeds[int(rng.integers(len(seeds)))]
    b = bytearray(base)
    for _ in range(int(rng.integers(1, 7))):
        if not b:
            break
        head = rng.random() < 0.5
        i = int(rng.integers(min(len(b), 64) if head else len(b)))
        op = int(rng.integers(9))
        if op == 0:
            b[i] ^= 1 << int(rng.integers(8))
        elif op == 1:
            b[i] = INTERESTING8[int(rng.integers(len(INTERESTING8)))]
        elif op == 2 and i + 4 <= len(b):
            v = INTERESTING32[int(rng.integers(len(INTERESTING32)))]
            b[i:i + 4] = int(v).to_bytes(4, "little" if rng.random() < 0.7 else "big")
        elif op == 3 and i + 2 <= len(b):
            b[i:i + 2] = int(rng.integers(1 << 16)).to_bytes(2, "little")
        elif op == 4:
            del b[i:]
        elif op == 5:
            b[i:i] = rng.bytes(int(rng.integers(1, 65)))
        elif op == 6:
            j = int(rng.integers(i, min(len(b), i + 512) + 1))
            b[i:i] = b[i:j]  # duplicate a run (repeated chunks, frames)
        elif op == 7:
            del b[i:i + int(rng.integers(1, 65))]
        else:
            other = seeds[int(rng.integers(len(seeds)))][1]
            b[i:] = other[min(i, len(other)):]  # splice: this head, another file's tail
    return ext, bytes(b)


class Watchdog:
    """Ends the process (exit 3) when one step runs longer than ``limit`` seconds, after writing
    the input it was on: a hang in native decoder code cannot be interrupted from Python."""

    def __init__(self, limit: float, out: Path) -> None:
        self.limit, self.out = float(limit), out
        self.started: float | None = None
        self.limit_now = self.limit
        self.what: tuple[int, str, bytes] | None = None
        threading.Thread(target=self._watch, daemon=True).start()

    def start(self, index: int, ext: str, data: bytes, files: int = 1) -> None:
        self.what, self.started = (index, ext, data), time.monotonic()
        self.limit_now = self.limit * files

    def stop(self) -> float:
        took = time.monotonic() - (self.started or time.monotonic())
        self.started = None
        return took

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            t0, what = self.started, self.what
            if t0 is not None and what is not None and time.monotonic() - t0 > self.limit_now:
                index, ext, data = what
                (self.out / f"hang-{index}.{ext}").write_bytes(data)
                with open(self.out / "failures.txt", "a") as f:
                    f.write(f"{index}\thang over {self.limit:g} s\n")
                os._exit(3)


class Fuzz:
    """The state of one run: counters, the vault, the pending ingest batch."""

    def __init__(self, out: Path, work: Path, seed: int, hang_s: float, batch: int,
                 sample_rest: int = 400) -> None:
        from hashing.encoder import Encoder
        from hashing.quiet import set_native_silencing

        set_native_silencing(True)  # as the command line does
        self.out, self.work, self.seed, self.batch = out, work, seed, batch
        self.enc = Encoder.default()
        self.dog = Watchdog(hang_s, out)
        self.counts = {"inputs": 0, "decode_refused": 0, "decoded": 0, "ingested": 0,
                       "ingest_refused": 0, "duplicates": 0, "searched": 0, "search_refused": 0,
                       "matched": 0, "failures": 0, "vaults": 0, "to_vault": 0}
        self.slowest = 0.0
        self.pending: list[tuple[int, str, bytes]] = []
        self.vault = None
        self.in_vault = 0
        self.shapes: set[tuple[str, int]] = set()
        self.sample_rest = sample_rest

    # ------------------------------------------------------------------ failures
    def fail(self, index: int, ext: str, data: bytes, why: str) -> None:
        self.counts["failures"] += 1
        (self.out / f"fail-{index}.{ext}").write_bytes(data)
        with open(self.out / "failures.txt", "a") as f:
            f.write(f"{index}\t{why}\n")

    def _one_line(self, exc: Exception) -> bool:
        return bool(str(exc)) and "\n" not in str(exc)

    # ------------------------------------------------------------------ stages
    def decode(self, index: int, ext: str, data: bytes) -> int | None:
        from hashing.audio import load_audio
        from speechvault.errors import SpeechVaultError

        try:
            y = load_audio(data)
        except SpeechVaultError as exc:
            self.counts["decode_refused"] += 1
            if not self._one_line(exc):
                self.fail(index, ext, data, f"decode: message not one line: {exc!r}")
            return None
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            self.fail(index, ext, data, f"decode: {type(exc).__name__}: {exc}")
            return None
        if not (y.dtype == np.float32 and y.ndim == 1 and y.size > 0 and np.isfinite(y).all()
                and float(np.abs(y).max()) <= 1.0):
            self.fail(index, ext, data, f"decode: bad signal {y.dtype} {y.shape}")
            return None
        self.counts["decoded"] += 1
        return int(y.size)

    def worth_storing(self, rng: np.random.Generator, ext: str, n_samples: int) -> bool:
        """Whether a decoded mutant goes on through ingest and search: every one whose shape is
        new (seed format x length in 0.1 s steps: what the encoder's code paths depend on), and
        ``1 / self.sample_rest`` of the others (a vault round trip costs ~70 ms, a decode ~1 ms:
        all of them would make 10^6 inputs a matter of days, not hours)."""
        key = (ext, n_samples // 1600)
        if key not in self.shapes:
            self.shapes.add(key)
            return True
        return rng.random() < 1.0 / self.sample_rest

    def _open_vault(self):
        from store.vault import Vault

        if self.vault is not None:
            self.vault.close()
        path = self.work / f"fuzz-{self.counts['vaults']}.duckdb"
        for p in self.work.glob("fuzz-*.duckdb*"):
            p.unlink()
        self.counts["vaults"] += 1
        self.vault = Vault.create(path, PASSPHRASE, encoder=self.enc, kdf_log2_n=10,
                                  cipher="chacha20poly1305")
        self.in_vault = 0

    def flush(self) -> None:
        """Ingest the pending decodable mutants in one call, then search with each."""
        from speechvault.errors import SpeechVaultError

        if not self.pending:
            return
        if self.vault is None or self.in_vault > 2000:  # a fresh small vault now and then
            self._open_vault()
        paths = []
        for index, ext, data in self.pending:
            p = self.work / f"in-{index}.{ext}"
            p.write_bytes(data)
            paths.append(p)
        first = self.pending[0]
        self.dog.start(first[0], "batch", first[2], files=len(self.pending))
        try:
            rep = self.vault.ingest(paths, batch_size=len(paths))
        except Exception as exc:  # noqa: BLE001 - an ingest call must report, never raise
            self.fail(first[0], first[1], first[2], f"ingest raised {type(exc).__name__}: {exc}")
            rep = None
        self.slowest = max(self.slowest, self.dog.stop())
        for p in paths:
            p.unlink()
        if rep is not None:
            self.counts["ingested"] += len(rep.added)
            self.counts["ingest_refused"] += len(rep.errors)
            self.counts["duplicates"] += len(rep.skipped_duplicates)
            self.in_vault += len(rep.added)
            for path, msg in rep.errors:
                if "\n" in msg or not msg:
                    idx = int(Path(path).stem.split("-")[1])
                    self.fail(idx, "txt", msg.encode(), f"ingest: message not one line: {msg!r}")
        for index, ext, data in self.pending:
            self.dog.start(index, ext, data)
            try:
                r = self.vault.search(data)
                self.counts["searched"] += 1
                self.counts["matched"] += bool(r.matched)
            except SpeechVaultError as exc:
                self.counts["search_refused"] += 1
                if not self._one_line(exc):
                    self.fail(index, ext, data, f"search: message not one line: {exc!r}")
            except Exception as exc:  # noqa: BLE001
                self.fail(index, ext, data, f"search: {type(exc).__name__}: {exc}")
            self.slowest = max(self.slowest, self.dog.stop())
        self.pending.clear()

    def run(self, n: int, start: int = 0, report_every: float = 60.0) -> dict:
        seeds = seed_files()
        t0 = last = time.monotonic()
        for index in range(start, start + n):
            rng = np.random.default_rng([self.seed, index])
            ext, data = mutate(rng, seeds)
            self.counts["inputs"] += 1
            self.dog.start(index, ext, data)
            n_samples = self.decode(index, ext, data)
            self.slowest = max(self.slowest, self.dog.stop())
            if n_samples is not None and self.worth_storing(rng, ext, n_samples):
                self.counts["to_vault"] += 1
                self.pending.append((index, ext, data))
                if len(self.pending) >= self.batch:
                    self.flush()
            if time.monotonic() - last > report_every:
                last = time.monotonic()
                self.progress(t0, index)
        self.flush()
        if self.vault is not None:
            self.vault.close()
        return self.summary(t0, len(seeds))

    def progress(self, t0: float, index: int) -> None:
        el = time.monotonic() - t0
        line = json.dumps({"index": index, "elapsed_s": round(el, 1),
                           "rate_per_s": round(self.counts["inputs"] / el, 1), **self.counts,
                           "load": Path("/proc/loadavg").read_text().split()[0]})
        with open(self.out / "progress.jsonl", "a") as f:
            f.write(line + "\n")

    def summary(self, t0: float, n_seeds: int) -> dict:
        el = time.monotonic() - t0
        return {**self.counts, "seeds": n_seeds, "elapsed_s": round(el, 1),
                "rate_per_s": round(self.counts["inputs"] / max(el, 1e-9), 1),
                "slowest_step_s": round(self.slowest, 3), "seed": self.seed}


def run(n: int, out: Path, seed: int = 0, start: int = 0, hang_s: float = 10.0,
        batch: int = 64, sample_rest: int = 400) -> dict:
    """Fuzz ``n`` inputs (indices ``start``..), fd 2 captured in ``out/stderr.log``; the summary
    includes ``tracebacks`` (times "Traceback" appears there)."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / "stderr.log"
    saved = os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory(prefix="sv-fuzz-") as tmp:
            summary = Fuzz(out, Path(tmp), seed, hang_s, batch, sample_rest).run(n, start)
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
    text = log.read_text(errors="replace")
    summary["tracebacks"] = text.count("Traceback")
    summary["stderr_lines"] = len(text.splitlines())
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--start", type=int, default=0, help="first input index (resume a run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang-s", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=64, help="decodable mutants per ingest call")
    ap.add_argument("--sample-rest", type=int, default=400,
                    help="1 in N decodable mutants of an already seen shape go on to the vault")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    s = run(a.n, a.out, a.seed, a.start, a.hang_s, a.batch, a.sample_rest)
    print(json.dumps(s, indent=2))
    return 0 if s["failures"] == 0 and s["tracebacks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
