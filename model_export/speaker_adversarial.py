"""Speaker-invariant training: a speaker classifier on the code layer, through gradient reversal
(issue 16: the category stage on voices it has never heard).

Why: h1 is read off the K-unit code layer (``models.build_model``: probs = softmax(Dense(h2))).
Trained on five FSDD speakers and a few dozen espeak-ng voices, that layer can learn who is
speaking as a shortcut to the word (one speaker's "two" against another's "three"); a new voice
then lands where the shortcut points. Adversarial speaker-invariant training (Meng et al.,
"Speaker-Invariant Training via Adversarial Learning", ICASSP 2018; the gradient reversal layer
of Ganin & Lempitsky, ICML 2015) adds a speaker classifier on that layer whose gradient reaches
the network *reversed*: the classifier learns to tell the speakers apart, the network learns a
code layer from which it cannot. The classifier is a training-time head only: the exported
model is the paper's CRNN with the code h1 || h2 unchanged.

The reversal weight rises over the training as Ganin & Lempitsky schedule it,
``weight * (2 / (1 + exp(-10 p)) - 1)`` at progress p in [0, 1]: the digit classifier first
learns what to encode before the adversary starts to remove the speaker from it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from speechvault.errors import InvalidInputError

__all__ = ["GradientReversal", "reversal_weight", "training_speakers", "adversarial_trainer",
           "SPEAKER_HEAD", "SPEAKER_HIDDEN"]

#: the speaker classifier's output layer (a training-only head)
SPEAKER_HEAD = "speaker"
#: units of its hidden layer: a classifier with some capacity, so that what it cannot find in
#: the code layer is not simply beyond a linear read-out
SPEAKER_HIDDEN = 128


def reversal_weight(weight: float, progress: float) -> float:
    """Ganin & Lempitsky's schedule: 0 at the start, ``weight`` (almost) at the end."""
    p = min(1.0, max(0.0, float(progress)))
    return float(weight) * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


def _reversal_layer():
    import keras
    import tensorflow as tf

    class GradientReversal(keras.layers.Layer):
        """Identity forward; the gradient times ``-weight`` backward. ``weight`` is a
        non-trainable variable so that a schedule can change it between epochs."""

        def __init__(self, weight: float = 0.0, **kw) -> None:
            super().__init__(**kw)
            self.weight = keras.Variable(float(weight), trainable=False, name="reversal_weight")

        def call(self, x):
            w = tf.convert_to_tensor(self.weight)

            @tf.custom_gradient
            def reverse(v):
                def grad(dy):
                    return -w * dy
                return tf.identity(v), grad

            return reverse(x)

    return GradientReversal


def GradientReversal(weight: float = 0.0, **kw):  # noqa: N802 - a layer, named as one
    """A gradient reversal layer (TensorFlow backend)."""
    return _reversal_layer()(weight, **kw)


def adversarial_trainer(model, n_speakers: int, weight: float = 0.0):
    """(trainer, reversal layer): a Keras model from ``model``'s input to [its probs, the
    speaker probs of a classifier on the reversed code layer]. Training the trainer trains
    ``model``'s weights (shared layers); ``model`` itself stays the paper's two outputs."""
    import keras
    from keras import layers

    from model_export.models import HASH_LAYER, PROBS_LAYER

    code = model.get_layer(HASH_LAYER).output
    grl = GradientReversal(weight, name="gradient_reversal")
    s = layers.Dense(SPEAKER_HIDDEN, activation="relu", name="speaker_hidden")(grl(code))
    s = layers.Dense(int(n_speakers), activation="softmax", name=SPEAKER_HEAD)(s)
    probs = model.get_layer(PROBS_LAYER).output
    return keras.Model(model.inputs, {PROBS_LAYER: probs, SPEAKER_HEAD: s}), grl


def training_speakers(corpus: Any, recipe: str, train_idx: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each training window's speaker, aligned with ``loso.training_set(corpus, recipe,
    train_idx)``: FSDD windows by their clip's speaker, espeak-ng windows by their voice
    (``espeak_digits.espeak_digit_clips`` makes voices x 10 digits x takes clips, voice-major).
    Returns (speaker index per window, speaker names)."""
    from model_export.espeak_digits import ESPEAK_EXTRA_FIT_VOICES
    from model_export.loso import fsdd_banks

    parts = []
    for b in fsdd_banks(corpus, recipe):
        _, pos = b.select(train_idx)
        parts.append(np.array([f"fsdd:{s}" for s in corpus.speakers[train_idx][pos]], dtype=object))
    if recipe == "diverse":
        # ``corpus.esp_fit_voices``: the FIT voices, then the EXTRA ones when they were added
        n_extra = len(ESPEAK_EXTRA_FIT_VOICES) if corpus.esp_extra is not None else 0
        fit_voices = list(corpus.esp_fit_voices)[:len(corpus.esp_fit_voices) - n_extra]
        voiced = [(corpus.esp_fit, corpus.esp_fit_labels, fit_voices),
                  (corpus.esp_fit_aug, corpus.esp_fit_labels, fit_voices)]
        if n_extra:
            extra = list(corpus.esp_fit_voices)[-n_extra:]
            voiced += [(corpus.esp_extra, corpus.esp_extra_labels, extra),
                       (corpus.esp_extra_aug, corpus.esp_extra_labels, extra)]
        for b, labels, voices in voiced:
            if not voices or len(labels) % len(voices):
                raise InvalidInputError(f"{len(labels)} espeak-ng clips do not divide into "
                                        f"{len(voices)} voices")
            per_voice = len(labels) // len(voices)
            parts.append(np.array([f"espeak:{voices[int(o) // per_voice]}" for o in b.owner],
                                  dtype=object))
    who = np.concatenate(parts)
    names = sorted(set(who.tolist()))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[w] for w in who], np.int64), names
