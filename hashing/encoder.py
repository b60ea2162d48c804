"""Runtime deep hashing encoder: audio -> model windows -> TFLite -> (h1 category, h2 bits).

No TensorFlow on this path. The TFLite interpreter comes from ``ai_edge_litert`` (LiteRT), else
``tflite_runtime``; neither -> ``RuntimeMissingError``.

Per window (``hashing.features.model_windows``) the model gives the tanh hash layer output
(K values) and the softmax probabilities (C values). h1 = argmax(probs) (eq. 13-15), h2 = tanh
output >= its own mean (eq. 11-12), packed to uint64 words (``hashing.codes``). A model with a
fingerprint (``hashing.fingerprint``, ``NAME.fingerprint.npz``) also codes each window for
identification; ``WindowCodes.words`` is then the fingerprint (the code a vault indexes) and
``WindowCodes.hash_words`` h2.

An ``Encoder`` owns one interpreter of batch size 1 and serialises calls with a lock: share one
encoder between threads freely (calls run one at a time), or make one per thread for parallelism.
Encoding runs numpy's BLAS on one thread and LiteRT on ``LITERT_THREADS`` (``hashing.threads``:
more threads are many times slower when another process holds a core).
"""

from __future__ import annotations

import dataclasses
import contextlib
import os
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hashing import codes
from hashing.fingerprint import FINGERPRINT_SUFFIX, load_fingerprint
from hashing.model_meta import ModelMeta, sha256_hex
from hashing.threads import LITERT_THREADS, blas_pinned
from speechvault.errors import InvalidInputError, ModelError, NotFoundError, RuntimeMissingError

__all__ = ["Encoder", "WindowCodes", "load_interpreter_class", "shipped_models", "model_summaries",
           "DEFAULT_MODEL_NAME"]

DEFAULT_MODEL_NAME = "default"


def shipped_models() -> list[str]:
    """Stems of the models in ``hashing/models/`` that have both a ``.tflite`` and a ``.json``."""
    pkg = resources.files("hashing.models")
    names = {p.name[: -len(".tflite")] for p in pkg.iterdir() if p.name.endswith(".tflite")}
    return sorted(n for n in names if pkg.joinpath(n + ".json").is_file())



def model_summaries() -> list[dict[str, Any]]:
    """One row per shipped model from its metadata alone (no interpreter): what
    ``speechvault models`` shows. Accuracy and mAP are the held-out figures the model's
    evaluation stored (``metrics.evaluation``, else ``metrics.test``); None when not measured."""
    pkg = resources.files("hashing.models")
    rows = []
    for name in shipped_models():
        meta = ModelMeta.from_json(pkg.joinpath(name + ".json").read_bytes())
        ev = meta.metrics.get("evaluation") or {}
        acc = ev.get("clip_accuracy", (meta.metrics.get("test") or {}).get("clip_accuracy"))
        rows.append({"name": name, "model": meta.name, "arch": meta.arch, "recipe": meta.recipe,
                     "K": meta.K, "code": meta.code_name, "code_bits": meta.code_bits,
                     "input_mode": meta.features.get("input_mode"),
                     "accuracy": acc, "mAP": ev.get("mAP_h2"), "tau": float(meta.tau),
                     "tflite_bytes": pkg.joinpath(name + ".tflite").stat().st_size,
                     "fingerprint_bytes": (pkg.joinpath(name + FINGERPRINT_SUFFIX).stat().st_size
                                           if meta.fingerprint is not None else 0),
                     "sha256": meta.model_id(meta.tflite_sha256)})
    return rows

def _sidecar_fingerprint(meta: ModelMeta, path) -> bytes | None:
    """The bytes of a model's ``NAME.fingerprint.npz`` (a Path or package resource) when its
    metadata names one and the file is there; None otherwise (the Encoder then says what is
    missing)."""
    return path.read_bytes() if meta.fingerprint is not None and path.is_file() else None


