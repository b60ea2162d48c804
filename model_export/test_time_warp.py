"""h1 of a clip read from several Mel-axis warps of its windows (issue 16): test-time
vocal-tract-length normalisation for the category stage.

Why: the category model is trained on a handful of real voices; a new voice's formants sit
elsewhere. VTLN in ASR (Lee & Rose 1998) warps a new speaker's frequency axis towards the
training speakers' and keeps the warp the model scores best; here the model's own posterior
stands in for the acoustic likelihood. Two readings of the warped posteriors:

* ``mean``: the category of the mean posterior over the warps (test-time augmentation);
* ``confident``: the category under the single warp whose posterior is most confident.

The warp is the training's (``model_export.augment.mel_warp_windows``, VTLP on the Mel axis).
A measurement, not a product path: every warp costs one more inference per window.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["WARPS", "warped_posteriors", "warped_h1"]

#: the VTLP factors read (1 = the window as it is)
WARPS = (0.86, 0.94, 1.0, 1.06, 1.14)


def warped_posteriors(run: Callable, X: np.ndarray, owner: np.ndarray, n_clips: int,
                      alphas: Sequence[float] = WARPS, spec=None) -> np.ndarray:
    """(len(alphas), n_clips, C) per-clip posteriors: the mean of a clip's windows' softmax,
    for each warp. ``run(X) -> (hash, probs)``; ``owner``: each window's clip 0..n_clips-1;
    ``spec``: the windows' features (default: the native spec with X's number of Mel bands)."""
    from hashing.features import FeatureSpec
    from model_export.augment import mel_warp_windows

    spec = spec if spec is not None else FeatureSpec(input_mode="native", n_mels=int(X.shape[1]))
    out = []
    for a in alphas:
        Xw = X if float(a) == 1.0 else mel_warp_windows(X, np.full(len(X), float(a)), spec)
        _, p = run(Xw)
        sums = np.zeros((int(n_clips), p.shape[1]))
        np.add.at(sums, owner, p)
        out.append(sums / np.maximum(sums.sum(1, keepdims=True), 1e-12))
    return np.stack(out)


def warped_h1(posteriors: np.ndarray) -> dict[str, np.ndarray]:
    """The categories of ``warped_posteriors``' two readings: ``mean`` and ``confident``."""
    pick = posteriors.max(2).argmax(0)
    confident = posteriors[pick, np.arange(posteriors.shape[1])].argmax(1)
    return {"mean": posteriors.mean(0).argmax(1), "confident": confident}
