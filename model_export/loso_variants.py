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
  the targets alike (Zhang et al. 2018), a common regulariser for small keyword-spotting sets;
* ``mel_warp`` - VTLP on the Mel axis of each training window, alpha drawn anew per batch in
  1 -+ mel_warp (``augment.mel_warp_windows``): new vocal tracts every epoch at no decoding cost;
* ``lr_decay`` - "cosine": the learning rate decays over the epoch budget (``learning_rate``);
* ``extra_takes`` - the diverse recipe also trains on ``espeak_digits.ESPEAK_EXTRA_FIT_VOICES``
  (that many takes per digit and voice, clean + 1 chained copy; ``loso.build_corpus``);
* ``speaker_adversarial`` - the weight of a speaker classifier's reversed gradient on the code
  layer (``model_export.speaker_adversarial``: speaker-invariant training, Meng et al. 2018).

Kept out of ``loso.py`` (which runs folds and writes the report) so that the report module does
not grow with every lever.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from speechvault.errors import InvalidInputError

__all__ = ["Variant", "LR_DECAYS", "learning_rate", "optimizer_text", "band_normalise_bank",
           "soft_batches"]

#: "none": Adam at 1e-3 throughout (the shipped recipe); "cosine": 1e-3 decayed along a half
#: cosine to 2 % of it over the epoch budget (Loshchilov & Hutter 2017, without restarts).
LR_DECAYS = ("none", "cosine")
#: where a decayed rate ends, as a fraction of the base rate
LR_FLOOR = 0.02


@dataclasses.dataclass(frozen=True)
class Variant:
    band_norm: str = "none"
    label_smoothing: float = 0.0
    mixup: float = 0.0
    mel_warp: float = 0.0
    extra_takes: int = 0
    lr_decay: str = "none"
    speaker_adversarial: float = 0.0

    def __post_init__(self) -> None:
        from hashing.features import BAND_NORMS

        if self.band_norm not in BAND_NORMS:
            raise InvalidInputError(f"band_norm must be one of {', '.join(BAND_NORMS)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InvalidInputError("label smoothing must be in [0, 1)")
        if self.mixup < 0.0:
            raise InvalidInputError("mixup alpha must be >= 0")
        if not 0.0 <= self.mel_warp <= 0.3:
            raise InvalidInputError("mel warp must be in [0, 0.3] (alpha drawn in 1 -+ it)")
        if self.extra_takes < 0:
            raise InvalidInputError("extra voice takes must be >= 0")
        if self.lr_decay not in LR_DECAYS:
            raise InvalidInputError(f"lr decay must be one of {', '.join(LR_DECAYS)}")
        if not 0.0 <= self.speaker_adversarial <= 10.0:
            raise InvalidInputError("the speaker-adversarial weight must be in [0, 10]")

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
        if self.mel_warp:
            parts.append(f"warp{self.mel_warp:g}")
        if self.extra_takes:
            parts.append(f"xvoices{self.extra_takes}")
        if self.lr_decay != "none":
            parts.append(self.lr_decay)
        if self.speaker_adversarial:
            parts.append(f"sat{self.speaker_adversarial:g}")
        return "+".join(parts)

    @property
    def per_batch(self) -> bool:
        """True when training batches need the ``soft_batches`` wrapper."""
        return self.soft or self.mel_warp > 0 or self.speaker_adversarial > 0


def learning_rate(variant: Variant, steps: int, base: float = 1e-3):
    """Adam's learning rate for a training of ``steps`` batches: a constant, or a Keras
    schedule. Why decay: at a constant 1e-3 the held-out speaker's h1 swings by up to +-0.1
    from one epoch to the next (``loso --watch-held-out``), so which epoch the validation loss
    happens to keep decides much of a fold's figure; a decayed rate lets the weights settle."""
    if variant.lr_decay == "none":
        return base
    import keras

    return keras.optimizers.schedules.CosineDecay(base, decay_steps=max(1, int(steps)),
                                                  alpha=LR_FLOOR)


def optimizer_text(variant: Variant, base: float = 1e-3) -> str:
    """How an exported model's metadata names the optimiser of ``learning_rate``: the schedule
    is part of the recipe (a cosine-decayed model is not an Adam(lr=0.001) model)."""
    if variant.lr_decay == "none":
        return f"Adam(lr={base:g})"
    return f"Adam(lr={base:g}, {variant.lr_decay} decay to {LR_FLOOR:.0%} over the epoch budget)"


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


def soft_batches(base, n_classes: int, variant: Variant, train: bool, spec=None,
                 n_speakers: int = 0):
    """Wrap a ``train._Batches`` so that (training only) every window's Mel axis is warped by
    a fresh alpha in 1 -+ ``variant.mel_warp`` (``augment.mel_warp_windows``, windows of
    ``spec``) and, when ``variant.soft``, it yields one-hot targets, smoothed and (training
    only) mixed up; integer labels otherwise. The wrapper keeps ``on_epoch_end`` (the base
    reshuffles there).

    ``n_speakers`` > 0 (speaker-adversarial training): the base's labels are ``digit +
    n_classes * speaker`` and the targets a dict of one-hot digits (smoothed) and one-hot
    speakers, mixed up with the same weights (``speaker_adversarial.adversarial_trainer``'s
    outputs)."""
    from model_export.augment import mel_warp_windows
    import keras

    class _Soft(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(int(base.rng.integers(1 << 31)))

        def __len__(self) -> int:
            return len(base)

        def __getitem__(self, i: int):
            xb, yb = base[i]
            sb = None
            if n_speakers:
                yb, sb = yb % n_classes, yb // n_classes
            if train and variant.mel_warp > 0:
                w = variant.mel_warp
                xb = mel_warp_windows(xb, self.rng.uniform(1 - w, 1 + w, size=len(yb)), spec)
            if train and not variant.soft and sb is None:  # warp only: integer labels as before
                return xb, yb
            e = variant.label_smoothing
            t = np.full((len(yb), n_classes), e / n_classes, np.float32)
            t[np.arange(len(yb)), yb] += 1.0 - e
            ts = None
            if sb is not None:
                ts = np.zeros((len(sb), int(n_speakers)), np.float32)
                ts[np.arange(len(sb)), sb] = 1.0
            if train and variant.mixup > 0 and len(yb) > 1:
                lam = self.rng.beta(variant.mixup, variant.mixup, size=len(yb)).astype(np.float32)
                perm = self.rng.permutation(len(yb))
                xb = lam[:, None, None, None] * xb + (1 - lam[:, None, None, None]) * xb[perm]
                t = lam[:, None] * t + (1 - lam[:, None]) * t[perm]
                if ts is not None:
                    ts = lam[:, None] * ts + (1 - lam[:, None]) * ts[perm]
            if ts is not None:
                from model_export.models import PROBS_LAYER
                from model_export.speaker_adversarial import SPEAKER_HEAD

                return xb, {PROBS_LAYER: t, SPEAKER_HEAD: ts}
            return xb, t

        def on_epoch_end(self) -> None:
            base.on_epoch_end()

    return _Soft()
