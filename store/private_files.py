"""Files only their owner can read: the vault, its write-ahead log, exports (issue 17, item 5).

Why a module of its own: DuckDB creates the vault's ``.wal`` (and spilled temporary files) itself,
with the process umask, at the first commit after every checkpoint, so a ``chmod`` after the fact
leaves a window in which another local user can open a world-readable WAL holding recording names,
codes and a fresh key wrap. The only way to close it is to have the umask at 077 whenever DuckDB may
create a file: ``private_umask()`` does that, re-entrant and shared by threads (the umask is per
process, so it is set on the first entry and restored on the last exit).

Exports are written by us: ``write_private`` opens its temporary file with
``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600 under a random name, so a symbolic link planted at a
predictable ``.partial`` path is never followed, then publishes it atomically (``link`` when the
destination must not exist, which also refuses a file that appeared meanwhile; ``replace`` for
``--force``). ``publish_new`` does the same for a file built elsewhere (``init``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from typing import Iterable
from pathlib import Path

from speechvault.errors import InvalidInputError
from speechvault.shared_setting import SharedSetting

__all__ = ["PRIVATE_MODE", "private_umask", "write_private", "publish_new", "refuse_existing",
           "safe_file_name"]

PRIVATE_MODE = 0o600
_UMASK = 0o077


_umask = SharedSetting(lambda: os.umask(_UMASK), os.umask)


def private_umask() -> contextlib.AbstractContextManager[None]:
    """Umask 077 for the duration (nested and multi-threaded use restore the caller's umask once,
    when the last user leaves)."""
    return _umask.held()


def refuse_existing(path: Path, what: str = "") -> None:
    """``InvalidInputError`` if anything is at ``path``, a dangling symbolic link included
    (``Path.exists`` follows links and says False for one; creating through it would write
    wherever the link points)."""
    if os.path.lexists(path):
        kind = "a symbolic link" if os.path.islink(path) else "a file"
        raise InvalidInputError(f"{path}: already exists ({kind}); {what or 'refusing to overwrite it'}")


def _temp_beside(dest: Path) -> tuple[Path, int]:
    """A new 0600 file next to ``dest`` (same file system, so publishing is a rename or link)."""
    for _ in range(16):
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.partial")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         PRIVATE_MODE)
        except FileExistsError:
            continue
        return tmp, fd
    raise InvalidInputError(f"{dest.parent}: could not create a private temporary file")


def publish_new(tmp: Path, dest: Path) -> None:
    """Give the finished file ``tmp`` the name ``dest``, which must not exist (checked atomically
    by ``link``: an existing file or link at ``dest`` is left alone). ``tmp`` is removed."""
    try:
        os.link(tmp, dest, follow_symlinks=False)
    except FileExistsError:
        raise InvalidInputError(f"{dest}: already exists; not overwriting it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        refuse_existing(dest)  # a file system without hard links: check, then rename
        os.replace(tmp, dest)
        return
    os.unlink(tmp)


def write_private(dest: Path, data: "bytes | Iterable[bytes]", *, overwrite: bool = False) -> Path:
    """Write ``data`` (bytes, or pieces of them: a long recording streamed out) to ``dest`` as a
    new 0600 file, atomically (readers never see half a file; a piece that fails its check
    leaves no file). ``overwrite`` replaces an existing file (or link: the link itself, never
    its target)."""
    dest = Path(dest)
    tmp, fd = _temp_beside(dest)
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in ((data,) if isinstance(data, (bytes, bytearray, memoryview)) else data):
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, dest)
        else:
            publish_new(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest


def safe_file_name(name: object, fallback: str) -> str:
    """A stored recording name usable as one file name in a folder: its last path component, or
    ``fallback`` when that is empty, ``.``/``..`` or holds a NUL (a damaged or hostile vault row
    must not make an export write elsewhere or crash)."""
    base = Path(str(name)).name
    if base in ("", ".", "..") or "\x00" in base:
        return fallback
    return base
