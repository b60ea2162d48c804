"""eval-identify with the candidate stage a large vault uses (16-bit keys), on the small test vault.

    python tools/excerpt_eval_keys.py OUT_DIR [KEY_BANDS]   (writes OUT_DIR/excerpts.md: not docs/results)

The evaluation's vault holds ~8,000 index rows, below ``ExcerptRule.scan_below_rows``, so its
search scans every pair. A vault of >= 20,000 rows finds candidates by shared 16-bit slices
instead; this runs the same evaluation with that stage forced, to measure what the faster stage
costs in recall. ``KEY_BANDS`` caps the slices (default: the model's rule, whose probe budget
``key_probes`` gives a long query fewer slices than a short one).
"""

import dataclasses
import sys

from hashing.encoder import Encoder
from model_export.excerpt_eval import run_excerpt_eval

if __name__ == "__main__":
    enc = Encoder.default()
    rule = {**enc._fp.rule, "candidates": "keys"}
    if len(sys.argv) > 2:
        rule["key_bands"] = int(sys.argv[2])
    enc._fp = dataclasses.replace(enc._fp, rule=rule)
    run_excerpt_eval(sys.argv[1], encoder=enc,
                     command="python tools/excerpt_eval_keys.py " + " ".join(sys.argv[1:]))
