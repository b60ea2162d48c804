"""What ``ingest PATHS`` means: files, folders and glob patterns turned into a list of files,
with what was left out and why.

Why the skipped list: a folder is read for the audio files speechvault decodes (by suffix);
anything else in it used to vanish without a word ("added 1 · errors 0" for a folder holding a
phone's ``.m4a`` memos too). Now those files are listed, so the summary can say so. M4A/AAC
memos are read when the ``m4a`` extra (PyAV) is installed, and listed as skipped, with the
``pip install`` line, when it is not. Hidden
files (``.DS_Store``, ``._memo.wav``) are left out silently: they are never recordings.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

#: suffixes of the formats soundfile (libsndfile) decodes
AUDIO_SUFFIXES = {
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
    ".snd", ".caf", ".w64", ".rf64",
}
#: suffixes PyAV decodes (phone voice memos), when the ``m4a`` extra is installed
MP4_SUFFIXES = {".m4a", ".aac"}
GLOB_CHARS = set("*?[")


@dataclass
class Sources:
    """``files`` to ingest; ``problems``: (argument, why it gave nothing), errors; ``skipped``:
    files inside the folders given whose format speechvault does not read."""

    files: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def is_audio_name(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in AUDIO_SUFFIXES or (suffix in MP4_SUFFIXES and _m4a_installed())


def _m4a_installed() -> bool:
    from speechvault.extras import installed

    return installed("m4a")


def skip_reason(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in MP4_SUFFIXES:
        from speechvault.extras import install_hint

        return f"M4A/AAC needs PyAV: {install_hint('m4a')}"
    return f"not a format speechvault reads ({suffix or 'no suffix'})"


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _why_none(others: list[Path], recursive: bool) -> str:
    if others:
        kinds = sorted({q.suffix.lower() or "no suffix" for q in others})
        return (f" ({len(others)} other file(s), not formats speechvault reads: "
                f"{', '.join(kinds[:5])})")
    return "" if recursive else " (use --recursive for sub-folders)"


def expand_sources(paths: list[str], recursive: bool) -> Sources:
    """Files as given; folders as their audio files (sub-folders with ``recursive``); globs as
    the files they match (``**`` with ``recursive``). Duplicates are listed once."""
    out = Sources()
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.files.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            walker = p.rglob("*") if recursive else p.iterdir()
            inside = sorted(q for q in walker if q.is_file() and not _hidden(q, p))
            found = [q for q in inside if is_audio_name(q)]
            others = [q for q in inside if not is_audio_name(q)]
            out.skipped += others
            if not found:
                out.problems.append((raw, "no audio files in this folder" + _why_none(others,
                                                                                     recursive)))
            for q in found:
                add(q)
        elif p.exists():
            add(p)
        elif GLOB_CHARS & set(raw):
            matches = sorted(glob.glob(raw, recursive=recursive))
            found = [Path(m) for m in matches if Path(m).is_file()]
            if not found:
                out.problems.append((raw, "pattern matches no files"))
            for q in found:
                add(q)
        else:
            out.problems.append((raw, "no such file or folder"))
    return out
