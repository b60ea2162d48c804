"""Test doubles for the store tests: a deterministic FakeEncoder with the ``hashing.encoder.Encoder``
interface (``meta``, ``sha256``, ``tflite_bytes``, ``encode_audio``, ``encode_file``) and small
WAV generators. No TFLite runtime needed.

The fake's code of a window: a coarse log spectrum (64 bands of |rfft|), mean-removed (so gain
changes do not move it), projected by a fixed random matrix; h2 = projection >= its mean (the
paper's eq. 11-12 rule), category = argmax of a second fixed projection, probs its softmax.
Similar audio -> similar bits; a gain change -> the same bits.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from hashing.codes import hash_bits, pack_words
from hashing.model_meta import ModelMeta

SR = 16_000


@dataclass
class FakeWindowCodes:
    category: np.ndarray
    probs: np.ndarray
    bits: np.ndarray
    words: np.ndarray
    K: int
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    timings: dict = field(default_factory=dict)

    @property
    def n_windows(self) -> int:
        return int(self.category.shape[0])


class FakeEncoder:
    N_BANDS = 64

    def __init__(self, K: int = 384, C: int = 4, seed: int = 7, clip_seconds: float = 0.5,
                 class_names: list[str] | None = None) -> None:
        self.K, self.C, self.seed = int(K), int(C), int(seed)
        self.clip = int(round(clip_seconds * SR))
        rng = np.random.default_rng(seed)
        self._proj = rng.standard_normal((self.N_BANDS, self.K)).astype(np.float64)
        self._cproj = rng.standard_normal((self.N_BANDS, self.C)).astype(np.float64)
        self.tflite_bytes = b"FAKE-TFLITE|" + f"K={K}|C={C}|seed={seed}".encode()
        self.sha256 = hashlib.sha256(self.tflite_bytes).hexdigest()
        names = class_names or [f"class{i}" for i in range(self.C)]
        self.meta = ModelMeta(
            name=f"fake-k{K}-s{seed}", arch="cnn", K=self.K, C=self.C, class_names=list(names),
            features={"sample_rate": SR, "clip_seconds": clip_seconds, "fake": True},
            input_shape=[self.N_BANDS], tau=0.26, tflite_sha256=self.sha256).validate()

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.class_names)

    def _features(self, y: np.ndarray) -> np.ndarray:
        n = max(1, math.ceil(len(y) / self.clip))
        pad = np.zeros(n * self.clip, np.float64)
        pad[: len(y)] = y
        wins = pad.reshape(n, self.clip)
        spec = np.abs(np.fft.rfft(wins, axis=1))
        bands = np.array_split(spec, self.N_BANDS, axis=1)
        e = np.stack([b.sum(axis=1) for b in bands], axis=1) + 1e-6
        f = np.log(e)
        return f - f.mean(axis=1, keepdims=True)

    def encode_audio(self, y: np.ndarray) -> FakeWindowCodes:
        f = self._features(np.asarray(y, dtype=np.float64))
        h = np.tanh(f @ self._proj / 8.0)
        bits = hash_bits(h)
        logits = f @ self._cproj
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return FakeWindowCodes(category=np.argmax(p, axis=1).astype(np.int64),
                               probs=p.astype(np.float32), bits=bits, words=pack_words(bits),
                               K=self.K, starts=np.arange(len(f)) * self.clip / SR,
                               timings={"decode": 0.0, "features": 0.0, "inference": 0.0})

    def encode_file(self, source, *, max_seconds: float | None = None) -> FakeWindowCodes:
        from hashing.audio import DEFAULT_MAX_SECONDS, load_audio

        return self.encode_audio(load_audio(
            source, SR, max_seconds=DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds))


def tone_mix(seed: int, seconds: float = 0.3, sr: int = SR) -> np.ndarray:
    """A distinct, deterministic test signal: a few random tones plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for _ in range(4):
        y += rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * rng.uniform(80, 7000) * t + rng.uniform(0, 6))
    y += 0.01 * rng.standard_normal(len(t))
    return (0.8 * y / np.max(np.abs(y))).astype(np.float32)


def wav_bytes(y: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def write_wav(path, y: np.ndarray, sr: int = SR) -> None:
    with open(path, "wb") as f:
        f.write(wav_bytes(y, sr))


def encoder_loader(enc):
    """A stand-in for ``store.vault._load_encoder_class()``: every model the vault would load
    (its stored one, or the shipped default) is ``enc``. Patch it in with
    ``monkeypatch.setattr(store.vault, "_load_encoder_class", encoder_loader(enc))``."""

    class _Loader:
        @classmethod
        def from_bytes(cls, *a, **k):
            return enc

        @classmethod
        def default(cls, *a, **k):
            return enc

    return lambda: _Loader
