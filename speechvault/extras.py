"""Which optional extras a command needs, checked before it does anything.

Why: a command that finds out half-way that a package is missing has already spent minutes
(eval trains, bench codes thousands of clips) and ends in a traceback. ``require`` looks the
packages up with ``importlib.util.find_spec`` -- nothing is imported, so the check costs
milliseconds -- and raises one ``RuntimeMissingError`` naming every missing package and the
``pip install`` line that brings them.
"""

from __future__ import annotations

import importlib.util

from speechvault.errors import RuntimeMissingError

#: extra (pyproject.toml [project.optional-dependencies]) -> import names it provides
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("tensorflow", "matplotlib"),
    "bench": ("faiss",),
    "lake": ("boto3", "duckdb_extension_httpfs"),  # s3:// lakes (store/lake_s3.py)
    "clickhouse": ("chdb",),
    "spark": ("pyspark",),
    "m4a": ("av",),  # PyAV: M4A/AAC voice memos (hashing/av_audio.py)
}


def installed(extra: str) -> bool:
    """Whether every package of ``extra`` is importable (looked up, not imported)."""
    return not missing(EXTRAS[extra])


def missing(modules: tuple[str, ...] | list[str]) -> list[str]:
    """The import names among ``modules`` that are not installed (in the given order)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or half-installed package
            found = False
        if not found:
            out.append(name)
    return out


def install_hint(extra: str) -> str:
    return f"pip install 'speechvault[{extra}]'"


def require(command: str, extra: str) -> None:
    """``RuntimeMissingError`` (one line) unless every package of ``extra`` is installed."""
    absent = missing(EXTRAS[extra])
    if absent:
        raise RuntimeMissingError(
            f"`speechvault {command}` needs {' and '.join(absent)}, not installed here: "
            f"{install_hint(extra)}")


def note_if_missing(extra: str, what_is_lost: str) -> str | None:
    """A one-line note for an extra a command can do without (e.g. bench without FAISS), or
    None when it is installed."""
    absent = missing(EXTRAS[extra])
    if not absent:
        return None
    return f"note: {' and '.join(absent)} not installed: {what_is_lost} ({install_hint(extra)})"
