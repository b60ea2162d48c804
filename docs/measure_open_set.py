"""Identification beyond FSDD: queries that are not in the vault, and voices never heard (issue 7).

    python docs/measure_open_set.py hashing/models/default.tflite /work/shared/data/fsdd \\
        --other /work/cache/sv7_espeak --other-speaker esp-enf3 --other-speaker esp-enm3

1. Open set: the vault holds all FSDD recordings; each query is a recording that is NOT in it
   (the held-out espeak-ng voices, clean and under every test CPO). Any recording within the
   model's tau is a false match: reported as the share of queries with one.
2. Other voices as the vault: the vault holds every clip of ``--other`` (espeak-ng: 17 voices x
   3 speeds x 3 pitches x 10 digits, so the impostors are the same word by the same synthesiser
   with a slightly different pitch or speed: harder than FSDD's takes); queries are CPO copies of
   the held-out voices' clips. Identification recall / precision at the model's tau, traversal.

Runtime only (numpy + TFLite); about 2 minutes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hashing.audio import load_audio  # noqa: E402
from hashing.cpo import ALL_TEST_CPOS  # noqa: E402
from hashing.encoder import Encoder  # noqa: E402
from model_export import dataset as ds  # noqa: E402
from model_export.evaluate import encode_items, match_stats, recording_distances  # noqa: E402
from model_export.identify_eval import TEST_CPOS  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("data_dir")
    p.add_argument("--other", required=True)
    p.add_argument("--other-speaker", action="append", default=[])
    a = p.parse_args()
    enc = Encoder.from_files(a.model, num_threads=2)
    tau, K = float(enc.meta.tau), enc.K
    print(f"model {enc.meta.name}: searched code {enc.code_name} ({K} bits), tau {tau:.4f}\n")
    items, _ = ds.list_items(a.data_dir)
    lib = encode_items(enc, [load_audio(it.path, enc.sample_rate) for it in items])
    o_items, _ = ds.list_items(a.other)
    held = [i for i, it in enumerate(o_items) if it.speaker in set(a.other_speaker)]
    o_sig = [load_audio(it.path, enc.sample_rate) for it in o_items]
    print(f"## Open set: {len(held)} recordings of {a.other_speaker} against the {lib.n} FSDD "
          "recordings (none of them is stored)\n")
    print("| query | queries | with a false match | nearest BER (min / median) |")
    print("|---|---|---|---|")
    for name in ("clean", *TEST_CPOS):
        op = (lambda y, sr: y) if name == "clean" else ALL_TEST_CPOS[name]
        q = encode_items(enc, [op(o_sig[i], enc.sample_rate) for i in held])
        d = recording_distances(q, lib, K).min(axis=1)
        print(f"| {name} | {len(held)} | {np.mean(d < tau):.4f} | {d.min():.4f} / {np.median(d):.4f} |")
    olib = encode_items(enc, o_sig)
    print(f"\n## The other voices as the vault: {olib.n} recordings, queries = CPO copies of the "
          f"{len(held)} held-out clips, traversal, tau {tau:.4f}\n")
    print("| CPO | recall | precision | queries with a false match | top-1 |")
    print("|---|---|---|---|---|")
    for name in TEST_CPOS:
        q = encode_items(enc, [ALL_TEST_CPOS[name](o_sig[i], enc.sample_rate) for i in held])
        D = recording_distances(q, olib, K)
        st = match_stats(D, np.array(held), tau, q.category, olib.category)["traversal"]
        print(f"| {name} | {st['recall']:.4f} | {st['precision']:.4f} | "
              f"{st['queries_with_false_matches']} | {st['top1']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
