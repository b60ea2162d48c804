"""Where in a recording something is, as people read it: 12.5 -> "0:12.5", 3725.25 -> "1:02:05.2".

One function for the command line and the TUI (an excerpt's offset in its recording)."""

from __future__ import annotations

__all__ = ["clock"]


def clock(seconds: float | None) -> str:
    """``m:ss.s`` (``h:mm:ss.s`` from an hour on); "-" when there is no position."""
    if seconds is None:
        return "-"
    h, rest = divmod(float(seconds), 3600)
    m, sec = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{sec:04.1f}" if h else f"{int(m)}:{sec:04.1f}"
