"""Training variants measured one at a time by the leave-one-speaker-out run (issue 16 ablation).

A variant changes one thing on top of a recipe of ``model_export.loso`` and names the row it
produces (``diverse+cmvn``, ``diverse+ls0.1+mix0.2``), so that each lever's effect on held-out
speakers is read off against the plain recipe under the same folds, epochs and seed:

* ``band_norm`` - per-Mel-band normalisation of every window (``FeatureSpec.band_norm``). The
  cached window banks hold the window-normalised log-Mel; per-band mean (and std) removal over
  the real frames is applied to them here exactly as ``hashing.features`` does it on audio (the
  global mean/std of a window cancels out), so no audio has to be decoded again;
* ``label_smoothing`` - soft targets (1 - e on the digit, e spread over all ten);
* ``mixup`` - each training window mixed with another of the batch, weight ~ Beta(a, a), and
  the targets alike (Zhang et al. 2018), a common regulariser for small keyword-spotting sets.

Kept out of ``loso.py`` (which runs folds and writes the report) so that the report module does
not grow with every lever.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from speechvault.errors import InvalidInputError

__all__ = ["Variant", "band_normalise_bank", "soft_batches"]


@dataclasses.dataclass(frozen=True)
class Variant:
    band_norm: str = "none"
    label_smoothing: float = 0.0
    mixup: float = 0.0

    def __post_init__(self) -> None:
        from hashing.features import BAND_NORMS

        if self.band_norm not in BAND_NORMS:
            raise InvalidInputError(f"band_norm must be one of {', '.join(BAND_NORMS)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InvalidInputError("label smoothing must be in [0, 1)")
        if self.mixup < 0.0:
            raise InvalidInputError("mixup alpha must be >= 0")

    @property
    def soft(self) -> bool:
        """True when training needs one-hot (soft) targets."""
        return self.label_smoothing > 0 or self.mixup > 0

    def label(self, recipe: str) -> str:
        """Row name: the recipe plus each lever that is on."""
        parts = [recipe]
        if self.band_norm != "none":
            parts.append(self.band_norm)
        if self.label_smoothing:
            parts.append(f"ls{self.label_smoothing:g}")
        if self.mixup:
            parts.append(f"mix{self.mixup:g}")
        return "+".join(parts)


def band_normalise_bank(X: np.ndarray, mode: str, pad_value: float = 0.0,
                        chunk: int = 4096) -> np.ndarray:
    """``hashing.features.band_normalise`` applied to cached windows (n, n_mels, frames, 1),
    over each window's real frames only: padded frames (a column equal to ``pad_value`` in
    every band) stay ``pad_value``. Returns a new array of X's dtype."""
    from hashing.features import band_normalise

    if mode == "none":
        return X
    out = np.empty_like(X)
    for i in range(0, len(X), chunk):
        xb = np.asarray(X[i : i + chunk, :, :, 0], np.float64)
        res = np.full_like(xb, pad_value)
        real = ~np.all(xb == pad_value, axis=1)  # (n, frames)
        for j in range(len(xb)):
            cols = np.flatnonzero(real[j])
            if cols.size:
                res[j][:, cols] = band_normalise(xb[j][:, cols], mode)
        out[i : i + chunk, :, :, 0] = res.astype(X.dtype)
    return out


def soft_batches(base, n_classes: int, variant: Variant, train: bool):
    """Wrap a ``train._Batches`` so that it yields one-hot targets, smoothed and (training
    only) mixed up. The wrapper keeps ``on_epoch_end`` (the base reshuffles there)."""
    import keras

    class _Soft(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(int(base.rng.integers(1 << 31)))

        def __len__(self) -> int:
            return len(base)

        def __getitem__(self, i: int):
            xb, yb = base[i]
            e = variant.label_smoothing
            t = np.full((len(yb), n_classes), e / n_classes, np.float32)
            t[np.arange(len(yb)), yb] += 1.0 - e
            if train and variant.mixup > 0 and len(yb) > 1:
                lam = self.rng.beta(variant.mixup, variant.mixup, size=len(yb)).astype(np.float32)
                perm = self.rng.permutation(len(yb))
                xb = lam[:, None, None, None] * xb + (1 - lam[:, None, None, None]) * xb[perm]
                t = lam[:, None] * t + (1 - lam[:, None]) * t[perm]
            return xb, t

        def on_epoch_end(self) -> None:
            base.on_epoch_end()

    return _Soft()
