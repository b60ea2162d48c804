"""Identification code learned by a small CNN (fingerprint format 3), run with LiteRT.

Why (issue 12, docs/results/excerpt_rule_trials.md, sessions 25-26): the DDA fingerprint
(``hashing.fingerprint``) is linear, and in 10 dB babble a copy's windows are not close to their
originals' in the first place: 0.953 of them fall under the impostors' 1e-4 BER quantile, and
no decision rule recovers the rest. A neural audio fingerprint (Chang et al., "Neural audio
fingerprint for high-specific audio retrieval based on contrastive learning", ICASSP 2021)
learns a non-linear code from (window, degraded window) pairs with the NT-Xent loss; the
8-64-channel CNN trained on the DDA's own fit pairs keeps 0.968 of those windows and costs what
the DDA's projection costs per query (10.2 vs 9.4 ms for a 5 s excerpt's 251 windows, LiteRT,
one thread; ``docs/measure_window_codes.py --tflite``).

Bit j of a window x is ``u_j(x) > c_j``: the sign of CNN unit j about its median over the fit
windows (so each bit is set for half of the speech, as the paper's eq. 11-12 binarise h2 about
0). Distance is the paper's normalised Hamming distance (eq. 16), as for every code a vault
indexes. The file (``NAME.fingerprint.npz``, format ``speechvault-fingerprint/3``) holds the
LiteRT model's bytes, the medians, the windowing and the excerpt rule; its SHA-256 is part of
the model identity, so a vault coded with one network refuses another.

Bits do not depend on how windows are batched (a stored window is coded among its recording's,
a query window among the query's): measured 0 of 96,384 bits differ between one window at a
time and batches of 251, and a test checks it on every load path.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import dataclass, field

import numpy as np

from hashing import codes
from hashing.fingerprint import LEARNED_FORMAT as FORMAT_LEARNED
from hashing.threads import LITERT_THREADS
from speechvault.errors import ModelError

__all__ = ["LearnedFingerprint", "FORMAT_LEARNED", "BATCH_WINDOWS"]

#: windows per LiteRT call: a 5 s query (251 windows at a 16 ms hop) in one call, a long
#: recording's windows in calls of this size, so the interpreter's buffers stay small
BATCH_WINDOWS = 256


@dataclass(frozen=True, eq=False)
class LearnedFingerprint:
    """A CNN window code: ``bits(windows)`` -> (n, K) uint8, the same interface as the DDA's."""

    model: bytes             # LiteRT flatbuffer: (n, n_mels, window_frames, 1) -> (n, K) units
    centre: np.ndarray       # (K,) float32: each unit's median over the fit windows
    windowing: dict | None = None   # ``hashing.windowing.WindowingSpec`` as a dict
    rule: dict | None = field(default=None)   # ``store.excerpt.ExcerptRule`` as a dict
    #: how the network was trained (command, data, seeds): provenance, covered by the SHA-256
    training: dict | None = field(default=None)
    #: LiteRT threads of the network (not part of the file): the encoder's count
    num_threads: int = field(default=LITERT_THREADS, compare=False)

    def __post_init__(self) -> None:
        from hashing.encoder import _native_stderr_silenced, load_interpreter_class

        Interpreter = load_interpreter_class()
        try:
            with _native_stderr_silenced():
                it = Interpreter(model_content=bytes(self.model), num_threads=int(self.num_threads))
                it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError("the fingerprint's network cannot be loaded: "
                             f"{' '.join(str(exc).split())[:160]}") from None
        inp, out = it.get_input_details(), it.get_output_details()
        if len(inp) != 1 or len(out) != 1 or len(inp[0]["shape"]) != 4:
            raise ModelError("the fingerprint's network must map one window batch to one code")
        shape = tuple(int(s) for s in inp[0]["shape"][1:])
        if int(out[0]["shape"][-1]) != len(self.centre) or shape[-1] != 1:
            raise ModelError(f"the fingerprint's network gives {int(out[0]['shape'][-1])} units "
                             f"for {len(self.centre)} medians")
        object.__setattr__(self, "_it", it)
        object.__setattr__(self, "_shape", shape)
        object.__setattr__(self, "_io", (inp[0]["index"], out[0]["index"]))
        object.__setattr__(self, "_batch", int(inp[0]["shape"][0]))
        object.__setattr__(self, "_lock", threading.Lock())  # one interpreter, many threads

    @property
    def K(self) -> int:
        return int(len(self.centre))

    @property
    def dim(self) -> int:
        return int(np.prod(self._shape))

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Units of one batch; the interpreter is resized only when the batch size changes."""
        i, o = self._io
        if self._batch != len(x):
            self._it.resize_tensor_input(i, [len(x), *self._shape])
            self._it.allocate_tensors()
            object.__setattr__(self, "_batch", len(x))
        self._it.set_tensor(i, x)
        self._it.invoke()
        return self._it.get_tensor(o).copy()

    def units(self, windows: np.ndarray) -> np.ndarray:
        """The CNN's K real outputs per window (n, D) -> (n, K) float32."""
        x = np.asarray(windows, dtype=np.float32)
        if not len(x):
            return np.zeros((0, self.K), np.float32)
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.dim:
            raise ModelError(f"fingerprint expects windows of {self.dim} values, got {x.shape[1]}")
        x = x.reshape(len(x), *self._shape)
        with self._lock:
            return np.concatenate([self._run(np.ascontiguousarray(x[s:s + BATCH_WINDOWS]))
                                   for s in range(0, len(x), BATCH_WINDOWS)])

    def bits(self, windows: np.ndarray) -> np.ndarray:
        """Bit j = unit j above its fit median (n, D) -> (n, K) uint8."""
        return (self.units(windows) > self.centre).astype(np.uint8)

    def words(self, windows: np.ndarray) -> np.ndarray:
        return codes.pack_words(self.bits(windows))

    # ------------------------------------------------------------------ (de)serialisation
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        settings = json.dumps({"windowing": self.windowing, "rule": self.rule,
                               "training": self.training}, sort_keys=True)
        np.savez(buf, format=np.array(FORMAT_LEARNED),
                 model=np.frombuffer(bytes(self.model), np.uint8),
                 centre=np.asarray(self.centre, np.float32), settings=np.array(settings))
        return buf.getvalue()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_npz(cls, z, num_threads: int = LITERT_THREADS) -> "LearnedFingerprint":
        """From an opened format-3 ``.npz``; ``ModelError`` in one line when it is inconsistent."""
        try:
            model, centre = z["model"], z["centre"]
            settings = json.loads(str(z["settings"]))
        except Exception:  # noqa: BLE001 - any parse failure is "not a fingerprint file"
            raise ModelError("the model's fingerprint file is damaged or not a fingerprint") from None
        if not (isinstance(settings, dict) and isinstance(settings.get("windowing"), dict)):
            raise ModelError("the model's fingerprint has no windowing settings")
        if (model.dtype != np.uint8 or model.ndim != 1 or centre.dtype != np.float32
                or centre.ndim != 1 or not len(centre) or not np.all(np.isfinite(centre))):
            raise ModelError("the model's fingerprint has inconsistent or non-finite arrays")
        return cls(model=model.tobytes(), centre=centre, windowing=settings["windowing"],
                   rule=settings.get("rule"), training=settings.get("training"),
                   num_threads=num_threads)
