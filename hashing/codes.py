"""Binary codes of the deep hashing scheme (Sec. IV-D and IV-F of the paper).

* ``hash_bits``  - eq. 11-12: the semantic hash h2; bit i = 1 where tanh(omega(x))_i >= mean of
  that vector (the paper's "I_mean"), else 0.
* ``one_hot``    - eq. 13-15: the category hash h1, one-hot of argmax(softmax), C bits.
* ``pack_words`` / ``unpack_words`` - bits <-> unsigned 64-bit words (a vault stores them two
  by two as 128-bit words since format 6, ``store.schema``).
* ``ber``        - eq. 16: the normalized Hamming distance (bit error rate) D = popcount(a^b)/K.

Word layout (fixed, part of the stored format): bit ``i`` of a K-bit code goes to word
``i // 64`` at bit position ``i % 64`` (value ``1 << (i % 64)``, i.e. little-endian inside the
word). A code has ``W = ceil(K / 64)`` words; the padding bits of the last word are 0.

numpy only; no TensorFlow.
"""

from __future__ import annotations

import numpy as np

from speechvault.errors import InvalidInputError

__all__ = [
    "hash_bits",
    "one_hot",
    "n_words",
    "pack_words",
    "unpack_words",
    "popcount64",
    "hamming",
    "ber",
]

_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def n_words(K: int) -> int:
    """Number of uint64 words holding a K-bit code: ceil(K / 64)."""
    K = int(K)
    if K <= 0:
        raise InvalidInputError(f"code length K must be positive, got {K}")
    return (K + 63) // 64


def _as_2d(a: np.ndarray, name: str) -> tuple[np.ndarray, bool]:
    a = np.asarray(a)
    if a.ndim == 1:
        return a[None, :], True
    if a.ndim != 2:
        raise InvalidInputError(f"{name} must be a vector or an (n, K) matrix, got shape {a.shape}")
    return a, False


def hash_bits(tanh_out: np.ndarray) -> np.ndarray:
    """Eq. 11-12: semantic hash bits of hash-layer outputs.

    ``tanh_out``: (K,) or (n, K) real values (the tanh hash layer). Returns uint8 bits of the same
    shape: 1 where the value is >= the mean of its own vector, else 0.
    """
    v, squeeze = _as_2d(np.asarray(tanh_out, dtype=np.float64), "tanh_out")
    if v.shape[1] == 0:
        raise InvalidInputError("tanh_out has no hash values (K = 0)")
    if not np.all(np.isfinite(v)):
        raise InvalidInputError("tanh_out contains NaN or inf")
    bits = (v >= v.mean(axis=1, keepdims=True)).astype(np.uint8)
    return bits[0] if squeeze else bits


def one_hot(category, C: int) -> np.ndarray:
    """Eq. 13-15: the category hash h1 as uint8 one-hot rows (C bits) of integer categories."""
    C = int(C)
    cat = np.asarray(category, dtype=np.int64)
    if C <= 0:
        raise InvalidInputError(f"number of categories C must be positive, got {C}")
    if np.any(cat < 0) or np.any(cat >= C):
        raise InvalidInputError(f"category out of range 0..{C - 1}")
    out = np.zeros(cat.shape + (C,), dtype=np.uint8)
    np.put_along_axis(out, cat[..., None], 1, axis=-1)
    return out


def pack_words(bits: np.ndarray) -> np.ndarray:
    """(n, K) or (K,) 0/1 bits -> (n, ceil(K/64)) or (W,) uint64; bit i -> word i//64, bit i%64."""
    b, squeeze = _as_2d(bits, "bits")
    n, K = b.shape
    W = n_words(K)
    if b.size and not np.all((b == 0) | (b == 1)):
        raise InvalidInputError("bits must be 0 or 1")
    padded = np.zeros((n, W * 64), dtype=np.uint8)
    padded[:, :K] = b
    # little bit order inside each byte, bytes little-endian inside each word -> bit i at 1 << i%64
    by = np.packbits(padded, axis=1, bitorder="little")  # (n, W*8)
    words = by.view("<u8").astype(np.uint64, copy=False).reshape(n, W)
    return words[0] if squeeze else words


def unpack_words(words: np.ndarray, K: int) -> np.ndarray:
    """Inverse of :func:`pack_words`: (n, W) or (W,) uint64 -> (n, K) or (K,) uint8 bits."""
    w, squeeze = _as_2d(words, "words")
    W = n_words(K)
    if w.shape[1] != W:
        raise InvalidInputError(f"a {K}-bit code has {W} words, got {w.shape[1]}")
    w = np.ascontiguousarray(w.astype(np.uint64, copy=False)).astype("<u8", copy=False)
    by = w.view(np.uint8).reshape(w.shape[0], W * 8)
    bits = np.unpackbits(by, axis=1, bitorder="little")[:, :K]
    return bits[0] if squeeze else bits


def popcount64(x: np.ndarray) -> np.ndarray:
    """Per-element popcount of a uint64 array (int64 result, same shape)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.uint64)).astype("<u8", copy=False)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).astype(np.int64)
    return _BYTE_POPCOUNT[x.view(np.uint8).reshape(x.shape + (8,))].sum(axis=-1, dtype=np.int64)


def hamming(a_words: np.ndarray, b_words: np.ndarray) -> np.ndarray:
    """Hamming distance (number of differing bits) of packed codes; broadcasts over leading axes.

    ``a_words`` (..., W) and ``b_words`` (..., W) uint64 -> (...) int64.
    """
    a = np.asarray(a_words, dtype=np.uint64)
    b = np.asarray(b_words, dtype=np.uint64)
    if a.shape[-1:] != b.shape[-1:]:
        raise InvalidInputError(f"codes have different word counts: {a.shape[-1:]} vs {b.shape[-1:]}")
    return popcount64(np.bitwise_xor(a, b)).sum(axis=-1)


def ber(a_words: np.ndarray, b_words: np.ndarray, K: int) -> np.ndarray | float:
    """Eq. 16: normalized Hamming distance D = (1/K) * sum_i a(i) xor b(i) of packed codes.

    Broadcasts: a (W,) query against b (m, W) library gives (m,) distances. A scalar result is
    returned as a Python float. Padding bits beyond K are assumed 0 (as ``pack_words`` writes them).
    """
    W = n_words(K)
    a = np.asarray(a_words, dtype=np.uint64)
    b = np.asarray(b_words, dtype=np.uint64)
    if a.shape[-1] != W or b.shape[-1] != W:
        raise InvalidInputError(f"a {K}-bit code has {W} words, got {a.shape[-1]} and {b.shape[-1]}")
    d = hamming(a, b) / float(K)
    if np.ndim(d) == 0:
        return float(d)
    return d
