"""Chromaprint baseline for excerpt identification (issue 12): what ``fpcalc`` finds.

Chromaprint (the AcoustID fingerprint) computes one 32-bit sub-fingerprint every
~0.124 s (4096-sample frames at 11025 Hz, hop 1365 samples) from chroma features; it needs about
3 s of audio before it emits anything. Two prints are compared the way AcoustID does: slide the
shorter over the longer, and at each offset take the bit error rate
``mean(popcount(a XOR b)) / 32`` over the overlap; the best (lowest) offset is the distance.

Here a query print is slid over every stored recording's print (:class:`ChromaprintIndex`,
vectorised in numpy); the recording with the lowest BER is the answer, a *match* when that BER
is at most a threshold. The threshold comes from a separate calibration split
(:func:`threshold_from_impostors`): the largest value that accepts no calibration impostor (or
at most a given false-match rate), so the baseline is judged at an honest operating point.

Prints come from the ``fpcalc`` program (Debian package libchromaprint-tools), fed raw 16-bit
PCM on stdin: no temporary files.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from typing import Sequence

import numpy as np

from speechvault.errors import InvalidInputError, RuntimeMissingError

__all__ = ["HOP_SECONDS", "fpcalc_available", "raw_fingerprint", "ChromaprintIndex",
           "ChromaprintMatch", "threshold_from_impostors"]

#: Time between sub-fingerprints: Chromaprint's default frame hop, 1365 samples at 11025 Hz.
HOP_SECONDS = 1365.0 / 11025.0
_POP16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def fpcalc_available() -> bool:
    return shutil.which("fpcalc") is not None


def raw_fingerprint(y: np.ndarray, sr: int) -> np.ndarray:
    """The raw Chromaprint of float mono samples: uint32 sub-fingerprints (possibly none: audio
    shorter than ~3 s gives an empty print)."""
    exe = shutil.which("fpcalc")
    if exe is None:
        raise RuntimeMissingError("fpcalc not found: install the Debian package libchromaprint-tools")
    a = np.asarray(y, np.float32)
    if a.ndim != 1:
        raise InvalidInputError("raw_fingerprint expects mono samples")
    pcm = np.clip(np.round(a * 32767.0), -32768, 32767).astype("<i2")
    length = int(np.ceil(a.shape[0] / sr)) + 1
    proc = subprocess.run(
        [exe, "-format", "s16le", "-rate", str(int(sr)), "-channels", "1", "-length", str(length),
         "-raw", "-plain", "-"],
        input=pcm.tobytes(), capture_output=True, check=False)
    text = proc.stdout.decode().strip()
    if proc.returncode != 0 and not text:
        # fpcalc exits non-zero (and prints nothing) when the audio is too short for one print
        return np.zeros(0, np.uint32)
    return np.array([int(v) for v in text.split(",") if v], dtype=np.uint32)


def popcount32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.uint32)
    return _POP16[x & 0xFFFF].astype(np.uint16) + _POP16[x >> 16]


@dataclasses.dataclass(frozen=True)
class ChromaprintMatch:
    """One stored recording's best alignment with a query."""

    index: int  # position in the index
    name: str
    ber: float  # bit error rate at the best offset
    offset: float  # seconds: where the query starts in the stored recording (negative: before)


class ChromaprintIndex:
    """Stored recordings' prints; :meth:`rank` slides a query print over each of them."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.prints: list[np.ndarray] = []

    def add(self, name: str, fp: np.ndarray) -> None:
        self.names.append(name)
        self.prints.append(np.asarray(fp, np.uint32))

    def __len__(self) -> int:
        return len(self.names)

    def rank(self, q: np.ndarray) -> list[ChromaprintMatch]:
        """Every stored recording with a print, lowest BER first; empty when ``q`` is empty."""
        q = np.asarray(q, np.uint32)
        if q.size == 0:
            return []
        out = [m for i, fp in enumerate(self.prints) if (m := self._best(i, q, fp)) is not None]
        return sorted(out, key=lambda m: (m.ber, m.index))

    def _best(self, i: int, q: np.ndarray, fp: np.ndarray) -> ChromaprintMatch | None:
        """Best offset of ``q`` against ``fp``: the shorter print slides fully inside the longer."""
        if fp.size == 0:
            return None
        short, long_, sign = (q, fp, 1) if q.size <= fp.size else (fp, q, -1)
        windows = np.lib.stride_tricks.sliding_window_view(long_, short.size)  # (offsets, m)
        errors = popcount32(windows ^ short[None, :]).sum(axis=1, dtype=np.int64)
        k = int(np.argmin(errors))
        ber = float(errors[k]) / (32.0 * short.size)
        return ChromaprintMatch(i, self.names[i], ber, sign * k * HOP_SECONDS)


def threshold_from_impostors(impostor_bers: Sequence[float], max_fmr: float = 0.0) -> float:
    """Largest threshold t such that the share of impostor BERs ``<= t`` is at most ``max_fmr``.

    ``impostor_bers``: the best (lowest) BER of each calibration impostor query (an excerpt of a
    recording not in the calibration index) against the whole index. With ``max_fmr = 0`` the
    threshold sits just below the lowest impostor BER: no calibration impostor is accepted."""
    b = np.sort(np.asarray([x for x in impostor_bers if np.isfinite(x)], np.float64))
    if b.size == 0:
        raise InvalidInputError("no calibration impostor BERs to set the threshold from")
    allowed = int(np.floor(max_fmr * b.size))  # impostors that may be accepted
    if allowed >= b.size:
        return float(b[-1])
    return float(np.nextafter(b[allowed], -np.inf))
