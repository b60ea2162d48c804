"""What an SSH account limited to one vault may ask for (``sshd`` ``ForceCommand``, issue 15).

Why: an SSH user who wants to search brings the query from *their* machine, so the query must
arrive on stdin (``ssh vault@host search < q.wav``), not as a path on the server; and nothing
else the client asks for (a shell, scp, sftp, another path) may run. ``sshd`` puts what the client
asked for in ``$SSH_ORIGINAL_COMMAND``; the forced command reads it and allows exactly:

* nothing, with a terminal (``ssh -t host``): the TUI, read-only;
* ``search`` or ``search --json``: the query audio on stdin, at most ``max_bytes``.

Everything else is refused in one line.
"""

from __future__ import annotations

import shlex

from speechvault.errors import InvalidInputError

__all__ = ["ALLOWED", "remote_request", "read_query"]

#: the remote commands allowed, and whether each wants JSON
ALLOWED = {("search",): False, ("search", "--json"): True}
#: the largest query accepted on stdin (bytes): 10 minutes of 16-bit 44.1 kHz stereo
DEFAULT_MAX_BYTES = 110 * 1024 * 1024


def remote_request(original_command: str | None) -> tuple[str, bool]:
    """``("tui", False)`` for no command, ``("search", as_json)`` for an allowed search;
    ``InvalidInputError`` in one line for anything else."""
    text = (original_command or "").strip()
    if not text:
        return "tui", False
    try:
        words = tuple(shlex.split(text))
    except ValueError:
        words = ()
    if words in ALLOWED:
        return "search", ALLOWED[words]
    raise InvalidInputError("this account only searches its vault: pipe a query in with "
                            "`ssh HOST search < query.wav` (or `search --json`), or use "
                            "`ssh -t HOST` for the terminal UI")


def read_query(stream, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The query audio from ``stream`` (binary), refusing more than ``max_bytes`` and nothing."""
    if hasattr(stream, "isatty") and stream.isatty():
        raise InvalidInputError("no query: pipe the audio in (`ssh HOST search < query.wav`)")
    data = getattr(stream, "buffer", stream).read(max_bytes + 1)
    if not data:
        raise InvalidInputError("no query: 0 bytes arrived on stdin")
    if len(data) > max_bytes:
        raise InvalidInputError(f"the query is larger than {max_bytes // (1024 * 1024)} MiB; "
                                "send an excerpt")
    return bytes(data)
