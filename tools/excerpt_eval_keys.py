"""eval-identify with the candidate stage a large vault uses (16-bit keys), on the small test vault.

    python tools/excerpt_eval_keys.py OUT_DIR [--key-bands N] [--excerpts N]
    (writes OUT_DIR/excerpts.md: not docs/results)

The evaluation's vault holds ~8,000 index rows, below ``ExcerptRule.scan_below_rows``, so its
search scans every pair. A vault of >= 20,000 rows finds candidates by shared 16-bit slices
instead; this runs the same evaluation with that stage forced, to measure what the faster stage
costs in recall. ``--key-bands`` caps the slices (default: the model's rule; the probe budget,
the rule's ``key_probes`` but at least ``store.excerpt.KEY_PROBES``, gives a long query fewer
slices than a short one); ``--excerpts`` is
``speechvault eval-identify --excerpts`` (excerpts per recording and length).
"""

import argparse
import dataclasses
import sys

from hashing.encoder import Encoder
from model_export.excerpt_eval import run_excerpt_eval

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--key-bands", type=int, default=None)
    p.add_argument("--excerpts", type=int, default=None)
    a = p.parse_args()
    enc = Encoder.default()
    rule = {**enc._fp.rule, "candidates": "keys"}
    if a.key_bands is not None:
        rule["key_bands"] = a.key_bands
    enc._fp = dataclasses.replace(enc._fp, rule=rule)
    run_excerpt_eval(a.out_dir, encoder=enc, excerpts_per_recording=a.excerpts,
                     command="python tools/excerpt_eval_keys.py " + " ".join(sys.argv[1:]))
