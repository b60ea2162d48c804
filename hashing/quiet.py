"""Keep decoder noise off the terminal while a file is decoded (issue 17, "Also").

Why: a user-facing command prints one ``error:`` line for a bad file and nothing else, but two
things below ``hashing.audio`` write to stderr on their own:

* soundfile's virtual-I/O callbacks run inside cffi; an exception there (``BytesIO.seek`` of a
  negative offset, asked for by libsndfile parsing a mutated header) cannot propagate and Python
  prints an "Exception ignored from cffi callback ... Traceback" block through
  ``sys.unraisablehook``. libsndfile then reports the failure itself, which ``hashing.audio``
  turns into ``AudioDecodeError``; the printed block is pure noise. ``decoder_quiet`` installs a
  hook that drops exactly those (cffi callback) reports and passes every other one on.
* libmpg123 (MP3) prints "error: dequantization failed!", "Note: Trying to resync..." straight to
  file descriptor 2. With ``set_native_silencing(True)`` (the command line turns it on)
  ``decoder_quiet`` points fd 2 at /dev/null while decoding; it is reference-counted so that
  concurrent or nested decodes restore the real stderr exactly once. It is off by default:
  Textual draws the terminal UI on fd 2, and a decode in a worker thread must not blank it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from typing import Any, Callable, Iterator

__all__ = ["decoder_quiet", "quiet_decoder", "set_native_silencing"]

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_saved_hook: Any = None
_silence_native = False


def set_native_silencing(enabled: bool) -> None:
    """Whether ``decoder_quiet`` also points fd 2 at /dev/null (native decoder messages)."""
    global _silence_native
    _silence_native = bool(enabled)


def _drop_cffi_callback_noise(unraisable: Any) -> None:
    if "cffi callback" in str(getattr(unraisable, "err_msg", "") or ""):
        return
    (_saved_hook or sys.__unraisablehook__)(unraisable)


def _enter() -> None:
    global _depth, _saved_fd, _saved_hook
    with _lock:
        _depth += 1
        if _depth > 1:
            return
        _saved_hook = sys.unraisablehook
        sys.unraisablehook = _drop_cffi_callback_noise
        if not _silence_native:
            return
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            _saved_fd = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, 2)
            finally:
                os.close(null)
        except OSError:
            _saved_fd = None


def _leave() -> None:
    global _depth, _saved_fd, _saved_hook
    with _lock:
        _depth -= 1
        if _depth > 0:
            return
        if _saved_fd is not None:
            with contextlib.suppress(OSError):
                os.dup2(_saved_fd, 2)
            os.close(_saved_fd)
            _saved_fd = None
        sys.unraisablehook = _saved_hook or sys.__unraisablehook__
        _saved_hook = None


@contextlib.contextmanager
def decoder_quiet() -> Iterator[None]:
    """No cffi-callback tracebacks and no native decoder messages on stderr for the duration."""
    _enter()
    try:
        yield
    finally:
        _leave()


def quiet_decoder(func: Callable) -> Callable:
    """``func`` runs under ``decoder_quiet``."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with decoder_quiet():
            return func(*args, **kwargs)

    return wrapper
