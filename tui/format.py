"""Formatting of values shown in the TUI, in one place.

``Formatter(freeze=True)`` (or ``SPEECHVAULT_TUI_FREEZE=1`` in the environment) replaces the
values that change from run to run -- wall-clock timings and the "added" timestamps -- by fixed
placeholders, so that snapshot tests and the screenshots in ``docs/screenshots`` are stable.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from speechvault.clock import clock

FREEZE_ENV = "SPEECHVAULT_TUI_FREEZE"


def freeze_from_env() -> bool:
    return os.environ.get(FREEZE_ENV, "").strip().lower() not in ("", "0", "false", "no")


class Formatter:
    def __init__(self, freeze: bool | None = None) -> None:
        self.freeze = freeze_from_env() if freeze is None else bool(freeze)

    # -- run-to-run values -------------------------------------------------------------
    def seconds(self, value: float | None) -> str:
        if value is None:
            return "-"
        if self.freeze:
            return "#.### s"
        if value < 1.0:
            return f"{value * 1000:.1f} ms"
        return f"{value:.3f} s"

    def added(self, value, *, date_only: bool = False) -> str:
        if value is None:
            return "-"
        if self.freeze:
            return "YYYY-MM-DD" if date_only else "YYYY-MM-DD hh:mm"
        if isinstance(value, (int, float)):
            value = _dt.datetime.fromtimestamp(value, tz=_dt.timezone.utc)
        if isinstance(value, str):
            try:
                value = _dt.datetime.fromisoformat(value)
            except ValueError:
                return value[:16]
        if isinstance(value, _dt.datetime):
            return value.strftime("%Y-%m-%d" if date_only else "%Y-%m-%d %H:%M")
        return str(value)

    def file_size(self, n: int | None) -> str:
        """The vault file's size (DuckDB's block allocation varies from run to run)."""
        return "#.# KiB" if self.freeze else self.size(n)

    # -- stable values -----------------------------------------------------------------
    @staticmethod
    def duration(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        seconds = float(seconds)
        if seconds < 60:
            return f"{seconds:.2f} s"
        minutes, sec = divmod(seconds, 60)
        if minutes < 60:
            return f"{int(minutes)}:{sec:05.2f}"
        hours, minutes = divmod(minutes, 60)
        return f"{int(hours)}:{int(minutes):02d}:{int(sec):02d}"

    @staticmethod
    def size(n: int | None) -> str:
        if n is None:
            return "-"
        n = int(n)
        if n < 1024:
            return f"{n} B"
        value = float(n)
        for unit in ("KiB", "MiB", "GiB", "TiB"):
            value /= 1024.0
            if value < 1024 or unit == "TiB":
                return f"{value:.1f} {unit}"
        return f"{n} B"  # pragma: no cover

    @staticmethod
    def ber(value: float | None) -> str:
        return "-" if value is None else f"{float(value):.3f}"

    #: where in a recording an excerpt was found: 12.5 -> "0:12.5"; None -> "-"
    clock = staticmethod(clock)

    @staticmethod
    def path(value: str | os.PathLike) -> str:
        """A path as shown: relative to ``~`` when under it."""
        p = Path(value)
        try:
            return "~/" + str(p.relative_to(Path.home()))
        except ValueError:
            return str(p)
