"""The export room of ``Vault``: the sealed recordings read back and checked -- ``export``,
``export_chunks``, ``export_to`` and ``verify`` (every blob's tag and SHA-256, the index rows, the
integrity MACs of ``store.integrity``).

Why a module of its own: everything here opens blobs with the master key (the passphrase) and
writes nothing to the vault, apart from the keyless read side in ``store.vault``. ``VaultExport``
is a mixin: its methods run on a ``Vault`` (``self._lock``, ``self._db()``, ``self._query``,
``self._require_key``, ...); ``store.rekey`` and ``store.lake`` use ``_open_blob``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterator

import duckdb

from speechvault.errors import IntegrityError, InvalidInputError, NotFoundError, SpeechVaultError
from store import access as _access
from store import blob_chunks as _chunks
from store import damage as _damage
from store import integrity as _integrity
from store import private_files as _private
from store.records import VerifyReport


class VaultExport:
    """``Vault.export``, ``export_chunks``, ``export_to`` and ``verify`` (mixed into
    ``store.vault.Vault``)."""

    def _open_blob(self, master: bytes, blob: bytes, sha: str, rid: int) -> bytes:
        from store.envelope import open_sealed

        if not isinstance(sha, str) or not _damage.HEX64.fullmatch(sha):
            raise IntegrityError(f"recording {rid}: its stored SHA-256 is malformed")
        ad = (_integrity.blob_ad(self.vault_id, rid, sha) if self.bound
              else _integrity.legacy_ad(sha))
        try:
            data = open_sealed(bytes(blob), master, associated_data=ad)
        except IntegrityError as exc:
            raise IntegrityError(f"recording {rid}: {exc.message}") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise IntegrityError(f"recording {rid}: decrypted bytes do not match the stored SHA-256")
        return data

    @_damage.guarded
    def export(self, recording_id: int) -> bytes:
        """The original bytes of a recording, decrypted and checked (tag, then SHA-256)."""
        return b"".join(self.export_chunks(recording_id))

    @_damage.guarded
    def export_chunks(self, recording_id: int) -> Iterator[bytes]:
        """The original bytes in pieces, each checked as it is read (``store.blob_chunks``):
        a long recording is never held whole. The SHA-256 is checked after the last piece."""
        master = self._require_key("export")
        with self._lock:
            r = self._db().execute("SELECT blob, sha256 FROM recordings WHERE id = ?",
                                   [int(recording_id)]).fetchone()
        if r is None:
            raise NotFoundError(f"no recording with id {recording_id}")
        return self._plain_chunks(master, r[0], r[1], int(recording_id))

    def _plain_chunks(self, master: bytes, blob: bytes, sha: str, rid: int) -> Iterator[bytes]:
        if not _chunks.is_chunked(blob):
            yield self._open_blob(master, blob, sha, rid)
            return
        if not isinstance(sha, str) or not _damage.HEX64.fullmatch(sha):
            raise IntegrityError(f"recording {rid}: its stored SHA-256 is malformed")
        try:
            yield from _chunks.open_chunks(self._query, _chunks.opener(master), self.vault_id,
                                           rid, sha)
        except duckdb.Error as exc:  # read lazily: outside the guard of export_chunks
            raise _damage.damaged(self.path, exc) from None

    @_damage.guarded
    def export_to(self, recording_id: int, path) -> Path:
        """Write the original bytes to ``path`` (a directory -> the recording's own name in it).
        Refuses to overwrite an existing file."""
        data = self.export_chunks(recording_id)
        dest = Path(path)
        if dest.is_dir():
            dest = dest / _private.safe_file_name(self.get(recording_id).name,
                                                  f"recording-{int(recording_id)}")
        if os.path.lexists(dest):
            raise InvalidInputError(f"{dest} already exists; not overwriting it")
        if not dest.parent.exists():
            raise NotFoundError(f"{dest.parent}: no such directory")
        return _private.write_private(dest, data)  # 0600, O_EXCL|O_NOFOLLOW temp, atomic

    @_damage.guarded
    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Check every blob's tag and SHA-256 and that each recording has all its index rows.
        Never raises on a bad blob: failures are listed with the recording's id and name."""
        master = self._require_key("verify")
        report = VerifyReport()
        unreadable = lambda what, exc: report.failures.append(  # noqa: E731
            (-1, "", f"could not read {what}: {_damage.damaged(self.path, exc).message}"))
        try:
            ids = [r[0] for r in self._query("SELECT id FROM recordings ORDER BY id")]
        except duckdb.Error as exc:  # the id column is damaged: the index still names them
            unreadable("the list of recordings", exc)
            try:
                ids = [r[0] for r in self._query(
                    "SELECT DISTINCT recording_id FROM codes ORDER BY recording_id")]
            except duckdb.Error:
                return report
        counts: dict | None = None
        try:
            counts = dict(self._query(
                "SELECT recording_id, count(*) FROM codes GROUP BY recording_id"))
            orphans = self._query("SELECT count(*) FROM codes WHERE recording_id NOT IN "
                                  "(SELECT id FROM recordings)")[0][0]
            if orphans:
                report.failures.append((-1, "", f"{orphans} index rows belong to no recording"))
        except duckdb.Error as exc:
            unreadable("the index (codes)", exc)
        for i, rid in _access.in_sessions(self._lock, ids):  # shared: writers get in between
            report.checked += 1
            name = "?"
            try:
                name, sha, blob, n_win = self._query(
                    "SELECT name, sha256, blob, n_windows FROM recordings WHERE id = ?", [rid])[0]
                for _ in self._plain_chunks(master, blob, sha, int(rid)):
                    pass  # every tag and the SHA-256 checked, one chunk in memory at a time
                if counts is not None and int(counts.get(rid, 0)) != int(n_win):
                    raise IntegrityError(f"recording {rid}: {counts.get(rid, 0)} index rows, "
                                         f"expected {n_win}")
            except SpeechVaultError as exc:
                report.failures.append((int(rid), name, exc.message))
            except duckdb.Error as exc:  # a damaged block: this recording could not be read
                report.failures.append((int(rid), name, f"recording {rid}: could not be read "
                                        f"({_damage.damaged(self.path, exc).message})"))
            except Exception as exc:  # a malformed blob must never abort verify
                report.failures.append((int(rid), name, f"recording {rid}: {type(exc).__name__}: "
                                        f"{' '.join(str(exc).split())}"))
            if progress is not None:
                progress(i + 1, len(ids))
        self._verify_integrity(master, report)
        return report

    def _verify_integrity(self, master: bytes, report: VerifyReport) -> None:
        """The settings, model, record set and per-recording MACs (``store.integrity``)."""
        try:
            with self._lock:
                found = _integrity.verify_integrity(self._db(), master, self.vault_id, self.K,
                                                    self.bound)
        except duckdb.Error as exc:
            report.failures.append((-1, "", "could not check the integrity MACs: "
                                    f"{_damage.damaged(self.path, exc).message}"))
            return
        except Exception as exc:  # malformed stored values must never abort verify
            report.failures.append((-1, "", f"could not check the integrity MACs: "
                                    f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"))
            return
        report.failures.extend(found.problems)
        report.notes.extend(found.notes)
