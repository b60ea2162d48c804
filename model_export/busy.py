"""``speechvault bench --busy``: one CPU-bound process pinned to one core while a block runs.

Why (issue 13): a user's laptop or an SSH server always has something else running, and a
library that spreads small numeric work over every core collapses when one of them is taken
(numpy's BLAS on two threads: 85x slower fingerprints). The bench therefore measures its target
figures twice, idle and with one core spinning, and reports the ratio.

The spinner is a plain ``python -c 'while True: pass'`` pinned (``sched_setaffinity``) to the
last core this process may use; it is killed when the block ends, whatever happens inside.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from typing import Iterator

__all__ = ["busy_core", "spinner_alive"]

_SPIN = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


def _last_core() -> int:
    try:
        return max(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS): the spinner is not pinned
        return (os.cpu_count() or 1) - 1


@contextlib.contextmanager
def busy_core(core: int | None = None, settle: float = 0.5) -> Iterator[dict]:
    """Run the block with one spinning process on ``core`` (default: the last one); yields
    ``{"pid": ..., "core": ...}``. ``settle`` seconds let it start before the block runs."""
    core = _last_core() if core is None else int(core)
    code = _SPIN if hasattr(os, "sched_setaffinity") else "while True:\n    pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code, str(core)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle)
        if proc.poll() is not None:
            raise RuntimeError(f"the busy process exited at once (status {proc.returncode})")
        yield {"pid": proc.pid, "core": core}
    finally:
        proc.kill()
        proc.wait()


def spinner_alive(pid: int) -> bool:
    """Whether a process with this pid still exists (for checking that the spinner stopped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
