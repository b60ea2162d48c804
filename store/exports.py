"""Writing decrypted recordings to files: where (a file, or a folder), and what to do when
something is already there.

Why a module of its own: ``export -o`` and ``search --decrypt-to`` both write decrypted
originals and must agree on the rules, which are about the user's files rather than the vault:

* a target that is an existing folder, or ends with ``/``, is a folder: the recording is
  written inside it under its own name (the folder is created when the ``/`` says so);
* an existing file is never replaced silently: it is refused, unless ``force`` (replaced
  atomically) or, when ``identical_ok``, it already holds exactly the recording's bytes (its
  SHA-256 is the stored one: nothing to write, and no decryption needed);
* bytes go to ``NAME.partial`` first and are renamed into place, so an interrupted write
  never leaves a truncated file under the final name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from speechvault.errors import InvalidInputError, NotFoundError, SpeechVaultError

WRITTEN, REPLACED, IDENTICAL = "written", "replaced", "identical"


@dataclass(frozen=True)
class SavedFile:
    recording_id: int
    path: Path
    status: str  # WRITTEN, REPLACED (force) or IDENTICAL (already there, nothing written)

    def describe(self) -> str:
        note = {REPLACED: " (replaced)", IDENTICAL: " (already there, identical)"}
        return f"{self.path}{note.get(self.status, '')}"


def is_folder_target(target: str | os.PathLike) -> bool:
    """``target`` names a folder: it is one, or it ends with a path separator."""
    text = os.fspath(target)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def own_name(name: str, recording_id: int) -> str:
    """The recording's file name without any folder part ("", ".", ".." or a NUL replaced)."""
    from store.private_files import safe_file_name

    return safe_file_name(name, f"recording-{int(recording_id)}")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_recording(vault: Any, recording_id: int, target: str | os.PathLike, *,
                   force: bool = False, identical_ok: bool = False,
                   file_name: str | None = None) -> SavedFile:
    """Decrypt recording ``recording_id`` of the unlocked ``vault`` into ``target`` (a file or
    a folder, see the module docstring). ``file_name`` (default: the recording's own name) is
    the name used inside a folder."""
    row = vault.get(recording_id)
    dest = Path(target)
    if is_folder_target(target):
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        dest = dest / (file_name or own_name(row.name, recording_id))
    if dest.is_dir():
        raise InvalidInputError(f"{dest}: is a folder")
    status = WRITTEN
    if dest.exists():
        if identical_ok and file_sha256(dest) == row.sha256:
            return SavedFile(int(recording_id), dest, IDENTICAL)
        if not force:
            raise InvalidInputError(f"{dest}: already exists (use --force to overwrite)")
        status = REPLACED
    if not dest.parent.is_dir():
        raise NotFoundError(f"{dest.parent}: no such folder")
    from store.private_files import write_private

    # 0600 from creation, through an O_EXCL|O_NOFOLLOW temp file published atomically
    write_private(dest, vault.export_chunks(recording_id), overwrite=status == REPLACED)
    return SavedFile(int(recording_id), dest, status)


def save_matches(vault: Any, hits: Iterable[Any], folder: str | os.PathLike, *,
                 force: bool = False) -> tuple[list[SavedFile], list[tuple[str, str]]]:
    """``search --decrypt-to``: every matching hit as ``FOLDER/<id>_<name>``. A file already
    there with the same bytes counts as saved; one failure does not stop the others. Returns
    (saved, [(path or id, one-line message)])."""
    saved: list[SavedFile] = []
    failed: list[tuple[str, str]] = []
    matches = [hit for hit in hits if hit.is_match]
    if matches:
        Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    for hit in matches:
        rid = int(hit.recording_id)
        name = f"{rid}_{own_name(hit.name, rid)}"
        try:
            saved.append(save_recording(vault, rid, Path(folder) / name, force=force,
                                        identical_ok=True))
        except SpeechVaultError as exc:
            failed.append((str(Path(folder) / name), exc.message))
        except OSError as exc:
            failed.append((str(exc.filename or Path(folder) / name), exc.strerror or str(exc)))
    return saved, failed
