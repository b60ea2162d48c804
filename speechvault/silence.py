"""A warning when an ingested recording is (almost) all silence (issue 15, "Low").

Why: every window of digital silence gets the same code, so a silent file "matches" any other
silent file at BER 0 -- a recording that holds no sound is nearly always a mistake (a muted
microphone, a memo stopped at once) and its matches mean nothing. Ingest still stores it (it is
the user's file), but says so.

What counts: the level of each 20 ms frame (RMS, dB relative to full scale); a frame above
``SOUND_DBFS`` holds sound. A recording warns when less than ``MIN_SOUND_SECONDS`` or less than
``MIN_SOUND_FRACTION`` of it does (thresholds checked on 500 FSDD clips: quiet speakers, peak
-30 to -40 dBFS, none warned). The pass reads the file block by block at its own rate
(``hashing.audio.iter_mono``), so an hour costs a decode, not an hour in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from speechvault.errors import SpeechVaultError

__all__ = ["SOUND_DBFS", "Level", "measure", "silence_warning", "silent_files"]

#: a 20 ms frame louder than this holds sound (room noise of a quiet recording is below it,
#: speech 20-40 dB above it)
SOUND_DBFS = -50.0
MIN_SOUND_SECONDS = 0.05  # FSDD: a quiet speaker's digit has >= 0.08 s above it (measured)
MIN_SOUND_FRACTION = 0.01  # FSDD: >= 18 % of each clip
FRAME_SECONDS = 0.02


@dataclass(frozen=True)
class Level:
    seconds: float        # the recording's length
    sound_seconds: float  # of which frames above SOUND_DBFS
    peak_dbfs: float      # loudest frame
    digital_silence: bool = False  # every sample exactly 0

    @property
    def almost_silent(self) -> bool:
        return (self.sound_seconds < MIN_SOUND_SECONDS
                or self.sound_seconds < MIN_SOUND_FRACTION * self.seconds)


def measure(source, max_seconds: float | None = None) -> Level:
    """The :class:`Level` of an audio file (path, bytes or file object)."""
    from hashing.audio import iter_mono
    from hashing.quiet import decoder_quiet

    total = 0
    loud = 0
    peak = -np.inf
    nonzero = False
    rate = 1
    carry = np.zeros(0, np.float32)
    with decoder_quiet():
        for rate, block in iter_mono(source, max_seconds=max_seconds):
            frame = max(1, int(round(rate * FRAME_SECONDS)))
            total += block.size
            nonzero = nonzero or bool(np.any(block))
            y = np.concatenate([carry, block]) if carry.size else block
            n = y.size // frame
            carry = y[n * frame:].copy()
            if n:
                ms = np.mean(np.square(y[:n * frame].reshape(n, frame), dtype=np.float64), axis=1)
                db = 10.0 * np.log10(np.maximum(ms, 1e-20))
                loud += int(np.count_nonzero(db > SOUND_DBFS)) * frame
                peak = max(peak, float(db.max()))
    return Level(seconds=total / rate, sound_seconds=loud / rate, peak_dbfs=peak,
                 digital_silence=not nonzero)


def silence_warning(path, max_seconds: float | None = None, *, query: bool = False
                    ) -> str | None:
    """One line for a recording (``query``: a search query; bytes for stdin) that is (almost)
    all silence, else None (also for a file that cannot be read: that is reported already)."""
    try:
        level = measure(path, max_seconds=max_seconds)
    except (SpeechVaultError, OSError, ValueError, RuntimeError):
        return None
    if not level.almost_silent:
        return None
    what = "all digital silence" if level.digital_silence else (
        f"{level.sound_seconds:.1f} s above {SOUND_DBFS:g} dBFS in {level.seconds:.1f} s")
    name = "the query on stdin" if isinstance(path, (bytes, bytearray)) else str(path)
    if query:
        return (f"{name}: almost all silence ({what}): silence matches silence, so a match "
                "says nothing about speech")
    return (f"{name}: almost all silence ({what}): stored, but it matches any other silent "
            "recording; check the microphone")


def silent_files(paths, max_seconds: float | None = None) -> list[tuple[str, str]]:
    """(path, warning) for each of ``paths`` that is (almost) all silence."""
    out = []
    for p in paths:
        msg = silence_warning(p, max_seconds)
        if msg:
            out.append((str(p), msg))
    return out


def added_paths(files, report) -> list:
    """The files of an ingest ``report`` that were stored: neither an error nor a duplicate, and
    named by one of its added rows (a cancelled ingest stops before the rest)."""
    left_out = {p for p, _ in report.errors} | {p for p, _ in report.skipped_duplicates}
    names = {r.name for r in report.added}
    return [f for f in files if str(f) not in left_out and os.path.basename(str(f)) in names]
