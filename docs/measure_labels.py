"""What the labels of a search cost in DuckDB, and the trim energy's blocks (issue 13, session 21).

    .venv/bin/python docs/measure_search_ab.py build --out /tmp/sv-ab   # the bench's 10k vault
    .venv/bin/python docs/measure_search_ab.py run --tree . --vaults /tmp/sv-ab --upgrade  # v5 copy
    nice -n 10 .venv/bin/python docs/measure_labels.py --vaults /tmp/sv-ab

Prints the median CPU ms (``time.process_time``) of each variant, run in turn in a shuffled order
each round so that the machine's load falls on all of them alike:

* the one-window two-stage statement with the join to ``recordings`` (session 20's), without
  it (``ranked_statement(labels=False)``), and a lookup of 10 recordings' labels;
* the same at 1M recordings (``big-v5.duckdb``, every label a lookup: above ``PRELOAD_MAX``):
  the statement with the join against the statement without it plus the lookup of its hits;
* the trim energy of a 10 s query: blocks of 8,192 frames with a new array per operation
  (session 20's ``_frame_energy``) against ``hashing.features._frame_energy``.
"""
from __future__ import annotations

import argparse
import pickle
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def interleave(variants: dict, rounds: int) -> None:
    names = list(variants)
    res: dict[str, list[float]] = {k: [] for k in names}
    rng = random.Random(0)
    for f in variants.values():
        f(0)
    for i in range(rounds):
        rng.shuffle(names)
        for k in names:
            c0 = time.process_time()
            variants[k](i)
            res[k].append(time.process_time() - c0)
    for k in variants:
        print(f"{k:48s} cpu p50 {1e3 * statistics.median(res[k]):.3f} ms")


def old_frame_energy(frames: np.ndarray) -> np.ndarray:
    out = np.empty(frames.shape[0], dtype=np.float64)
    for i in range(0, frames.shape[0], 8192):
        fr = frames[i: i + 8192]
        fr = fr - fr.mean(axis=1, keepdims=True)
        out[i: i + fr.shape[0]] = np.mean(fr * fr, axis=1)
    return out


def main() -> None:
    import soundfile as sf

    from hashing import features as F
    from store import search as S
    from store.vault import Vault

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vaults", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=300)
    a = ap.parse_args()
    print("load", [round(x, 2) for x in __import__("os").getloadavg()])
    qs = pickle.loads((a.vaults / "qs.pkl").read_bytes())
    with Vault.open(a.vaults / "t4-v5.duckdb") as v:
        v.search(qs[0], mode="two-stage")  # threads chosen (1 at 10k rows)
        con = v._db()
        stmts = []
        for q in qs:
            w, c = [int(x) for x in q.words[0]], [[int(q.category[0])]]
            stmts.append((S.ranked_statement(v.K, [w], c, 40),
                          S.ranked_statement(v.K, [w], c, 40, labels=False)))
        ids = [r[0] for r in con.execute(*stmts[0][1]).fetchall()][:10]
        interleave({
            "10k, 1 window, two-stage, join to recordings": lambda i: con.execute(
                *stmts[i % len(stmts)][0]).fetchall(),
            "10k, 1 window, two-stage, no join": lambda i: con.execute(
                *stmts[i % len(stmts)][1]).fetchall(),
            "labels of 10 recordings, one statement": lambda i: con.execute(
                "SELECT id, name, category FROM recordings "
                "WHERE id IN (SELECT unnest(?::BIGINT[]))", [ids]).fetchall(),
            "Vault.search, 1 window, two-stage": lambda i: v.search(
                qs[i % len(qs)], mode="two-stage"),
        }, a.rounds)
    qs = pickle.loads((a.vaults / "qs1m.pkl").read_bytes())
    with Vault.open(a.vaults / "big-v5.duckdb") as v:
        v.search(qs[0], mode="two-stage")
        con = v._db()
        stmts = []
        for q in qs:
            w, c = [int(x) for x in q.words[0]], [[int(q.category[0])]]
            stmts.append((S.ranked_statement(v.K, [w], c, 40),
                          S.ranked_statement(v.K, [w], c, 40, labels=False)))

        def bare_then_lookup(i: int) -> None:
            found, _ = S.best_pairs(con.execute(*stmts[i % len(stmts)][1]).fetchall(), 10)
            con.execute("SELECT id, name, category FROM recordings "
                        "WHERE id IN (SELECT unnest(?::BIGINT[]))",
                        [[n.recording_id for n in found]]).fetchall()

        interleave({
            "1M, 1 window, two-stage, join to recordings": lambda i: con.execute(
                *stmts[i % len(stmts)][0]).fetchall(),
            "1M, 1 window, two-stage, no join + lookup": bare_then_lookup,
        }, max(20, a.rounds // 5))
    y, _ = sf.read(str(a.vaults / "q10s.wav"), dtype="float32")
    frames = F.frame_signal(y.astype(np.float64), 512, 128, center=False)
    assert np.array_equal(old_frame_energy(frames), F._frame_energy(frames))
    interleave({"trim energy, 10 s, blocks of 8,192 (session 20)":
                lambda i: old_frame_energy(frames),
                "trim energy, 10 s, hashing.features": lambda i: F._frame_energy(frames)},
               a.rounds // 3)
    print("load", [round(x, 2) for x in __import__("os").getloadavg()])


if __name__ == "__main__":
    main()
