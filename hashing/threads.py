"""Thread counts of the numeric libraries on the coding path: numpy's BLAS and LiteRT.

Why (issue 13): numpy's OpenBLAS starts one thread per core and runs even the encoder's small
matrix products (the Mel filter bank ``fb @ pw.T``, the fingerprint projection) on all of them.
On a machine with one core already busy - a laptop, an SSH server, a second speechvault process -
the threads wait on each other and a product that takes a millisecond takes a hundred. One
thread is never slower here, so the coding path pins BLAS to ``BLAS_THREADS`` while it runs and
gives the previous count back afterwards (the caller's own numpy work is left as it was).

Measured on the 2-core development machine (``docs/measure_threads.py``, median ms, the
configurations taking turns; "busy" adds one spinning process pinned to core 0; other
processes were running on the machine too, load average ~5):

==========================  =========  =========  =========  =========
10 s recording (10 windows)  idle, 1    idle, 2    busy, 1    busy, 2
==========================  =========  =========  =========  =========
features (BLAS threads)      25.9       128.9      58.9       203.6
fingerprint (BLAS threads)   1.65       97.0       1.58       156.4
inference (LiteRT threads)   15.8       15.8       23.2       24.0
encode_audio (BLAS, LiteRT)  51.7 (1,1) 224 (2,2)  69.9 (1,1) 354 (2,2)
==========================  =========  =========  =========  =========

(1 s clip: encode_audio 2.84 ms with 1/1 vs 14.2 ms with 2/2 idle, 2.83 vs 35.2 busy.)

LiteRT: its Python ``Interpreter`` already defaults to 1 thread (``num_threads or 1``), and the
model's convolutions are too small for a second thread to pay (the same time idle, slower busy);
the encoder passes ``LITERT_THREADS`` explicitly so an older runtime (``tflite_runtime``, whose
default was "as many as the runtime likes") behaves the same.

``threadpoolctl`` finds numpy's BLAS (pure Python, no dependencies), once: its
``threadpool_limits`` rescans the loaded libraries on every call (0.45 ms measured). The count is
set here under a lock with a depth count (~5 us per call), so it stays right when threads encode
at the same time: the first caller in sets it, the last one out restores it. threadpoolctl's own
limiter is not used for that because, for OpenBLAS's process-wide pool, it ignores the calls of
any thread but the first one that set a limit ("controlling thread", threadpoolctl >= 3.6): an
encoder in a worker thread (the TUI, a batch) would then run unpinned.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, TypeVar

from speechvault.shared_setting import SharedSetting

__all__ = ["BLAS_THREADS", "LITERT_THREADS", "blas_pinned", "pinned_blas", "blas_thread_counts"]

#: numpy BLAS threads while features, fingerprints and encoding run (see the table above).
BLAS_THREADS = 1
#: LiteRT interpreter threads of an ``Encoder`` made without ``num_threads``.
LITERT_THREADS = 1

F = TypeVar("F", bound=Callable[..., Any])

_libs: list[Any] | None = None


def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded now (numpy's OpenBLAS), found
    once: the coding path only ever uses numpy's."""
    global _libs
    if _libs is None:
        import numpy  # noqa: F401 - its BLAS must be loaded before the scan

        from threadpoolctl import ThreadpoolController

        _libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _libs


def _set(lib: Any, n: int) -> None:
    """Set a library's count from any thread (see the module docstring: threadpoolctl's public
    setter may ignore a thread that is not its "controlling" one)."""
    getattr(lib, "_real_set_num_threads", lib.set_num_threads)(n)


def blas_thread_counts() -> list[int]:
    """The current thread count of each BLAS library numpy loaded."""
    return [int(lib.num_threads) for lib in _blas_libraries()]


def _pin() -> list[int]:
    """Set every BLAS library to ``BLAS_THREADS``; returns the counts it replaced."""
    libs = _blas_libraries()
    saved = [int(lib.num_threads) for lib in libs]
    for lib, n in zip(libs, saved):
        if n != BLAS_THREADS:
            _set(lib, BLAS_THREADS)
    return saved


def _unpin(saved: list[int]) -> None:
    for lib, n in zip(_blas_libraries(), saved):
        if n != BLAS_THREADS:
            _set(lib, n)


_pinned = SharedSetting(_pin, _unpin)


def pinned_blas() -> contextlib.AbstractContextManager[None]:
    """Run the block with ``BLAS_THREADS`` BLAS threads; nested and concurrent uses share one
    setting, restored when the last one leaves."""
    return _pinned.held()


def blas_pinned(func: F) -> F:
    """Decorator: ``func`` runs inside :func:`pinned_blas`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with pinned_blas():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
