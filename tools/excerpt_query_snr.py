"""The SNR each noisy query of eval-identify has: noise power over the excerpt itself.

    python tools/excerpt_query_snr.py [EXCERPTS_PER_RECORDING] [SEED]

Re-draws the held-out excerpt queries of ``speechvault eval-identify --excerpts N --seed S``
and, for every condition that adds noise, prints per length and source the SNR the queries
really have (10 log10 of the clean excerpt's mean power over the added noise's), so a
condition's name ("babble_10dB") can be checked against the queries it made. A diagnostic
(issue 12), not a figure of docs/results.
"""

import collections
import dataclasses
import sys

import numpy as np

from model_export import excerpt_eval as ee


def query_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR (dB) of ``noisy`` against the ``clean`` excerpt it was made from."""
    c = clean.astype(np.float64)
    return float(10.0 * np.log10(np.mean(c ** 2) / np.mean((noisy.astype(np.float64) - c) ** 2)))


def main(per_recording: int, seed: int) -> None:
    cfg = dataclasses.replace(ee.EvalConfig.full(), excerpts_per_recording=per_recording)
    stored, _outside, drawn = ee.held_out_excerpts(cfg, ee.default_fsdd_dir(), seed,
                                                   ee.babble_talkers(cfg, seed))
    recs = {r.name: r for r in stored}
    noisy = [n for n, c in ee.CONDITIONS.items() if "noise" in n or "babble" in n]
    snr = collections.defaultdict(list)
    for q in drawn:
        if q.condition in noisy:
            clean = ee._cut(recs[q.source], q.start, q.length, ee.CONDITIONS["clean"], 0, ())
            snr[(q.condition, q.length, q.origin)].append(query_snr(clean, q.make()))
    print("condition | length | source | n | SNR min / p5 / median / max (dB) | under 5 dB")
    for (cond, length, origin), v in sorted(snr.items()):
        a = np.asarray(v)
        print(f"{cond} | {length:g} s | {origin} | {a.size} | {a.min():.1f} / "
              f"{np.percentile(a, 5):.1f} / {np.median(a):.1f} / {a.max():.1f} | {(a < 5).sum()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
