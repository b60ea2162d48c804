"""Would warping a query's Mel axis at test time raise h1 on a voice never heard (issue 16)?

    .venv/bin/python docs/measure_h1_warps.py hashing/models/default.tflite --held-out theo \
        --cache-dir DIR

Vocal-tract-length normalisation in ASR warps the frequency axis of a new speaker's features
towards the training speakers'. Here each held-out clip's model window is warped on its Mel
axis by VTLP factors alpha (``model_export.test_time_warp``: the training's own warp), and h1 is read (a) per alpha, (b) from the mean of the posteriors over several alphas
(test-time augmentation), (c) from the single alpha whose posterior is most confident (VTLN's
maximum-likelihood warp, the classifier standing in for the acoustic model). Also prints the
confusion matrix of the unwarped h1 (rows: true digit). Windows come from the LOSO corpus
cache (``model_export.loso.build_corpus``: built on first use, ~10 min).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALPHAS = (0.82, 0.86, 0.9, 0.94, 0.97, 1.0, 1.03, 1.06, 1.1, 1.14, 1.18)
SETS = ((0.9, 1.0, 1.1), (0.94, 1.0, 1.06), (0.86, 0.94, 1.0, 1.06, 1.14), ALPHAS)


def main() -> None:
    from hashing.features import FeatureSpec
    from model_export.loso import _tflite_outputs, build_corpus
    from model_export.test_time_warp import warped_h1, warped_posteriors

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--held-out", default="theo")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/fsdd"))
    ap.add_argument("--cache-dir", type=Path, required=True)
    a = ap.parse_args()
    spec = FeatureSpec(input_mode="native")
    corpus = build_corpus(a.data, spec, a.cache_dir, log=lambda *x: None)
    run = _tflite_outputs(a.model)
    clips = np.flatnonzero(corpus.speakers == a.held_out)
    X, pos = corpus.clean.select(clips)
    truth = corpus.labels[clips]

    # a clip's windows vote, as the LOSO judge does (model_export.test_time_warp)
    per = dict(zip(ALPHAS, warped_posteriors(run, X, pos, len(clips), ALPHAS, spec)))
    acc = {al: float(np.mean(p.argmax(1) == truth)) for al, p in per.items()}
    print(f"{a.model.name}, held-out {a.held_out}: {len(clips)} clips")
    print("| alpha | " + " | ".join(f"{al:g}" for al in ALPHAS) + " |")
    print("|---" * (len(ALPHAS) + 1) + "|")
    print("| h1 | " + " | ".join(f"{acc[al]:.3f}" for al in ALPHAS) + " |")
    print()
    print("| alphas | mean posterior | most confident alpha |")
    print("|---|---|---|")
    for group in SETS:
        h1 = warped_h1(np.stack([per[al] for al in group]))
        print(f"| {', '.join(f'{al:g}' for al in group)} | {np.mean(h1['mean'] == truth):.3f} | "
              f"{np.mean(h1['confident'] == truth):.3f} |")
    cm = np.zeros((10, 10), int)
    np.add.at(cm, (truth, per[1.0].argmax(1)), 1)
    print("\nconfusion (rows: true digit, columns: h1), alpha 1:")
    print(cm)


if __name__ == "__main__":
    main()
