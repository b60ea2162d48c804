"""The TUI's writes (ingest, delete): allowed only in a session started with ``--write``.

Why they share one path: DuckDB lets many processes open a vault read-only *or* one open it
read-write. So every session browses and searches on a read-only handle, including a
``--write`` one (an idle writer would lock every searcher out), and a write closes that handle,
opens the file read-write for its own duration (``VaultBusyError`` when searchers hold it,
shown with a retry), then goes back to read-only. ``VaultWrites`` is mixed into
``SpeechVaultApp``; each write is one library call (``Vault.ingest``, ``Vault.delete``) in a
thread worker.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from textual import work

from store.access import DEFAULT_READ_WAIT, DEFAULT_WRITE_WAIT
from speechvault.errors import InvalidInputError, PassphraseRequiredError, SpeechVaultError
from speechvault.sources import expand_sources
from tui import messages as m

READ_ONLY_HINT = "this session is read-only: start it with `speechvault tui --write` to {what}"


class VaultWrites:
    """Mixin for ``SpeechVaultApp``: ingest and delete through a read-write reopen."""

    def require_writable(self, what: str) -> None:
        """``InvalidInputError`` in a session started without ``--write``."""
        if self.read_only:
            raise InvalidInputError(READ_ONLY_HINT.format(what=what))

    # -- ingest ------------------------------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="ingest", exclusive=True)
    def run_ingest(self, screen, sources: list[str], category: str | None,
                   cancel: threading.Event) -> None:
        passphrase = self.passphrase

        def progress(event) -> None:
            try:
                self.call_from_thread(screen.post_message, m.IngestProgress(event))
            except RuntimeError:  # the app is closing: the cancel event is set, go on quietly
                pass

        def ingest(handle) -> None:
            found = expand_sources([str(Path(s).expanduser()) for s in sources], recursive=True)
            # a folder inside the root may hold a symlink out of it: those files are refused
            outside = [f for f in found.files if not self.paths.allows(f)]
            found.files = [f for f in found.files if self.paths.allows(f)]
            found.problems += [(str(f), "outside the folder this session may use") for f in outside]
            screen.post_message(m.IngestStarted(len(found.files)))
            # no app lock here: the Vault serialises its own calls, and the progress callback
            # waits for the main thread, which may itself want the lock (on quit)
            report = handle.ingest(found.files, category=category or None, progress=progress,
                                   cancel=cancel)
            from speechvault.silence import added_paths, silent_files

            warnings = silent_files(added_paths(found.files, report), handle.max_ingest_seconds)
            screen.post_message(m.IngestDone(report, skipped=found.skipped,
                                             problems=found.problems, warnings=warnings))

        self._ingest_cancel = cancel
        try:  # whatever happens, the screen leaves its running state (IngestFinished)
            self.require_writable("ingest")
            if not passphrase:
                raise PassphraseRequiredError("ingest needs the passphrase")
            self._write_session("ingesting", ingest, passphrase=passphrase)
        finally:
            screen.post_message(m.IngestFinished())

    # -- delete ------------------------------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="delete", exclusive=True)
    def delete_recording(self, screen, recording_id: int, name: str) -> None:
        """``Vault.delete`` (its code and its encrypted audio, one transaction); the screen
        gets ``Deleted``. Asked for after a confirmation (``ConfirmModal``)."""
        self.require_writable("delete")

        def delete(handle) -> None:
            handle.delete(recording_id)
            screen.post_message(m.Deleted(recording_id, name))

        self._write_session("deleting", delete)

    # -- the shared read-write reopen --------------------------------------------------------
    def _write_session(self, label: str, body: Callable[[Any], None], *,
                       passphrase: str | None = None) -> None:
        """(worker thread) Close the read-only handle, run ``body`` on a read-write one, and
        reopen read-only, whatever happened. A session that knew the passphrase stays unlocked
        on the new handle (it used to look locked after an ingest, the next decrypt asking for
        a new scrypt -- or, when the key came from a prompt, for the passphrase again)."""
        rw = None
        keep = passphrase or (self.passphrase if self.is_unlocked() else None)
        done = False
        self.writes_idle.clear()
        try:
            self.call_from_thread(self._begin_write, label)
            with self.vault_lock:
                self._close_vault_locked()
            rw = self.vault_cls.open(self.vault_path, read_only=False, passphrase=passphrase,
                                     shared=True, wait=DEFAULT_WRITE_WAIT,
                                     **self._index_kwargs())
            body(rw)
            done = True
        finally:
            if rw is not None:
                try:
                    rw.close()
                except Exception:
                    pass
            self.writes_idle.set()
            vault, error = None, None
            try:
                vault = self.vault_cls.open(self.vault_path, read_only=True, shared=True,
                                            wait=DEFAULT_READ_WAIT, **self._index_kwargs())
            except SpeechVaultError as exc:
                error = exc.message
            unlocked = done and vault is not None and keep and _unlock(vault, keep)
            try:
                self.call_from_thread(self._end_write, vault, error, bool(unlocked))
            except RuntimeError:  # the app has gone: do not leak the handle
                if vault is not None:
                    vault.close()

    def _close_vault_locked(self) -> None:
        if self.vault is not None:
            try:
                self.vault.close()
            finally:
                self.vault = None

    def _begin_write(self, label: str) -> None:
        self.ingesting, self.write_label = True, label
        self.refresh_status()

    def _end_write(self, vault: Any, error: str | None, unlocked: bool = False) -> None:
        self.ingesting = False
        self._ingest_cancel = None
        if unlocked:
            self._unlocked_handle = vault
        self._set_vault(vault, error)
        if error:
            self.notify(f"could not reopen the vault read-only: {error} (ctrl+r to retry)",
                        severity="error")


def _unlock(vault: Any, passphrase: str) -> bool:
    """Unlock the reopened read-only handle with the passphrase the write just used."""
    try:
        vault.unlock(passphrase)
    except SpeechVaultError:
        return False
    return True
