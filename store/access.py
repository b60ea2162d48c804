"""How vault processes share one file: short sessions, a writer turnstile, bounded waits.

Why (issue 17, item 4): DuckDB lets either one process open a file read-write or many open it
read-only, and refuses the others at once instead of queueing them. A searcher that keeps the
vault open for a whole SSH or TUI session therefore locked every ingest out, and an ingest that
kept it open for its 77 s refused every search. The options were measured
(docs/reliability.md, "Readers during an ingest"); this module is the one chosen:

* **shared handles** hold the DuckDB file only for one operation, a *session*: a search's SQL,
  one ingest batch's commit, a listing. Between sessions they keep what they need in memory
  (metadata, the model, the unwrapped key) and no lock. An ingest encodes its next files
  outside any session, so readers get in between its commits. A shared *reader* keeps its
  connection idle after a session and closes it within ``IDLE_POLL`` s of a writer taking the
  turnstile: connecting (~30 ms) would otherwise cost more than the search itself.
* **a turnstile**, ``<vault>.lock`` (``flock``): a writer takes it exclusively for its session,
  so new readers queue behind it rather than starving it; a reader takes it shared only while it
  connects. Sessions are short (tens of ms), so either side waits little.
* **one writer at a time**, ``<vault>.writer`` (``flock``, exclusive for the whole life of a
  read-write handle, whether shared or not): a second ingest waits for the first one; the file
  records who holds it (``store.holders``) for the "busy" message.
* **bounded waits**: every connect retries DuckDB's refusal with backoff until ``wait``
  seconds have passed, then raises ``VaultBusyError`` naming the holder.

Held handles (the library's default: ``Vault.open(..., shared=False)``) keep one connection for
their life as before; they take part in the waits and the writer file, so a shared process
waits for them and names them. The lock files are created mode 0600 next to the vault; where they
cannot be created (a read-only directory) the process goes without them and relies on DuckDB's
own lock and the retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from speechvault.errors import VaultBusyError
from store import holders as _holders
from store import private_files as _private

__all__ = ["DEFAULT_READ_WAIT", "DEFAULT_WRITE_WAIT", "VaultAccess", "Sessions", "busy_error",
           "in_sessions", "lock_file", "writer_file"]

#: seconds a search (or another read) waits for a writer's session before "vault is busy"
DEFAULT_READ_WAIT = 10.0
#: seconds a write (ingest, delete, passwd, ...) waits for another writer or for readers
DEFAULT_WRITE_WAIT = 30.0
_FIRST_PAUSE, _MAX_PAUSE = 0.002, 0.05
#: how often a shared reader's idle connection checks for a waiting writer (seconds)
IDLE_POLL = 0.01


def lock_file(vault: Path) -> Path:
    return Path(str(vault) + ".lock")


def writer_file(vault: Path) -> Path:
    return Path(str(vault) + ".writer")


def _retry(attempt: Callable[[], Any], deadline: float) -> Any:
    """Call ``attempt`` until it returns something other than None or ``deadline`` passes
    (then None); pauses grow from 2 ms to 50 ms so a short session is not waited out long."""
    pause = _FIRST_PAUSE
    while True:
        got = attempt()
        if got is not None or time.monotonic() >= deadline:
            return got
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, _MAX_PAUSE)


class _Flock:
    """One lock file opened by this handle (its own open file description, so two handles in one
    process exclude each other as two processes do). ``None`` fd: the file could not be opened."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fd: int | None = None
        if path is None:
            return
        try:
            with _private.private_umask():
                self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  _private.PRIVATE_MODE)
        except OSError:
            self.fd = None

    def take(self, exclusive: bool, deadline: float) -> bool:
        if self.fd is None:
            return True
        op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB

        def attempt() -> bool | None:
            try:
                fcntl.flock(self.fd, op)
                return True
            except BlockingIOError:
                return None
        return bool(_retry(attempt, deadline))

    def drop(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # also drops its lock
            self.fd = None


def _is_database(path: Path) -> bool:
    """The file starts like a DuckDB database (its magic "DUCK" at byte 8): only then are lock
    files made next to it (opening a recording by mistake must leave nothing beside it)."""
    try:
        with open(path, "rb") as f:
            return f.read(12)[8:12] == b"DUCK"
    except OSError:
        return False


def _current_writer(vault: Path) -> _holders.Holder | None:
    """The process with the vault open for writing (its writer file is locked), else None."""
    try:
        fd = os.open(writer_file(vault), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holders.parse_writer_record(os.read(fd, 4096).decode("utf-8", "replace"))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def busy_error(vault: Path, waited: float | None = None) -> VaultBusyError:
    """"vault is busy: <who holds it and how>" from the kernel's lock table and the writer file."""
    found = _holders.lock_holders(vault)
    writer = _current_writer(vault)
    if writer is not None and writer.pid != os.getpid() \
            and not any(h.pid == writer.pid for h in found):
        found.append(writer)
    tail = "" if waited is None else f" (waited {waited:.0f} s; --wait SECONDS waits longer)"
    return VaultBusyError(f"vault is busy: {_holders.describe(found)}{tail}")


class VaultAccess:
    """The way one ``Vault`` handle reaches its file: ``connector`` opens a DuckDB connection
    (raising ``VaultBusyError`` when DuckDB refuses), ``wait`` bounds every wait."""

    def __init__(self, path: Path, connector: Callable[[], Any], *, read_only: bool,
                 shared: bool, wait: float = 0.0) -> None:
        self.path = Path(path)
        self.connector = connector
        self.read_only = bool(read_only)
        self.shared = bool(shared)
        self.wait = max(0.0, float(wait))
        #: lock files only next to a database (not next to a file opened by mistake)
        self._coordinated = _is_database(self.path)
        self._turnstile = _Flock(lock_file(self.path) if self._coordinated else None)
        self._writer: _Flock | None = None
        self._idle: Any = None
        self._idle_guard = threading.Lock()
        self._watcher: threading.Thread | None = None
        self.fresh = True

    # -- the handle: one writer at a time ------------------------------------------------------
    def open_handle(self) -> None:
        """A read-write handle takes the writer file for its whole life and records itself."""
        if self.read_only:
            return
        t0 = time.monotonic()
        self._writer = _Flock(writer_file(self.path) if self._coordinated else None)
        if not self._writer.take(True, t0 + self.wait):
            err = busy_error(self.path, time.monotonic() - t0)
            self.close()
            raise err
        if self._writer.fd is not None:
            os.ftruncate(self._writer.fd, 0)
            os.pwrite(self._writer.fd, _holders.writer_record().encode(), 0)

    def close(self) -> None:
        self._drop_idle()
        if self._writer is not None:
            if self._writer.fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._writer.fd, 0)
            self._writer.close()
            self._writer = None
        self._turnstile.close()

    # -- sessions --------------------------------------------------------------------------------
    def connect(self) -> Any:
        """A connection, after waiting (at most ``wait`` s in all) for the turnstile and for
        DuckDB's lock. A reader leaves the turnstile once connected; a writer keeps it until
        ``disconnect`` so readers queue behind it. ``fresh``: False when a shared reader got
        its idle connection back (nothing can have changed: it kept DuckDB's shared lock)."""
        con = self._take_idle()
        self.fresh = con is None
        if con is not None:
            return con
        t0 = time.monotonic()
        deadline = t0 + self.wait
        if not self._turnstile.take(not self.read_only, deadline):
            raise busy_error(self.path, time.monotonic() - t0)
        self._refusal: VaultBusyError | None = None
        try:
            con = _retry(self._try_connect, deadline)
            if con is None:
                if self._refusal is not None and "this process" in str(self._refusal):
                    raise self._refusal  # another handle of this process: its own message
                raise busy_error(self.path, time.monotonic() - t0)
        except BaseException:
            self._turnstile.drop()
            raise
        if self.read_only:
            self._turnstile.drop()
        return con

    def _try_connect(self) -> Any:
        try:
            with self._umask():
                return self.connector()
        except VaultBusyError as exc:  # retried: the holder's session may end soon
            self._refusal = exc
            return None

    def disconnect(self, con: Any) -> None:
        """Close a session's connection (a writer's close folds its log into the file) and let
        queued readers in. A shared reader keeps it idle instead, until a writer takes the
        turnstile (``_watch``): connecting costs more than most searches."""
        if con is not None and self.read_only and self.shared and self._turnstile.fd is not None:
            with self._idle_guard:
                self._idle = con
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, daemon=True,
                                                     name=f"vault-idle-{self.path.name}")
                    self._watcher.start()
            return
        try:
            if con is not None:
                with self._umask():
                    con.close()
        finally:
            if not self.read_only:
                self._turnstile.drop()

    # -- a shared reader's idle connection -------------------------------------------------------
    def _writer_waiting(self) -> bool:
        """A writer holds the turnstile (this reader's shared request would block)."""
        try:
            fcntl.flock(self._turnstile.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except (OSError, TypeError):
            return False
        fcntl.flock(self._turnstile.fd, fcntl.LOCK_UN)
        return False

    def _take_idle(self) -> Any:
        """The idle connection if no writer is waiting; else close it and return None."""
        with self._idle_guard:
            con, self._idle = self._idle, None
        if con is not None and self._writer_waiting():
            con.close()
            return None
        return con

    def _watch(self) -> None:
        """Close the idle connection as soon as a writer takes the turnstile (checked every
        ``IDLE_POLL`` s), so DuckDB lets it in; ends when there is nothing idle to watch."""
        while True:
            time.sleep(IDLE_POLL)
            with self._idle_guard:
                if self._idle is None:
                    self._watcher = None
                    return
                if self._writer_waiting():
                    with contextlib.suppress(Exception):
                        self._idle.close()
                    self._idle = None
                    self._watcher = None
                    return

    def _drop_idle(self) -> None:
        with self._idle_guard:
            con, self._idle = self._idle, None
        if con is not None:
            with contextlib.suppress(Exception):
                con.close()

    def _umask(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if self.read_only else _private.private_umask()


def in_sessions(lock: "Sessions", items: list, every: int = 32) -> Iterator[tuple[int, Any]]:
    """``enumerate(items)`` with one session (``lock`` held) per ``every`` items, so a long read
    such as ``verify`` lets a writer in between chunks without connecting once per item."""
    for start in range(0, len(items), every):
        with lock:
            for i in range(start, min(start + every, len(items))):
                yield i, items[i]


class Sessions:
    """The re-entrant lock around a vault handle's operations. For a shared handle the outermost
    ``with`` opens a session (``begin``) and its exit ends it (``end``): nested calls (``info``
    calling ``category_counts``) share one session, and threads of one handle take turns."""

    def __init__(self, begin: Callable[[], None], end: Callable[[], None], shared: bool) -> None:
        self._rlock = threading.RLock()
        self._depth = 0
        self._begin, self._end = begin, end
        self.shared = bool(shared)

    def __enter__(self) -> "Sessions":
        self._rlock.acquire()
        self._depth += 1
        if self._depth == 1 and self.shared:
            try:
                self._begin()
            except BaseException:
                self._depth -= 1
                self._rlock.release()
                raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._depth == 1 and self.shared:
                self._end()
        finally:
            self._depth -= 1
            self._rlock.release()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The lock without a session (closing a handle)."""
        with self._rlock:
            yield
