"""eval-identify with the candidate stage a large vault uses (16-bit keys), on the small test vault.

    python tools/excerpt_eval_keys.py OUT_DIR [KEY_BANDS]   (writes OUT_DIR/excerpts.md: not docs/results)

The evaluation's vault holds ~8,000 index rows, below ``ExcerptRule.scan_below_rows``, so its
search scans every pair. A vault of >= 20,000 rows finds candidates by shared 16-bit slices
instead; this runs the same evaluation with that stage forced (and ``KEY_BANDS`` slices, default
12), to measure what the faster stage costs in recall.
"""

import dataclasses
import sys

from hashing.encoder import Encoder
from model_export.excerpt_eval import run_excerpt_eval

if __name__ == "__main__":
    bands = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    enc = Encoder.default()
    enc._fp = dataclasses.replace(enc._fp, rule={**enc._fp.rule, "candidates": "keys",
                                                  "key_bands": bands})
    run_excerpt_eval(sys.argv[1], encoder=enc,
                     command=f"python tools/excerpt_eval_keys.py {sys.argv[1]} {bands}")