def load_interpreter_class():
    """The TFLite ``Interpreter`` class: LiteRT first, then tflite-runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore

        return Interpreter
    except ImportError:
        pass
    raise RuntimeMissingError(
        "no TFLite runtime found: pip install ai-edge-litert (or tflite-runtime)")


@dataclasses.dataclass
class WindowCodes:
    """The codes of one recording, one row per model window.

    category (n,) int64 - h1 as a class index (argmax of probs)
    probs    (n, C) float32 - softmax output
    bits     (n, K) uint8 - the indexed code's bits: h2, or the fingerprint if the model has one
    words    (n, W) uint64 - ``bits`` packed (bit i -> word i//64, bit i%64), W = ceil(K/64)
    K        length of the indexed code
    hash_words (n, ceil(K_h2/64)) uint64 - h2 packed (the same as ``words`` without fingerprint)
    code     "h2" or "fingerprint": what ``bits``/``words`` are
    starts   (n,) float64 - start of each window in the recording, seconds
    frames   (n,) int64 or None - identification windows: start frame on the windowing's grid
    timings  seconds spent in decode / features / inference
    """

    category: np.ndarray
    probs: np.ndarray
    bits: np.ndarray
    words: np.ndarray
    K: int
    starts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float64))
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    hash_words: np.ndarray | None = None
    code: str = "h2"
    #: identification windows only: start frame of each window on the windowing's frame grid
    #: (``starts`` = frames * hop / rate) and its fraction of active frames
    frames: np.ndarray | None = None
    activity: np.ndarray | None = None

    @property
    def n_windows(self) -> int:
        return int(self.category.shape[0])

    @property
    def C(self) -> int:
        return int(self.probs.shape[1])

    def category_bits(self) -> np.ndarray:
        """h1 as one-hot uint8 rows (n, C), eq. 15."""
        return codes.one_hot(self.category, self.C)

    def to_dict(self) -> dict[str, Any]:
        return {
            "K": int(self.K),
            "n_windows": self.n_windows,
            "category": [int(c) for c in self.category],
            "probs": [[float(p) for p in row] for row in self.probs],
            "code": self.code,
            "words": [[int(w) for w in row] for row in self.words],
            "starts": [float(s) for s in self.starts],
            "timings": {k: float(v) for k, v in self.timings.items()},
        }


class Encoder:
    """A deep hashing coding model (TFLite bytes + ``ModelMeta``) ready to encode audio."""

    def __init__(self, tflite_bytes: bytes, meta: ModelMeta, num_threads: int | None = None,
                 fingerprint: bytes | None = None) -> None:
        if not isinstance(meta, ModelMeta):
            raise InvalidInputError("meta must be a ModelMeta")
        meta.validate()
        if not isinstance(tflite_bytes, (bytes, bytearray, memoryview)) or len(tflite_bytes) == 0:
            raise ModelError("model file is empty")
        self._bytes = bytes(tflite_bytes)
        self._tflite_sha256 = meta.check_sha256(self._bytes)
        self._meta = meta
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise InvalidInputError(f"num_threads must be a positive integer, got {num_threads!r}")
        self._fp_bytes, self._fp = self._load_fingerprint(meta, fingerprint, num_threads)
        self._windowing = None
        if self._fp is not None and self._fp.windowing is not None:
            from hashing.windowing import WindowingSpec

            self._windowing = WindowingSpec.from_dict(self._fp.windowing)
            if self._windowing.sample_rate != meta.feature_spec().sample_rate:
                raise ModelError(f"model {meta.name!r}: its identification windows are at "
                                 f"{self._windowing.sample_rate} Hz, its model at another rate")
        self._sha256 = meta.model_id(self._tflite_sha256)
        self._spec = meta.feature_spec()
        self._num_threads = num_threads
        Interpreter = load_interpreter_class()
        # explicit, so every runtime version uses the measured count (hashing/threads.py)
        kw: dict[str, Any] = {"model_content": self._bytes,
                              "num_threads": int(num_threads or LITERT_THREADS)}
        try:
            with _native_stderr_silenced():
                self._it = Interpreter(**kw)
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load TFLite model {meta.name!r}: "
                             f"{' '.join(str(exc).split())[:200]}") from None
        self._lock = threading.Lock()
        self._check_io()

    @staticmethod
    def _load_fingerprint(meta: ModelMeta, data: bytes | None, num_threads: int | None = None):
        if meta.fingerprint is None:
            if data is not None:
                raise ModelError(f"model {meta.name!r} has no fingerprint in its metadata, "
                                 "but a fingerprint file was given")
            return None, None
        if data is None:
            raise ModelError(f"model {meta.name!r} needs its fingerprint file "
                             f"({meta.name}{FINGERPRINT_SUFFIX})")
        data = bytes(data)
        digest = sha256_hex(data)
        if digest != meta.fingerprint["sha256"]:
            raise ModelError(f"fingerprint file does not match its metadata (sha256 {digest[:12]}... "
                             f"!= {meta.fingerprint['sha256'][:12]}...)")
        fp = load_fingerprint(data, num_threads)
        size = int(np.prod(meta.input_shape))
        if fp.windowing is not None:
            from hashing.windowing import WindowingSpec

            size = WindowingSpec.from_dict(fp.windowing).dim
        if fp.K != int(meta.fingerprint["K"]) or fp.dim != size:
            raise ModelError(f"model {meta.name!r}: fingerprint of {fp.K} bits over {fp.dim} "
                             f"values, the metadata says {meta.fingerprint['K']} bits over {size}")
        return data, fp

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bytes(cls, tflite_bytes: bytes, meta: ModelMeta, num_threads: int | None = None,
                   fingerprint: bytes | None = None) -> "Encoder":
        return cls(tflite_bytes, meta, num_threads=num_threads, fingerprint=fingerprint)

    @classmethod
    def from_files(cls, tflite_path: str | Path, meta_path: str | Path | None = None,
                   num_threads: int | None = None) -> "Encoder":
        """Load ``model.tflite``, its sidecar (default: the same path with ``.json``) and, when the
        metadata names one, its fingerprint (``model.fingerprint.npz``)."""
        p = Path(tflite_path)
        mp = Path(meta_path) if meta_path is not None else p.with_suffix(".json")
        if not p.is_file():
            raise NotFoundError(f"model file not found: {p}")
        if not mp.is_file():
            raise ModelError(f"model metadata not found: {mp}")
        meta = ModelMeta.load(mp)
        fp = _sidecar_fingerprint(meta, p.with_name(p.stem + FINGERPRINT_SUFFIX))
        return cls(p.read_bytes(), meta, num_threads=num_threads, fingerprint=fp)

    @classmethod
    def default(cls, num_threads: int | None = None) -> "Encoder":
        """The model shipped in ``hashing/models/default.tflite`` + ``default.json``."""
        return cls.shipped(DEFAULT_MODEL_NAME, num_threads=num_threads)

    @classmethod
    def shipped(cls, name: str, num_threads: int | None = None) -> "Encoder":
        """A model shipped in ``hashing/models/`` by file stem (``speechvault init --model NAME``)."""
        pkg = resources.files("hashing.models")
        t, j = pkg.joinpath(name + ".tflite"), pkg.joinpath(name + ".json")
        if name not in shipped_models():  # both files present; also refuses paths
            known = ", ".join(shipped_models()) or "none"
            raise NotFoundError(f"no shipped model named {name!r} (shipped: {known})")
        meta = ModelMeta.from_json(j.read_bytes())
        fp = _sidecar_fingerprint(meta, pkg.joinpath(name + FINGERPRINT_SUFFIX))
        return cls(t.read_bytes(), meta, num_threads=num_threads, fingerprint=fp)

    def _check_io(self) -> None:
        ins = self._it.get_input_details()
        outs = self._it.get_output_details()
        m = self._meta
        if len(ins) != 1:
            raise ModelError(f"model {m.name!r} must have one input, has {len(ins)}")
        shape = [int(d) for d in ins[0]["shape"]]
        if shape[0] != 1 or shape[1:] != list(m.input_shape):
            raise ModelError(f"model {m.name!r} input shape {shape} != [1, {m.input_shape}] "
                             "from its metadata")
        if ins[0]["dtype"] != np.float32:
            raise ModelError(f"model {m.name!r} input is not float32")
        try:
            self._hash_out = outs[m.outputs["hash"]["index"]]
            self._probs_out = outs[m.outputs["probs"]["index"]]
        except IndexError:
            raise ModelError(f"model {m.name!r} has {len(outs)} outputs; metadata names others") from None
        if [int(d) for d in self._hash_out["shape"]] != [1, m.K]:  # h2
            raise ModelError(f"model {m.name!r} hash output shape {list(self._hash_out['shape'])} "
                             f"!= [1, {m.K}]")
        if [int(d) for d in self._probs_out["shape"]] != [1, m.C]:
            raise ModelError(f"model {m.name!r} probs output shape {list(self._probs_out['shape'])} "
                             f"!= [1, {m.C}]")
        self._in = ins[0]
        expect = tuple(m.input_shape)
        from hashing.features import input_shape as _feat_shape

        if tuple(_feat_shape(self._spec)) != expect:
            raise ModelError(f"model {m.name!r}: its feature settings give input "
                             f"{_feat_shape(self._spec)}, the model takes {expect}")

    # ------------------------------------------------------------------ properties
    @property
    def meta(self) -> ModelMeta:
        return self._meta

    @property
    def sha256(self) -> str:
        """The model's identity (``ModelMeta.model_id``): what a vault records and checks."""
        return self._sha256

    @property
    def tflite_sha256(self) -> str:
        return self._tflite_sha256

    @property
    def fingerprint_bytes(self) -> bytes | None:
        """The fingerprint file's bytes (None: the model indexes h2)."""
        return self._fp_bytes

    @property
    def code_name(self) -> str:
        return self._meta.code_name

    @property
    def windowing(self):
        """``hashing.windowing.WindowingSpec`` of the identification windows, or None when the
        indexed code is made per model window (formats before issue 12)."""
        return self._windowing

    @property
    def excerpt_rule(self) -> dict | None:
        """The calibrated excerpt decision rule stored with the fingerprint (None: no windows)."""
        return None if self._windowing is None else dict(self._fp.rule or {})

    @property
    def tflite_bytes(self) -> bytes:
        return self._bytes

    @property
    def K(self) -> int:
        """Bits of the indexed code (h2, or the fingerprint when the model has one)."""
        return self._meta.code_bits

    @property
    def C(self) -> int:
        return self._meta.C

    @property
    def class_names(self) -> list[str]:
        return list(self._meta.class_names)

    @property
    def feature_spec(self):
        return self._spec

    @property
    def sample_rate(self) -> int:
        return int(self._spec.sample_rate)

    @property
    def num_threads(self) -> int | None:
        return self._num_threads

    def __repr__(self) -> str:
        return (f"Encoder(name={self._meta.name!r}, arch={self._meta.arch!r}, K={self.K}, "
                f"C={self.C}, sha256={self._sha256[:12]}...)")

    # ------------------------------------------------------------------ encoding
    def run_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw model outputs of prepared windows (n, *input_shape): (tanh (n, K), probs (n, C))."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != len(self._meta.input_shape) + 1 or list(x.shape[1:]) != list(self._meta.input_shape):
            raise InvalidInputError(f"windows must have shape (n, {', '.join(map(str, self._meta.input_shape))}), "
                                    f"got {x.shape}")
        n = x.shape[0]
        h = np.empty((n, self._meta.K), dtype=np.float32)
        p = np.empty((n, self.C), dtype=np.float32)
        it = self._it
        with self._lock:
            for i in range(n):
                it.set_tensor(self._in["index"], x[i : i + 1])
                it.invoke()
                h[i] = it.get_tensor(self._hash_out["index"])[0]
                p[i] = it.get_tensor(self._probs_out["index"])[0]
        return h, p

    @blas_pinned
    def encode_windows(self, windows: np.ndarray, starts: np.ndarray | None = None,
                       timings: dict[str, float] | None = None) -> WindowCodes:
        t0 = time.perf_counter()
        h, p = self.run_windows(windows)
        if not (np.all(np.isfinite(h)) and np.all(np.isfinite(p))):
            raise ModelError(f"model {self._meta.name!r} produced NaN/inf outputs")
        h2_bits = codes.hash_bits(h)
        h2_words = codes.pack_words(h2_bits)
        bits = h2_bits if self._fp is None else self._fp.bits(windows)
        tm = dict(timings or {})
        tm["inference"] = tm.get("inference", 0.0) + (time.perf_counter() - t0)
        n = bits.shape[0]
        return WindowCodes(
            category=np.argmax(p, axis=1).astype(np.int64),
            probs=p,
            bits=bits,
            words=h2_words if self._fp is None else codes.pack_words(bits),
            K=self.K,
            starts=np.zeros(n, np.float64) if starts is None else np.asarray(starts, np.float64),
            timings=tm,
            hash_words=h2_words,
            code=self.code_name,
        )

    def windows(self, y: np.ndarray):
        """Model windows of decoded audio (at ``self.sample_rate``): (windows, starts)."""
        from hashing.features import model_windows

        return model_windows(np.asarray(y, dtype=np.float32), self._spec, return_starts=True)

    @blas_pinned
    def encode_audio(self, y: np.ndarray, *, purpose: str = "store",
                     _timings: dict[str, float] | None = None) -> WindowCodes:
        """Codes of a decoded mono float signal at ``self.sample_rate`` Hz. ``purpose``: "store"
        (the windows a vault keeps) or "query" (the windows a search tries); the two differ only
        for a model with identification windows (``hashing.windowing``)."""
        a = np.asarray(y)
        if a.ndim != 1 or a.size == 0:
            raise InvalidInputError(f"expected a non-empty 1-D mono signal, got shape {a.shape}")
        if purpose not in ("store", "query"):
            raise InvalidInputError(f"purpose must be 'store' or 'query', not {purpose!r}")
        tm = dict(_timings or {})
        tm.setdefault("decode", 0.0)
        if self._windowing is not None:
            return self._encode_windowed(a, purpose, tm)
        t0 = time.perf_counter()
        win, starts = self.windows(a)
        tm["features"] = time.perf_counter() - t0
        tm["inference"] = 0.0
        return self.encode_windows(win, starts, tm)

    def _encode_windowed(self, a: np.ndarray, purpose: str, tm: dict[str, float]) -> WindowCodes:
        """Identification windows (``hashing.windowing``): the fingerprint of each, and h1/h2 of
        the model window at the same place. The model runs on windows at least one window
        apart (a query tries a window every 16 ms: running the CNN on each would cost ~60x);
        every identification window takes the category of the nearest one it ran on."""
        from hashing import streaming
        from hashing.features import model_windows_at
        from hashing.windowing import query_windows, stored_windows

        if a.shape[0] > streaming.STREAM_SAMPLES:  # a long signal: the same codes, in blocks
            return streaming.encode_windowed(self, a, purpose, tm)
        spec = self._windowing
        t0 = time.perf_counter()
        w = (stored_windows if purpose == "store" else query_windows)(a, spec)
        took = take_model_windows(a, w.anchor, w.end, spec, self._spec)
        if took is None:
            model_frames = w.starts[_spread(w.starts, spec.window_frames, w.anchor)]
            model_in = model_windows_at(a, model_frames * spec.hop_length, self._spec)
        else:
            model_in, model_frames = took
        tm["features"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        h, p = self.run_windows(model_in)
        if not (np.all(np.isfinite(h)) and np.all(np.isfinite(p))):
            raise ModelError(f"model {self._meta.name!r} produced NaN/inf outputs")
        nearest = np.abs(w.starts[:, None] - model_frames[None, :]).argmin(axis=1)
        bits = self._fp.bits(w.x)
        tm["inference"] = time.perf_counter() - t1
        return WindowCodes(
            category=np.argmax(p, axis=1).astype(np.int64)[nearest], probs=p[nearest], bits=bits,
            words=codes.pack_words(bits), K=self.K, starts=w.start_seconds, timings=tm,
            hash_words=codes.pack_words(codes.hash_bits(h))[nearest], code=self.code_name,
            frames=w.starts, activity=w.activity)

    @blas_pinned
    def encode_file(self, source, *, purpose: str = "store",
                    max_seconds: float | None = None) -> WindowCodes:
        """Codes of an audio file (path, bytes or binary file object); ``max_seconds``: the
        longest recording decoded (None: ``hashing.audio.DEFAULT_MAX_SECONDS``)."""
        from hashing.audio import DEFAULT_MAX_SECONDS, load_audio

        from hashing import streaming
        from hashing.lazy_signal import DecodedSignal, is_long

        t0 = time.perf_counter()
        limit = DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds
        if purpose not in ("store", "query"):
            raise InvalidInputError(f"purpose must be 'store' or 'query', not {purpose!r}")
        if self._windowing is not None and is_long(source, self.sample_rate,
                                                   streaming.LAZY_SAMPLES):
            # never the whole signal in memory: decoded again slice by slice (issue 17, item 7)
            sig = DecodedSignal(source, self.sample_rate, limit)
            return self._encode_windowed(sig, purpose, {"decode": time.perf_counter() - t0})
        y = load_audio(source, self.sample_rate, max_seconds=limit)
        return self.encode_audio(y, purpose=purpose, _timings={"decode": time.perf_counter() - t0})


def take_model_windows(a: np.ndarray, a0: int, a1: int, wspec, fspec):
    """(model inputs, their start frames) of a take, or None: when the windowing says
    ``model_input`` "take" and the active span [a0, a1) (identification frames) is at most
    ``take_windows`` model windows long, the model's own input (``features.model_windows``:
    trimmed at ``trim_top_db``, the onset ``trim_margin_seconds`` into the window, the rest
    padded), computed on the stretch around the span (the model's trim margin and frame
    beyond it either side; the signal's loudest frame is inside the span, so the trim is the
    whole signal's). Only that stretch is read: a long signal coded block by block
    (``hashing.streaming``) gets the same inputs."""
    if wspec.model_input != "take":
        return None
    hop = wspec.hop_length
    if (a1 - a0) * hop > wspec.take_windows * fspec.clip_samples:
        return None
    from hashing.features import model_windows

    margin = int(round(fspec.trim_margin_seconds * fspec.sample_rate)) + int(fspec.trim_frame)
    step = int(fspec.trim_hop)  # the trim's frames start on the whole signal's grid
    lo = max(0, (a0 * hop - margin) // step * step)
    hi = min(a.shape[0], a1 * hop + margin)
    win, starts = model_windows(np.asarray(a[lo:hi], dtype=np.float32), fspec, return_starts=True)
    frames = np.round((lo + np.asarray(starts) * fspec.sample_rate) / hop).astype(np.int64)
    return win, frames


def _spread(starts: np.ndarray, gap: int, anchor: int) -> np.ndarray:
    """Indices of the ``starts`` nearest to ``anchor + k * gap`` (k = 0, 1, ...): one window a
    ``gap`` apart from where the speech begins, as a stored recording's grid places them, so
    that a copy asks the model about the same stretch of speech as its original did."""
    s = np.asarray(starts, dtype=np.int64)
    last = max(int(s[-1]), anchor)
    targets = np.arange(anchor, last + 1, gap)
    picked = np.abs(s[None, :] - targets[:, None]).argmin(axis=1)
    return np.unique(picked)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Silence C-level stderr while LiteRT starts (it prints an INFO line about XNNPACK).

    A user-facing command must print one line on error and nothing else; the runtime's native
    logger writes straight to file descriptor 2, so Python's sys.stderr cannot filter it.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
