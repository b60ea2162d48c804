"""Run the six vault commands on a damaged copy of a vault and classify what each did.

Used by tests/test_damaged_vault.py (a few dozen flips in CI, >= 1,000 flips and truncations
``-m slow``). Each case copies a clean vault, damages the copy (one byte XORed with a random
non-zero mask at a random offset, or the file truncated), then runs ``info``, ``list``, ``search``,
``export``, ``verify`` and ``ingest`` through typer's CliRunner in this process with
``tests.fakes.FakeEncoder`` patched in. An outcome is

* ``ok``: exit 0, or exit 1 with one ``error: ...`` line on stderr (a command that reports a
  damaged vault, or ``verify`` listing what it could not read);
* ``traceback``: any other exception escaped the command (the failure this guards against);
* ``noisy``: exit 1 but stderr is not exactly one ``error:`` line (``verify``/``ingest`` may print
  a table on stdout first; stderr is what is checked).

Run as a script (``python -m tests.damage_harness N SEED``) it prints one JSON line per case, so a
parent can spot a native crash (the child dies; the last case printed names the culprit).
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PW = "damaged vault passphrase"
COMMANDS = ("info", "list", "search", "export", "verify", "ingest")


@dataclass
class Outcome:
    case: str
    command: str
    exit_code: int
    kind: str
    detail: str = ""


@dataclass
class Tally:
    cases: int = 0
    runs: int = 0
    by_kind: dict = field(default_factory=dict)
    bad: list = field(default_factory=list)
    seconds: float = 0.0

    def add(self, o: Outcome) -> None:
        self.runs += 1
        self.by_kind[o.kind] = self.by_kind.get(o.kind, 0) + 1
        if o.kind not in ("ok",):
            self.bad.append(o)


def _patch_fake_encoder():
    import store.vault as sv
    from tests.fakes import FakeEncoder, encoder_loader

    enc = FakeEncoder(K=128, C=3, seed=23)

    sv._load_encoder_class = encoder_loader(enc)
    return enc


def build_clean_vault(d: Path, n: int = 8, cipher: str = "rossler",
                      encrypt_index: bool = False) -> tuple[Path, list[Path]]:
    """A vault of ``n`` little recordings (and the files, the first is the search query)."""
    from store.vault import Vault
    from tests.fakes import tone_mix, write_wav

    enc = _patch_fake_encoder()
    d.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        p = d / f"clip{i}.wav"
        write_wav(p, tone_mix(700 + i, 0.3 + 0.05 * (i % 3)))
        files.append(p)
    path = d / "clean.duckdb"
    with Vault.create(path, PW, encoder=enc, cipher=cipher, kdf_log2_n=10,
                      encrypt_index=encrypt_index) as v:
        v.ingest(files)
    extra = d / "extra.wav"
    write_wav(extra, tone_mix(999, 0.3))
    return path, [*files, extra]


def _one_line_error(stderr: str) -> bool:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("error: ")


def run_command(cmd: str, vault: Path, files: list[Path], out_dir: Path, case: str) -> Outcome:
    from typer.testing import CliRunner

    import cli

    args = {
        "info": ["info", vault],
        "list": ["list", vault],
        "search": ["search", vault, files[0]],
        "export": ["export", vault, "1", "-o", out_dir / f"{case}-{cmd}.wav"],
        "verify": ["verify", vault],
        "ingest": ["ingest", vault, files[-1]],
    }[cmd]
    runner = CliRunner()
    try:
        r = runner.invoke(cli.app, [str(a) for a in args], env={"SPEECHVAULT_PASSPHRASE": PW,
                                                                  "COLUMNS": "200"})
    except Exception as exc:  # CliRunner itself should catch everything
        return Outcome(case, cmd, -1, "traceback", f"{type(exc).__name__}: {exc}")
    stderr = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        exc = r.exception
        return Outcome(case, cmd, r.exit_code, "traceback",
                       f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    if r.exit_code == 0:
        return Outcome(case, cmd, 0, "ok")
    if _one_line_error(stderr):
        return Outcome(case, cmd, r.exit_code, "ok", stderr.strip()[:200])
    return Outcome(case, cmd, r.exit_code, "noisy", stderr.strip()[:300])


def damage(src: Path, dst: Path, rnd: random.Random, kind: str) -> str:
    data = bytearray(src.read_bytes())
    if kind == "flip":
        i = rnd.randrange(len(data))
        m = rnd.randrange(1, 256)
        data[i] ^= m
        desc = f"flip@{i}^{m:#04x}"
    else:
        frac = rnd.uniform(0.5, 0.99) if kind == "truncate-random" else 0.9
        total = len(data)
        n = int(total * frac)
        data = data[:n]
        desc = f"truncate@{n}/{total}"
    dst.write_bytes(bytes(data))
    return desc


def run_cases(work: Path, n_cases: int, seed: int, *, truncations: int = 0,
              commands=COMMANDS, emit=None, encrypt_index: bool = False) -> Tally:
    """``n_cases`` random flips plus ``truncations`` truncations, every command on each."""
    rnd = random.Random(seed)
    clean, files = build_clean_vault(work / "src", encrypt_index=encrypt_index)
    out_dir = work / "out"
    out_dir.mkdir(exist_ok=True)
    tally = Tally()
    t0 = time.perf_counter()
    kinds = ["flip"] * n_cases + ["truncate-90"] * min(1, truncations) + \
        ["truncate-random"] * max(0, truncations - 1)
    for k, kind in enumerate(kinds):
        case_dir = work / f"c{k}"
        case_dir.mkdir()
        vault = case_dir / "v.duckdb"
        desc = damage(clean, vault, rnd, kind)
        base = vault.read_bytes()
        tally.cases += 1
        for cmd in commands:
            vault.write_bytes(base)  # each command sees the same damage (ingest may write)
            for extra in (Path(str(vault) + ".wal"),):
                if extra.exists():
                    extra.unlink()
            o = run_command(cmd, vault, files, out_dir, f"c{k}")
            o.case = desc
            tally.add(o)
            if emit is not None:
                emit(o)
        shutil.rmtree(case_dir, ignore_errors=True)
    tally.seconds = time.perf_counter() - t0
    return tally


if __name__ == "__main__":
    import tempfile

    n, seed = int(sys.argv[1]), int(sys.argv[2])
    trunc = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    encrypted = len(sys.argv) > 4 and sys.argv[4] == "encrypt-index"
    if encrypted:  # the encrypted index's own scrypt at the tests' cost
        import store.encrypted_index as ei

        ei.INDEX_LOG2_N = 10
    with tempfile.TemporaryDirectory() as tmp:
        t = run_cases(Path(tmp), n, seed, truncations=trunc, encrypt_index=encrypted,
                      emit=lambda o: print(json.dumps(o.__dict__), flush=True))
    print(json.dumps({"cases": t.cases, "runs": t.runs, "by_kind": t.by_kind,
                      "seconds": round(t.seconds, 1)}), flush=True)
