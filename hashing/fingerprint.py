"""Identification code: a Distortion Discriminant Analysis (DDA) fingerprint of the model input.

Why (issue 7, measured in docs/results/identification.md): the paper trains its hash h2 through
the classification loss only, so h2 says "which category", not "which recording": two takes of
the same digit by the same speaker are a few bits apart, closer than a copy of one of them with
noise at 20 dB SNR. A single 384-bit code cannot serve both meanings of "relevant": splitting it
between class bits and identification bits trades mAP against identification recall bit for bit
(``docs/measure_code_split.py``). So a model may carry a second code next to h2, made for
identification, and the vault indexes that one.

The code is Burges, Platt and Jana's DDA ("Distortion discriminant analysis for audio
fingerprinting", IEEE Trans. Speech Audio Process. 11(3), 2003): the linear projections of the
(normalised Log-Mel) model window that maximise the variance of the signal over the variance of
the distortions a copy suffers (noise, MP3, resampling, requantisation). With S the covariance
of clean windows and N = E[(x' - x)(x' - x)^T] over distorted copies x' of x, the directions v
solve the generalised eigenproblem ``S v = lambda (N + r I) v`` (largest lambda first), and bit
j of a window x is ``v_j . (x - mean) > 0`` (sign hashing, as eq. 11-12 binarise h2). Distance
between two fingerprints is the paper's normalised Hamming distance (eq. 16).

numpy only, at fit time and at run time. Stored as an ``.npz`` (mean float32, projection
float16) next to the model: ``NAME.fingerprint.npz``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import numpy as np

from hashing import codes
from hashing.threads import blas_pinned
from speechvault.errors import ModelError

__all__ = ["Fingerprint", "fit_dda", "load_fingerprint", "FINGERPRINT_SUFFIX", "FORMAT"]

FORMAT = "speechvault-fingerprint/1"
#: format 2: the fingerprint of identification windows (``hashing.windowing``, issue 12); the
#: file also holds the windowing settings and the excerpt decision rule (``store.excerpt``), so
#: the fingerprint's SHA-256 (part of the model identity) covers every setting a search uses.
FORMAT_WINDOWED = "speechvault-fingerprint/2"
#: format 3: a learned CNN window code run with LiteRT (``hashing.learned_fingerprint``)
LEARNED_FORMAT = "speechvault-fingerprint/3"
#: file name of a model's fingerprint next to its ``NAME.tflite``: ``NAME.fingerprint.npz``.
FINGERPRINT_SUFFIX = ".fingerprint.npz"


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """A fitted DDA fingerprint: ``bits(windows)`` -> (n, K) uint8."""

    mean: np.ndarray         # (D,) float32: mean clean window (flattened)
    projection: np.ndarray   # (D, K) float16: DDA directions, largest signal/distortion first
    #: ``hashing.windowing.WindowingSpec`` as a dict: None = the model window (format 1)
    windowing: dict | None = None
    #: the excerpt decision rule (``store.excerpt.ExcerptRule`` as a dict), calibrated on impostors
    rule: dict | None = field(default=None)

    def __post_init__(self) -> None:
        # the float32 copy used at run time, made once (converting per call costs ~5 ms)
        object.__setattr__(self, "_p32", np.ascontiguousarray(self.projection, dtype=np.float32))

    @property
    def K(self) -> int:
        return int(self.projection.shape[1])

    @property
    def dim(self) -> int:
        return int(self.projection.shape[0])

    @blas_pinned  # one BLAS thread: 2 are 60-100x slower on a busy core (hashing/threads.py)
    def bits(self, windows: np.ndarray) -> np.ndarray:
        """Sign bits of the DDA projections of model windows (n, *input_shape) -> (n, K) uint8."""
        x = np.asarray(windows, dtype=np.float32).reshape(len(windows), -1)
        if x.shape[1] != self.dim:
            raise ModelError(f"fingerprint expects windows of {self.dim} values, got {x.shape[1]}")
        # a single row would go through BLAS's matrix-vector kernel, which sums in another order
        # than the matrix-matrix one: a stored one-window clip and the same window among a
        # query's many could then differ in a bit whose projection is ~0. Two rows take the same
        # kernel as any batch.
        one = x.shape[0] == 1
        if one:
            x = np.repeat(x, 2, axis=0)
        bits = ((x - self.mean) @ self._p32 > 0).astype(np.uint8)
        return bits[:1] if one else bits

    def words(self, windows: np.ndarray) -> np.ndarray:
        return codes.pack_words(self.bits(windows))

    # ------------------------------------------------------------------ (de)serialisation
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        extra = {}
        if self.windowing is not None:
            extra["settings"] = np.array(json.dumps({"windowing": self.windowing,
                                                     "rule": self.rule}, sort_keys=True))
        np.savez(buf, format=np.array(FORMAT if self.windowing is None else FORMAT_WINDOWED),
                 mean=self.mean.astype(np.float32), projection=self.projection.astype(np.float16),
                 **extra)
        return buf.getvalue()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Fingerprint":
        """Load and check a fingerprint file; ``ModelError`` in one line if it is not one."""
        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
                fmt = str(z["format"])
                if fmt in (FORMAT, FORMAT_WINDOWED):
                    mean, proj = z["mean"], z["projection"]
                    settings = json.loads(str(z["settings"])) if fmt == FORMAT_WINDOWED else {}
        except Exception:  # noqa: BLE001 - any parse failure is "not a fingerprint file"
            raise ModelError("the model's fingerprint file is damaged or not a fingerprint") from None
        if fmt == LEARNED_FORMAT:
            raise ModelError("the fingerprint is a learned code (format 3), not a DDA projection: "
                             "read it with load_fingerprint")
        if fmt not in (FORMAT, FORMAT_WINDOWED):
            raise ModelError(f"fingerprint format {fmt!r} is not a DDA fingerprint "
                             f"({FORMAT!r} or {FORMAT_WINDOWED!r})")
        if fmt == FORMAT_WINDOWED and not (isinstance(settings, dict)
                                           and isinstance(settings.get("windowing"), dict)):
            raise ModelError("the model's fingerprint has no windowing settings")
        if (mean.ndim != 1 or proj.ndim != 2 or proj.shape[0] != mean.shape[0] or proj.shape[1] < 1
                or mean.dtype != np.float32 or proj.dtype != np.float16
                or not (np.all(np.isfinite(mean)) and np.all(np.isfinite(proj)))):
            raise ModelError("the model's fingerprint has inconsistent or non-finite arrays")
        return cls(mean=mean, projection=proj, windowing=settings.get("windowing"),
                   rule=settings.get("rule"))


def load_fingerprint(data: bytes, num_threads: int | None = None):
    """A fingerprint file of any format: the DDA projection (formats 1-2, ``Fingerprint``) or
    the learned CNN code (format 3, ``hashing.learned_fingerprint.LearnedFingerprint``, run
    with ``num_threads`` LiteRT threads, default ``hashing.threads.LITERT_THREADS``); both give
    ``bits``, ``words``, ``K``, ``dim``, ``windowing``, ``rule`` and ``to_bytes``."""
    try:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
            fmt = str(z["format"])
            if fmt == LEARNED_FORMAT:
                from hashing.learned_fingerprint import LearnedFingerprint
                from hashing.threads import LITERT_THREADS

                return LearnedFingerprint.from_npz(z, num_threads or LITERT_THREADS)
    except ModelError:
        raise
    except Exception:  # noqa: BLE001 - any parse failure is "not a fingerprint file"
        raise ModelError("the model's fingerprint file is damaged or not a fingerprint") from None
    return Fingerprint.from_bytes(data)


def _cov(x: np.ndarray) -> np.ndarray:
    return (x.T @ x) / max(1, len(x))


def _difference_cov(original: np.ndarray, distorted: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``_cov(distorted - original)`` in float64, a block of pairs at a time: a fit with many
    distorted views holds 10^5 pairs of 4,096 values, whose float64 differences alone would
    take several GB."""
    m = len(original)
    n = np.zeros((original.shape[1], original.shape[1]), np.float64)
    for i in range(0, m, chunk):
        d = (np.asarray(distorted[i:i + chunk], np.float64)
             - np.asarray(original[i:i + chunk], np.float64))
        n += d.T @ d
    return n / max(1, m)


