"""Path completion for the TUI's path inputs: a textual ``Suggester`` over the filesystem.

Typing ``~/rec/a`` suggests the first entry of ``~/rec`` that starts with ``a`` (directories end
with ``/``); the right arrow (or end) accepts it, as with any textual suggester. A session's
``PathPolicy`` bounds it: nothing outside its root is suggested, and a session that names no
paths (the SSH search account) gets no suggestion at all -- it used to list the server's files.
"""

from __future__ import annotations

import asyncio
import os

from textual.suggester import Suggester

from speechvault.path_policy import PathPolicy

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au",
                  ".m4a", ".aac")


def complete_path(value: str, *, audio_first: bool = True, limit: int = 2000,
                  policy: PathPolicy | None = None) -> str | None:
    if not value or (policy is not None and not policy.names_paths):
        return None
    completed = _complete(value, audio_first=audio_first, limit=limit)
    if completed is not None and policy is not None and not policy.allows(completed):
        return None
    return completed


def _complete(value: str, *, audio_first: bool, limit: int) -> str | None:
    expanded = os.path.expanduser(value)
    directory, prefix = os.path.split(expanded)
    directory_for_listing = directory or "."
    try:
        with os.scandir(directory_for_listing) as it:
            entries = []
            for i, entry in enumerate(it):
                if i >= limit:
                    break
                if entry.name.startswith(prefix) and (prefix.startswith(".")
                                                      or not entry.name.startswith(".")):
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        is_dir = False
                    entries.append((entry.name, is_dir))
    except OSError:
        return None
    if not entries:
        return None

    def rank(item):
        name, is_dir = item
        audio = name.lower().endswith(AUDIO_SUFFIXES)
        return (0 if is_dir else (1 if (audio or not audio_first) else 2), name)

    name, is_dir = sorted(entries, key=rank)[0]
    completed = name + ("/" if is_dir else "")
    # keep what the user typed (e.g. "~") and append the rest
    rest = completed[len(prefix):]
    if not rest:
        return None
    return value + rest


class PathSuggester(Suggester):
    """Suggests the completion of a path from the filesystem (never cached: dirs change)."""

    def __init__(self, policy: PathPolicy | None = None) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.policy = policy

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(complete_path, value, policy=self.policy)
