"""A decoded recording that is never held whole: slices are decoded again on demand (issue 17,
item 7: memory of a 60-minute file bounded by a constant).

Why: ``hashing.streaming`` computes the codes of a long signal block by block, but it was handed
the whole decoded signal -- 230 MB of float32 for an hour at 16 kHz, the largest single item of
an ingest. It only ever reads that signal in slices whose starts never go back (the Log-Mel
frames in order, then the model windows in order). ``DecodedSignal`` answers such slices from a
forward-only decode of the source that keeps just the samples from the last slice's start on;
a slice that starts earlier than what is kept restarts the decode from the beginning (correct,
only slower: the encoder does it once, between its two passes).

The samples are exactly ``load_audio``'s: the same decoder, block size, mono mix, streaming
resampler and peak scaling (``hashing.audio.mono_chunks`` / ``finish_chunk``). The first pass
(in the constructor) finds the length and the peak; every later pass checks that the source
still decodes to that length (a file changed between passes is refused, not mixed).
"""

from __future__ import annotations

import io
import os
from typing import Iterator

import numpy as np

from hashing.audio import AudioSource, finish_chunk, mono_chunks, open_checked
from hashing.quiet import decoder_quiet
from speechvault.errors import AudioDecodeError

__all__ = ["DecodedSignal"]


class DecodedSignal:
    """A 1-D float32 signal (``shape``, ``ndim``, ``dtype``, ``len``, ``[lo:hi]``) decoded from
    ``source`` at ``sample_rate`` on demand. ``source``: a path, bytes or a seekable binary file
    object (rewound to where it was at construction for every pass)."""

    ndim = 1
    dtype = np.dtype(np.float32)

    def __init__(self, source: AudioSource, sample_rate: int, max_seconds: float | None) -> None:
        self._source = source
        self._pos = source.tell() if hasattr(source, "read") and hasattr(source, "tell") else None
        self._rate, self._max_seconds = int(sample_rate), max_seconds
        n, peak = 0, 0.0
        chunks = self._raw_chunks()
        with decoder_quiet():
            while True:
                try:
                    n += next(chunks).size
                except StopIteration as stop:
                    peak = float(stop.value or 0.0)
                    break
        if n == 0:
            raise AudioDecodeError(f"{self._name}: no audio frames after resampling")
        self._n, self._peak = n, peak
        self.passes = 1  # decoding passes begun (this one included): a test reads it
        self._restart()

    # ------------------------------------------------------------------ array-like surface
    @property
    def shape(self) -> tuple[int]:
        return (self._n,)

    @property
    def size(self) -> int:
        return self._n

    def __len__(self) -> int:
        return self._n

    def __array__(self, dtype=None, copy=None):
        """The whole signal (only for short ones: a caller that needs it all)."""
        y = self[0:self._n]
        return y if dtype is None else y.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("DecodedSignal supports contiguous slices only")
        lo, hi, _ = key.indices(self._n)
        if hi <= lo:
            return np.zeros(0, np.float32)
        if lo < self._buf_start:
            self._restart()
        with decoder_quiet():
            while self._buf_start + self._buf.size < hi:
                self._pull()
        drop = lo - self._buf_start  # samples before this slice are never asked for again
        if drop > 0:
            self._buf = self._buf[drop:].copy() if drop > self._buf.size // 2 else self._buf[drop:]
            self._buf_start = lo
        return self._buf[lo - self._buf_start: hi - self._buf_start].copy()

    # ------------------------------------------------------------------ decoding
    @property
    def _name(self) -> str:
        from hashing.audio import source_name

        return source_name(self._source)

    def _reopened(self) -> AudioSource:
        """The source ready for another pass from its start."""
        if self._pos is not None:
            self._source.seek(self._pos)  # type: ignore[union-attr]
            return self._source
        if isinstance(self._source, (bytes, bytearray, memoryview)):
            return io.BytesIO(bytes(self._source))
        return os.fspath(self._source)  # type: ignore[arg-type]

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        """One pass: ``mono_chunks`` of a fresh decoder, which it closes at the end; returns
        the peak like ``mono_chunks``."""
        snd, name = open_checked(self._reopened())
        with snd:
            return (yield from mono_chunks(snd, name, self._rate, self._max_seconds))

    def _restart(self) -> None:
        self._chunks = self._raw_chunks()
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0
        self._done = 0  # samples produced by this pass
        self.passes += 1

    def _pull(self) -> None:
        """The next chunk of the current pass onto the kept samples."""
        try:
            chunk = next(self._chunks)
        except StopIteration:
            raise AudioDecodeError(f"{self._name}: changed while being read "
                                   f"(now {self._done} samples, first {self._n})") from None
        self._done += chunk.size
        if self._done > self._n:
            raise AudioDecodeError(f"{self._name}: changed while being read (longer than at first)")
        chunk = finish_chunk(chunk, self._peak)
        self._buf = np.concatenate([self._buf, chunk]) if self._buf.size else chunk


def is_long(source: AudioSource, sample_rate: int, samples: int) -> bool:
    """Whether ``source``'s header declares more than ``samples`` samples at ``sample_rate``
    (a file object is left where it was). A header that cannot say (raw AAC) or cannot be read
    counts as short: ``load_audio`` then decodes it, or gives its one-line error."""
    from hashing.audio import read_info
    from speechvault.errors import SpeechVaultError

    pos = source.tell() if hasattr(source, "read") and hasattr(source, "tell") else None
    try:
        info = read_info(source)
    except SpeechVaultError:
        return False
    finally:
        if pos is not None:
            source.seek(pos)  # type: ignore[union-attr]
    return info.frames * int(sample_rate) / max(1, info.sample_rate) > samples
