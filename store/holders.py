"""Who holds a vault, for the one-line "vault is busy" message (issue 17, item 4).

Why a module of its own: a refused process should say *who* is in the way and *how* (the audit
found "another process is writing to it" printed while nobody wrote). Two sources, both read-only:

* the kernel's lock table (``/proc/locks``, Linux): DuckDB locks the vault file with ``fcntl``,
  shared for a read-only connection and exclusive for a read-write one, so the table names the
  pid and the kind of every process that has the file open right now;
* the writer file ``<vault>.writer`` (``store.access``): the process that has the vault open for
  writing (an ingest between two of its commits holds no DuckDB lock) records its pid, its
  command and since when, mode 0600.

A command is shown as the program and its sub-command only (``speechvault ingest``), never the
arguments: they may name recordings, which an encrypted index keeps secret.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
from pathlib import Path

__all__ = ["Holder", "lock_holders", "describe", "short_command", "writer_record"]

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,30}")


@dataclasses.dataclass(frozen=True)
class Holder:
    """One process in the way: ``how`` is "read-only", "read-write" or "writer" (the writer file:
    open for writing, between commits)."""
    pid: int
    how: str
    command: str = ""
    since: str = ""


def short_command(argv: list[str]) -> str:
    """``/x/.venv/bin/speechvault ingest v.duckdb a.wav`` -> ``speechvault ingest``: the program's
    base name and the words after it up to the first argument that is not a plain word."""
    if not argv:
        return ""
    words = [os.path.basename(argv[0])]
    for a in argv[1:3]:
        if not _WORD.fullmatch(a):
            break
        words.append(a)
    return " ".join(w for w in words if w)


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return short_command([a.decode("utf-8", "replace") for a in raw.split(b"\0") if a])


def lock_holders(path: os.PathLike | str) -> list[Holder]:
    """Processes holding a lock on the file ``path`` now (Linux ``/proc/locks``; [] elsewhere or
    when the table cannot be read). Waiting requests (``->``) and this process are left out."""
    try:
        st = os.stat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    found: dict[int, Holder] = {}
    for line in table.splitlines():
        parts = line.split()
        if len(parts) < 6 or "->" in parts:
            continue
        _, _kind, _adv, mode, pid, where = parts[:6]
        if where != dev or not pid.lstrip("-").isdigit() or int(pid) in (-1, os.getpid()):
            continue
        how = "read-write" if mode == "WRITE" else "read-only"
        if int(pid) not in found or how == "read-write":
            found[int(pid)] = Holder(int(pid), how, _command_of(int(pid)))
    return sorted(found.values(), key=lambda h: (h.how != "read-write", h.pid))


def writer_record() -> str:
    """The writer file's content for this process (JSON: pid, command, since)."""
    import sys

    command = _command_of(os.getpid()) or short_command(sys.argv)  # /proc: the real program
    return json.dumps({"pid": os.getpid(), "command": command,
                       "since": _dt.datetime.now(_dt.timezone.utc).strftime("%H:%M:%S UTC")})


def parse_writer_record(text: str) -> Holder | None:
    try:
        d = json.loads(text)
        return Holder(int(d["pid"]), "writer", str(d.get("command", ""))[:80],
                      str(d.get("since", ""))[:40])
    except (ValueError, TypeError, KeyError):
        return None


def _one(h: Holder) -> str:
    who = f"pid {h.pid}" + (f" ({h.command})" if h.command else "")
    if h.how == "writer":
        return f"{who} has it open for writing" + (f" since {h.since}" if h.since else "")
    return f"{who} has it open {h.how}"


def describe(holders: list[Holder]) -> str:
    """``pid 12 (speechvault ingest) has it open for writing since 00:21:14 UTC`` (several joined
    by "; "), or a sentence saying the holder is not known."""
    if not holders:
        return "another process has it open (which one could not be found out)"
    shown = [_one(h) for h in holders[:3]]
    more = f"; and {len(holders) - 3} more" if len(holders) > 3 else ""
    return "; ".join(shown) + more
