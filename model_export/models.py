"""The two deep hashing coding models of the paper (Sec. IV-C, Fig. 6), in Keras 3.

Both models are trained end-to-end on classification; the layer before the softmax is the hash
layer (eq. 9-10: omega(x) = W^T f(x) + b, relaxed with tanh). Each model has two outputs:
``hash`` (K tanh values) and ``probs`` (C softmax probabilities), in that order.

The paper's Fig. 6 is only available as text (Sec. IV-C); the layer counts, filter numbers,
kernel and pool sizes, activations and the dropout come from there (``speechvault.paper``). The
order of the layers inside the stack and the LSTM width are not given: ours, documented below.

CNN (Fig. 6a, 6 conv, 4 pool, 2 BN):
    conv32 pool BN | conv32 pool | conv64 pool BN | conv64 pool | conv128 conv128 |
    flatten | Dense(K, tanh) "hash" | Dense(C, softmax) "probs"
  (ours: every one of the first four convolutions is followed by a pooling, like the CRNN whose
  settings the paper calls "the same as the CNN". A VGG-like "conv conv pool" order runs the
  second 32-filter convolution at full resolution and costs 3.5x the multiply-adds - 125 M vs
  35 M per 128x32 window - for no measured gain on 2 shared CPU cores.)
CRNN (Fig. 6b, 4 conv, 4 pool, 3 BN, reshape, LSTM, dropout 0.7, flatten):
    conv32 pool BN | conv32 pool BN | conv64 pool BN | conv64 pool |
    permute+reshape to (time, freq*channels) | LSTM(LSTM_UNITS, return_sequences) |
    Dropout(0.7) | flatten | Dense(K, tanh) "hash" | Dense(C, softmax) "probs"

Input modes:
* ``paper``  - (224, 224, 3) as in the paper; "valid" convolutions and pooling (Keras defaults).
* ``native`` - (n_mels, frames, 1) straight from ``hashing.features``; "same" convolutions and
  pooling so that 4 poolings fit a small input such as 128 x 32.

Import requires TensorFlow/Keras (the ``train`` extra). Nothing on the runtime path imports this.
"""

from __future__ import annotations

from typing import Sequence

from speechvault import paper
from speechvault.errors import InvalidInputError

try:
    import keras
    from keras import layers
except ImportError as exc:  # pragma: no cover - depends on the environment
    from speechvault.errors import RuntimeMissingError

    raise RuntimeMissingError(
        "training needs TensorFlow and Keras: pip install 'speechvault[train]'") from exc

__all__ = ["ARCHS", "INPUT_MODES", "LSTM_UNITS", "build_model", "clone_for_export",
           "HASH_LAYER", "PROBS_LAYER"]

ARCHS = ("cnn", "crnn")
INPUT_MODES = ("native", "paper")
LSTM_UNITS = 128          # (ours) not given in the paper
HASH_LAYER = "hash"
PROBS_LAYER = "probs"


def _check(arch: str, input_mode: str, K: int, C: int, input_shape: Sequence[int]) -> None:
    if arch not in ARCHS:
        raise InvalidInputError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if input_mode not in INPUT_MODES:
        raise InvalidInputError(f"unknown input mode {input_mode!r}; choose native or paper")
    if int(K) <= 0 or int(C) < 2:
        raise InvalidInputError(f"need K > 0 and C >= 2, got K={K}, C={C}")
    if len(input_shape) != 3:
        raise InvalidInputError(f"input shape must be (height, width, channels), got {input_shape}")


def _conv(x, filters: int, padding: str, name: str):
    return layers.Conv2D(filters, paper.CONV_KERNEL, padding=padding, activation="tanh",
                         name=name)(x)


def _pool(x, padding: str, name: str):
    return layers.MaxPooling2D(paper.POOL_SIZE, padding=padding, name=name)(x)


def build_model(arch: str, input_shape: Sequence[int], K: int = paper.HASH_BITS_DEFAULT,
                C: int = paper.NUM_CLASSES_PAPER, *, input_mode: str = "native",
                batch_size: int | None = None, name: str | None = None) -> "keras.Model":
    """Build the CNN or CRNN coding model with outputs ``[hash (K tanh), probs (C softmax)]``.

    ``batch_size=1`` gives the fixed-batch model used for TFLite export (the LSTM needs it);
    copy trained weights into it with :func:`clone_for_export`.
    """
    _check(arch, input_mode, K, C, input_shape)
    pad = "same" if input_mode == "native" else "valid"
    inp = keras.Input(shape=tuple(int(d) for d in input_shape), batch_size=batch_size,
                      name="logmel")
    x = inp
    if arch == "cnn":
        f = paper.CNN_FILTERS
        x = _conv(x, f[0], pad, "conv1")
        x = _pool(x, pad, "pool1")
        x = layers.BatchNormalization(name="bn1")(x)
        x = _conv(x, f[1], pad, "conv2")
        x = _pool(x, pad, "pool2")
        x = _conv(x, f[2], pad, "conv3")
        x = _pool(x, pad, "pool3")
        x = layers.BatchNormalization(name="bn2")(x)
        x = _conv(x, f[3], pad, "conv4")
        x = _pool(x, pad, "pool4")
        x = _conv(x, f[4], pad, "conv5")
        x = _conv(x, f[5], pad, "conv6")
        x = layers.Flatten(name="flatten")(x)
    else:
        f = paper.CRNN_FILTERS
        for i in range(4):
            x = _conv(x, f[i], pad, f"conv{i + 1}")
            x = _pool(x, pad, f"pool{i + 1}")
            if i < 3:
                x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        h, w, c = (int(d) for d in x.shape[1:])
        if h <= 0 or w <= 0:
            raise InvalidInputError(f"input {tuple(input_shape)} is too small for 4 poolings")
        # (freq, time, ch) -> (time, freq*ch): the LSTM runs over time frames
        x = layers.Permute((2, 1, 3), name="to_time_major")(x)
        x = layers.Reshape((w, h * c), name="reshape")(x)
        # unroll: the sequence is short (a few frames) and an unrolled LSTM converts to plain
        # TFLite ops with no while-loop / select-TF-ops.
        x = layers.LSTM(LSTM_UNITS, return_sequences=True, unroll=True, name="lstm")(x)
        x = layers.Dropout(paper.CRNN_DROPOUT, name="dropout")(x)
        x = layers.Flatten(name="flatten")(x)
    hash_out = layers.Dense(int(K), activation="tanh", name=HASH_LAYER)(x)
    probs = layers.Dense(int(C), activation="softmax", name=PROBS_LAYER)(hash_out)
    return keras.Model(inp, [hash_out, probs], name=name or f"{arch}_{input_mode}_k{K}")


def clone_for_export(model: "keras.Model", arch: str, input_shape: Sequence[int], K: int, C: int,
                     *, input_mode: str = "native") -> "keras.Model":
    """A batch-size-1 copy of ``model`` with the same weights (for TFLite conversion)."""
    m1 = build_model(arch, input_shape, K, C, input_mode=input_mode, batch_size=1,
                     name=model.name + "_b1")
    m1.set_weights(model.get_weights())
    return m1
