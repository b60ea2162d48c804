"""A/B of the search code of two source trees on the same vault data (issue 13, session 20):
the numbers of the "Issue 13, session 20" section of docs/results/bench.md.

    # once: the vaults (the bench's 10k real-code Table 4 vault, and 1M synthetic rows)
    .venv/bin/python docs/measure_search_ab.py build --out /tmp/sv-ab
    # the old tree (format 4) and this one (format 5) each on its own copy of the vaults
    git archive 4cbc3a5 | tar -x -C /tmp/sv-old
    .venv/bin/python docs/measure_search_ab.py run --tree /tmp/sv-old --vaults /tmp/sv-ab
    .venv/bin/python docs/measure_search_ab.py run --tree . --vaults /tmp/sv-ab --upgrade

``build`` writes ``t4.duckdb`` (10,000 recordings of real codes: the bench's cache of FSDD codes
of ``fsdd-crnn-k384-dda``), ``big.duckdb`` (1,000,000 rows of random codes, 10 categories), the
query codes (100 stored codes with 5 % of their bits flipped) and a 10 s recording (FSDD clips
joined, the bench's ``_long_recording``). ``run --upgrade`` first copies the vaults to
``*-v5.duckdb`` and opens them read-write (the format-5 upgrade; kept for the next runs). Prints the median wall and CPU
(``time.process_time``) ms per ``Vault.search``, and the load average: on a shared machine CPU
time is the steadier figure.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def _build(out: Path) -> None:
    from hashing.encoder import Encoder
    from model_export import bench as B
    from store.records import QueryCode

    out.mkdir(parents=True, exist_ok=True)
    enc = Encoder.shipped(B.TABLE4_MODEL, num_threads=1)
    files, labels, _ = B._find_data(None)
    rc = B.real_codes(enc, files, labels, 1000, cache_dir=B._default_cache())
    rng = np.random.default_rng(0)
    v = B._new_vault(out / "t4.duckdb", enc)
    B.bulk_insert_codes(v, rc["words"], rc["category"], owner=rc["owner"],
                        labels=list(rc["labels"]), names=list(rc["names"]))
    v.close()
    firsts = np.searchsorted(rc["owner"], np.arange(int(rc["owner"].max()) + 1))
    qs = [QueryCode(category=np.array([rc["category"][firsts[i]]]), K=384,
                    words=B._flip(rc["words"][firsts[i]], 384, 0.05, rng)[None, :])
          for i in rng.choice(len(firsts), size=100, replace=False)]
    (out / "qs.pkl").write_bytes(pickle.dumps(qs))
    (out / "q10s.wav").write_bytes(B._long_recording(files, enc.sample_rate))
    v = B._new_vault(out / "big.duckdb", enc)
    n = 1_000_000
    wcat, words = rng.integers(0, 10, n), B.synthetic_words(n, 384, rng)
    B.bulk_insert_codes(v, words, wcat)
    v.close()
    qs = [QueryCode(category=np.array([wcat[i]]), K=384,
                    words=B._flip(words[i], 384, 0.05, rng)[None, :])
          for i in rng.choice(n, 100, replace=False)]
    (out / "qs1m.pkl").write_bytes(pickle.dumps(qs))


def _med(f, items, n) -> str:
    wall, cpu = [], []
    for i in range(n):
        x = items[i % len(items)]
        t0, c0 = time.perf_counter(), time.process_time()
        f(x)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return f"wall {1e3 * np.median(wall):7.2f}  cpu {1e3 * np.median(cpu):7.2f}"


def _run(vaults: Path, suffix: str) -> None:
    from store.vault import Vault

    print("load", os.getloadavg())
    qs = pickle.loads((vaults / "qs.pkl").read_bytes())
    wav = (vaults / "q10s.wav").read_bytes()
    with Vault.open(vaults / f"t4{suffix}.duckdb") as v:
        q10 = v.encode_query(wav)
        for m in ("two-stage", "traversal", "auto"):  # auto: session 22
            v.search(qs[0], mode=m)
            print(f"10k, 1 window, {m:10s}", _med(lambda q: v.search(q, mode=m, top=10), qs, 200))
        for m in ("two-stage", "traversal", "auto"):
            v.search(q10, mode=m)
            print(f"10k, 10 s coded, {m:10s}", _med(lambda q: v.search(q, mode=m, top=10), [q10], 40))
        print("10k, 10 s end to end, auto ", _med(lambda q: v.search(q, top=10), [wav], 30))
    qs = pickle.loads((vaults / "qs1m.pkl").read_bytes())
    with Vault.open(vaults / f"big{suffix}.duckdb") as v:
        for m in ("two-stage", "traversal"):
            for q in qs[:3]:
                v.search(q, mode=m)
            print(f"1M, 1 window, {m:10s}", _med(lambda q: v.search(q, mode=m, top=10), qs, 60))
    print("load", os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--tree", type=Path, required=True)
    r.add_argument("--vaults", type=Path, required=True)
    r.add_argument("--upgrade", action="store_true")
    a = ap.parse_args()
    if a.cmd == "build":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        _build(a.out)
        return
    sys.path.insert(0, str(a.tree.resolve()))
    suffix = ""
    if a.upgrade:
        from store.vault import Vault

        suffix = "-v5"
        for name in ("t4", "big"):
            if not (a.vaults / f"{name}{suffix}.duckdb").exists():  # made once, then reused
                shutil.copyfile(a.vaults / f"{name}.duckdb", a.vaults / f"{name}{suffix}.duckdb")
                Vault.open(a.vaults / f"{name}{suffix}.duckdb", read_only=False).close()
    _run(a.vaults, suffix)


if __name__ == "__main__":
    main()
