"""Tab-separated output for scripts (``list --tsv``), issue 15 "Low".

Why: a table is for people; ``list | grep``/``cut``/``sort`` want one recording a line, raw
values (seconds, bytes, an ISO time) and no borders. A tab, newline or backslash inside a
stored name is written as ``\\t``, ``\\n``, ``\\\\`` so that a hostile name cannot add a column
or a row.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["LIST_COLUMNS", "escape", "list_lines"]

LIST_COLUMNS = ("id", "name", "category", "duration_s", "size_bytes", "windows", "added")


def escape(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def list_lines(rows: Iterable[Any]) -> list[str]:
    """The header, then one line per recording row (``store.records.RecordingRow``)."""
    out = ["\t".join(LIST_COLUMNS)]
    for r in rows:
        added = r.added.isoformat() if hasattr(r.added, "isoformat") else r.added
        out.append("\t".join(escape(v) for v in (r.id, r.name, r.category, f"{r.duration:.3f}",
                                                  r.size, r.n_windows, added)))
    return out
