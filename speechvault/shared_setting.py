"""A process-wide setting held while any caller needs it (the umask, the BLAS thread count).

Why one class: both settings belong to the whole process, while the code that needs them runs
nested and in several threads at once (TUI workers, batch searches). Setting on every entry and
restoring on every exit would let one thread's exit undo another's setting; so the first caller
in applies the setting, the last one out restores what was there before.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

__all__ = ["SharedSetting"]


class SharedSetting:
    """``apply()`` returns what it replaced; ``restore(saved)`` puts it back."""

    def __init__(self, apply: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        self._apply, self._restore = apply, restore
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: Any = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._saved = self._apply()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._restore(self._saved)
