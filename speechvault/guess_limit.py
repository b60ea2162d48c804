"""Back-off between wrong passphrases in one session, and a cap (issue 15 item 5).

Why: over SSH the TUI's unlock dialog runs on the server, and every guess costs one scrypt
(128 MiB, a fraction of a second). Without a limit an account that may only search could keep
the server busy guessing for ever. So a session waits ``base_delay * 2**(n-1)`` seconds (at most
``max_delay``) before checking a passphrase after ``n`` wrong ones, and after ``max_failures``
it refuses to check any more: the user reconnects, which the server's own SSH limits govern.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from speechvault.errors import TooManyAttemptsError

__all__ = ["GuessLimiter"]


class GuessLimiter:
    """One session's count of wrong passphrases. Thread-safe (checks run in workers)."""

    def __init__(self, max_failures: int = 5, base_delay: float = 1.0, max_delay: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_failures = int(max_failures)
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self._sleep = sleep
        self._lock = threading.Lock()
        self.failures = 0

    def delay(self) -> float:
        """Seconds to wait before the next check."""
        n = self.failures
        return 0.0 if n == 0 else min(self.max_delay, self.base_delay * 2.0 ** (n - 1))

    def before_attempt(self) -> None:
        """Wait the back-off, or refuse once the session has used up its tries."""
        with self._lock:
            if self.failures >= self.max_failures:
                raise TooManyAttemptsError(
                    f"{self.failures} wrong passphrases in this session: no more tries here "
                    "(reconnect to try again)")
            wait = self.delay()
        if wait > 0:
            self._sleep(wait)

    def record(self, ok: bool) -> None:
        with self._lock:
            self.failures = 0 if ok else self.failures + 1
