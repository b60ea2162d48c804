"""Whether the TUI has a terminal to run in, and whether that terminal has gone.

Why this module exists: Textual reads its keys from stdin in a thread that never stops at end
of file. Started without a terminal (``ssh host ls /`` or ``scp`` against an account whose
``ForceCommand`` is the TUI, ``speechvault tui v.duckdb </dev/null``) or left behind by a
closed SSH connection, the TUI would spin on that end of file for ever, holding the vault open.
So the TUI refuses to start without a terminal (:func:`require_terminal`), and once running it
exits on a hang-up: SIGHUP, or stdin reporting a hang-up when SIGHUP was ignored
(:func:`stdin_hung_up`, polled by the app).

Imports nothing from Textual: the CLI checks the terminal before loading the TUI.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from typing import IO, Callable

from speechvault.errors import NotATerminalError

#: exit status after a hang-up, as a shell reports a process ended by SIGHUP (128 + 1)
HANGUP_EXIT_STATUS = 129


def _is_tty(stream: IO | None) -> bool:
    try:
        return stream is not None and os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or no file descriptor
        return False


def require_terminal(stdin: IO | None = None, stdout: IO | None = None) -> None:
    """Raise ``NotATerminalError`` unless both stdin and stdout are terminals."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    missing = [name for name, stream in (("stdin", stdin), ("stdout", stdout))
               if not _is_tty(stream)]
    if missing:
        raise NotATerminalError(
            f"the terminal UI needs a terminal ({' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not one); over SSH connect with `ssh -t`")


def stdin_hung_up(fd: int | None = None) -> bool:
    """True when stdin's terminal has hung up (or stdin is closed): what a closed SSH
    connection leaves behind when SIGHUP did not end the process."""
    if not hasattr(select, "poll"):  # Windows: no poll(), and no SSH hang-up to watch for
        return False
    if fd is None:
        try:
            fd = sys.__stdin__.fileno()
        except (OSError, ValueError, AttributeError):
            return True
    poller = select.poll()
    poller.register(fd, select.POLLHUP | select.POLLERR)
    try:
        events = poller.poll(0)
    except OSError:
        return True
    return any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, mask in events)


def detach_from_terminal() -> None:
    """Point stdin, stdout and stderr at /dev/null. After a hang-up every write to the
    terminal fails, and Textual's shutdown (which writes the terminal's reset sequences through
    a bounded queue) would block for ever on the first one; with /dev/null it ends normally."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def exit_after(release: Callable[[], None]) -> None:
    """In a thread: ``release()`` (close what is open), then end the process with status 129.

    Why not just ``App.exit``: when the terminal hung up before we noticed, Textual's output
    thread has already died on the first failed write, and its shutdown then blocks for ever
    on a full output queue. The caller still asks the app to exit normally; whichever ends the
    process first, the vault has been closed (or, at worst, a read-only handle is dropped by
    the exit: nothing is written)."""

    def run() -> None:
        try:
            release()
        finally:
            os._exit(HANGUP_EXIT_STATUS)

    threading.Thread(target=run, name="speechvault-hangup", daemon=True).start()
