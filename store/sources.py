"""What ``ingest`` and ``search`` accept as an audio file, checked before it is read (issue 17,
item 7).

Why before: ingest used to read the whole file into memory (``read_bytes``) and only then decode
its header, so a FIFO hung it, ``/dev/zero`` read until memory ran out and a 3-hour file was read
whole (490 MB) before the one-hour limit refused it. ``open_source`` opens the path without
blocking (``O_NONBLOCK``: a FIFO with no writer does not hang the open), refuses anything that is
not a regular file from ``fstat`` of that very descriptor (no race with a swapped path), reads
the header from the descriptor and refuses a recording longer than the limit -- or a file larger
than any uncompressed recording of that length could be -- and only then reads the bytes.

Limits: ``DEFAULT_MAX_INGEST_SECONDS`` (one hour, ``ingest --max-duration``) and
``DEFAULT_MAX_QUERY_SECONDS`` (ten minutes, ``search --max-duration``): a query is a snippet, and
coding one costs memory and time proportional to its length.
"""

from __future__ import annotations

import io
import math
import os
import stat
from pathlib import Path

from speechvault.errors import AudioDecodeError, InvalidInputError, NotFoundError

__all__ = ["DEFAULT_MAX_INGEST_SECONDS", "DEFAULT_MAX_QUERY_SECONDS", "check_limit",
           "open_source", "read_or_keep_open", "read_source", "size_bound"]

DEFAULT_MAX_INGEST_SECONDS = 3600.0
DEFAULT_MAX_QUERY_SECONDS = 600.0
#: the most bytes one sample of one channel takes in any format soundfile reads (64-bit float)
_MAX_SAMPLE_BYTES = 8
_HEADER_SLACK = 1 << 20  # container overhead: headers, metadata chunks, padding


def check_limit(max_seconds: float | None, what: str = "--max-duration") -> float | None:
    """A duration limit: positive and finite, or None (no limit)."""
    if max_seconds is None:
        return None
    try:
        value = float(max_seconds)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{what} must be a positive number of seconds, got {max_seconds}")
    return value


def size_bound(max_seconds: float, sample_rate: int, channels: int) -> int:
    """The largest file a recording of ``max_seconds`` can be: uncompressed 64-bit samples plus
    container slack. A bigger file lies about its length (or holds something else)."""
    frames = math.ceil(max_seconds * sample_rate)
    return frames * max(1, channels) * _MAX_SAMPLE_BYTES + _HEADER_SLACK


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_source(path: str | os.PathLike, max_seconds: float | None):
    """Open ``path`` for reading if it is a regular audio file within ``max_seconds``; returns
    ``(file object, AudioInfo)`` positioned at 0. Every refusal is a one-line error naming it."""
    from hashing.audio import read_info

    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise AudioDecodeError(f"{p}: is a directory, not an audio file") from None
    except OSError as exc:
        raise AudioDecodeError(f"{p}: cannot open ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AudioDecodeError(f"{p}: is {_kind(st.st_mode)}, not an audio file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    f = os.fdopen(fd, "rb")
    try:
        if st.st_size == 0:
            raise AudioDecodeError(f"{p}: empty file (0 bytes)")
        info = read_info(_NamedReader(f, str(p), owns=False))
        if max_seconds is not None:
            if info.duration > max_seconds:
                raise AudioDecodeError(f"{p}: {info.duration:.0f} s of audio exceeds the limit of "
                                       f"{max_seconds:g} s")
            bound = size_bound(max_seconds, info.sample_rate, info.channels)
            if st.st_size > bound:
                raise AudioDecodeError(
                    f"{p}: {st.st_size} bytes is more than a {max_seconds:g} s recording can take "
                    f"({bound} bytes at {info.sample_rate} Hz, {info.channels} channel(s))")
        f.seek(0)
        return _NamedReader(f, str(p), owns=True), info
    except BaseException:
        f.close()
        raise


def read_source(path: str | os.PathLike, max_seconds: float | None):
    """``(bytes, AudioInfo)`` of a regular audio file within ``max_seconds`` (``open_source``)."""
    f, info = open_source(path, max_seconds)
    with f:
        try:
            data = f.read()
        except OSError as exc:
            raise AudioDecodeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return data, info


def read_or_keep_open(path: str | os.PathLike, max_seconds: float | None, keep_over: int):
    """``(bytes, None, size, sha256)`` of a regular audio file within ``max_seconds``, or, when
    it is larger than ``keep_over`` bytes, ``(None, open file at 0, size, sha256)`` read once for
    its SHA-256 a chunk at a time (ingest then codes and seals it from the file: issue 17,
    item 7). The caller closes the file."""
    import hashlib

    f, _ = open_source(path, max_seconds)
    try:
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        h = hashlib.sha256()
        if size <= keep_over:
            with f:
                data = f.read()
            return data, None, len(data), hashlib.sha256(data).hexdigest()
        n = 0
        for block in iter(lambda: f.read(keep_over), b""):
            h.update(block)
            n += len(block)
        f.seek(0)
        return None, f, n, h.hexdigest()
    except OSError as exc:
        f.close()
        raise AudioDecodeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except BaseException:
        f.close()
        raise


class _NamedReader(io.RawIOBase):
    """A read/seek view of an open file whose ``name`` is the path (soundfile's errors then name
    the file); ``owns``: closing the view closes the file (else the caller keeps it)."""

    def __init__(self, f, name: str, *, owns: bool) -> None:
        super().__init__()
        self._f = f
        self._owns = owns
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readall(self) -> bytes:  # one read of the rest, not 8 KiB at a time
        return self._f.read()

    def readinto(self, b) -> int:
        return self._f.readinto(b)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if self._owns and not self.closed:
            self._f.close()
        super().close()
