"""Command-line arguments naming audio -> the files they mean: files, folders, glob patterns.

One place for ``ingest`` and ``search`` (several queries at once), so both read a folder or a
pattern the same way. Paths only: nothing here opens audio.
"""

from __future__ import annotations

import glob
from pathlib import Path

__all__ = ["AUDIO_SUFFIXES", "GLOB_CHARS", "expand_sources"]

AUDIO_SUFFIXES = {
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
    ".snd", ".caf", ".w64", ".rf64",
}
GLOB_CHARS = set("*?[")


def expand_sources(paths: list[str], recursive: bool) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (audio files inside; sub-folders with ``recursive``) and globs -> files,
    each once, in the order given (a folder's and a pattern's files sorted), and the arguments
    that named nothing with the reason: ``(files, [(argument, problem), ...])``."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            walker = p.rglob("*") if recursive else p.iterdir()
            found = sorted(q for q in walker if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                problems.append((raw, "no audio files in this folder"
                                 + ("" if recursive else " (use --recursive for sub-folders)")))
            for q in found:
                add(q)
        elif p.exists():
            add(p)
        elif GLOB_CHARS & set(raw):
            matches = sorted(glob.glob(raw, recursive=recursive))
            found = [Path(m) for m in matches if Path(m).is_file()]
            if not found:
                problems.append((raw, "pattern matches no files"))
            for q in found:
                add(q)
        else:
            problems.append((raw, "no such file or folder"))
    return files, problems
