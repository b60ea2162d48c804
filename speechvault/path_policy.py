"""Which files of this machine a terminal-UI session may name (issue 15, item 4).

Why: the TUI's path inputs complete from the filesystem and its ingest tree browses it. For the
person at their own terminal that is what they want; for an SSH account confined to searching
one vault (``speechvault ssh-serve``) it showed the *server's* files (``/etc/ss`` ->
``/etc/ssh/``) and let the account read any of them as a query or write one by export. A
``PathPolicy`` says what a session may name:

* ``anywhere()``: whatever the account's own permissions allow (``speechvault tui``);
* ``under(root)``: only paths inside ``root`` after resolving ``~``, ``..`` and symlinks
  (``speechvault tui --root DIR``);
* ``nothing()``: no path at all (``ssh-serve``): the query comes on stdin instead
  (``ssh HOST search < q.wav``), completion is off and export is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from speechvault.errors import InvalidInputError

__all__ = ["PathPolicy", "NO_PATHS_HINT"]

#: what a session without paths says instead (the SSH search account)
NO_PATHS_HINT = ("this session names no files on the server: search by piping the query in "
                 "(`ssh HOST search < query.wav`)")


@dataclass(frozen=True)
class PathPolicy:
    """``root`` None and ``allowed`` True: anywhere; a ``root``: under it; ``allowed`` False:
    nothing."""

    root: Path | None = None
    allowed: bool = True

    @classmethod
    def anywhere(cls) -> "PathPolicy":
        return cls()

    @classmethod
    def under(cls, root: str | os.PathLike) -> "PathPolicy":
        r = Path(root).expanduser()
        if not r.is_dir():
            raise InvalidInputError(f"--root {root}: not a folder")
        return cls(root=r.resolve())

    @classmethod
    def nothing(cls) -> "PathPolicy":
        return cls(allowed=False)

    @property
    def names_paths(self) -> bool:
        return self.allowed

    def allows(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` (as typed: ``~`` and relative paths allowed) may be used."""
        if not self.allowed:
            return False
        if self.root is None:
            return True
        try:
            resolved = Path(path).expanduser().resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return False
        return resolved == self.root or self.root in resolved.parents

    def check(self, path: str | os.PathLike) -> Path:
        """``path`` as a Path, or ``InvalidInputError`` saying what this session may name."""
        if not self.allowed:
            raise InvalidInputError(NO_PATHS_HINT)
        if not self.allows(path):
            raise InvalidInputError(f"{path}: outside {self.root}, the folder this session may use")
        return Path(path).expanduser()

    def start_folder(self, preferred: str | os.PathLike | None = None) -> Path:
        """Where a file browser opens: ``preferred`` (default: the current folder) if allowed,
        else the root."""
        start = Path(preferred) if preferred is not None else Path.cwd()
        if self.root is not None and not self.allows(start):
            return self.root
        return start
