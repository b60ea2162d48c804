"""The rows a search table shows: the matches, then the nearest non-matching recordings up to
``--top`` (issue 15, "Low").

Why: ``SearchResult.hits`` holds only the matches when there is one, so ``search --top 10``
with one match showed one row -- the neighbours that tell how clear the match is (a match at
BER 0.05 with the next at 0.45, or at 0.24 with the next at 0.25) were hidden, though the
result has them in ``nearest``. The TUI already showed both.
"""

from __future__ import annotations

from typing import Any

__all__ = ["shown_hits", "evidence_words"]


def shown_hits(result: Any) -> list:
    """``result.hits`` followed by the ``result.nearest`` recordings not among them, as many rows
    as the search asked for (``nearest`` holds at most ``top``)."""
    hits = list(result.hits)
    nearest = list(getattr(result, "nearest", None) or [])
    seen = {h.recording_id for h in hits}
    rows = hits + [h for h in nearest if h.recording_id not in seen]
    return rows[:max(len(hits), len(nearest))]


def evidence_words(hit: Any) -> str:
    """What an excerpt match rests on, in words: "evidence 0.33 over 1 window" (the demo and
    the TUI's verdict; the CLI table's column is ``commands.tables.evidence_text``)."""
    n = int(hit.windows)
    return f"evidence {float(hit.evidence):.2f} over {n} window{'s' if n != 1 else ''}"