def fit_dda(clean: np.ndarray, original: np.ndarray, distorted: np.ndarray, K: int, *,
            reg: float = 1e-3, pca_dims: int = 1024) -> Fingerprint:
    """Fit a K-bit DDA fingerprint.

    ``clean`` (n, D): clean windows (signal covariance S); ``original``/``distorted`` (m, D):
    pairs of a window and the same window after a distortion (distortion covariance N). The
    problem is solved in the top ``pca_dims`` principal directions of S (the windows have far
    fewer samples than D = 4096 dimensions), with N regularised by ``reg`` times its mean
    eigenvalue (ridge). The generalised problem is reduced to an ordinary one by whitening N
    with its Cholesky factor L: ``(L^-1 S L^-T) u = lambda u``, ``v = L^-T u``.
    """
    X = np.asarray(clean, np.float64).reshape(len(clean), -1)
    A = np.asarray(original).reshape(len(original), -1)
    B = np.asarray(distorted).reshape(len(distorted), -1)
    if A.shape != B.shape or A.shape[1] != X.shape[1]:
        raise ValueError("clean, original and distorted must hold windows of the same size")
    if not 0 < K <= min(pca_dims, X.shape[1]):
        raise ValueError(f"need 0 < K <= pca_dims ({pca_dims}) and <= the window size")
    mean = X.mean(axis=0)
    S = _cov(X - mean)
    evals, V = np.linalg.eigh(S)
    V = V[:, ::-1][:, :pca_dims]                       # top principal directions of S
    Sr = V.T @ S @ V
    Nr = V.T @ _difference_cov(A, B) @ V
    Nr += reg * np.trace(Nr) / len(Nr) * np.eye(len(Nr))
    L = np.linalg.cholesky(Nr)
    Linv = np.linalg.inv(L)
    lam, U = np.linalg.eigh(Linv @ Sr @ Linv.T)
    order = np.argsort(lam)[::-1][:K]
    G = Linv.T @ U[:, order]                           # generalised eigenvectors, best first
    P = V @ G
    P /= np.linalg.norm(P, axis=0, keepdims=True)      # scale is irrelevant to the sign
    return Fingerprint(mean=mean.astype(np.float32), projection=P.astype(np.float16))
