"""``speechvault tui VAULT``: a Textual front end that is thin over ``store.vault.Vault``.

Every operation here is one library call (``Vault.list / category_counts / info / search /
get / codes_of / export / export_to / ingest / delete / unlock / open``), made in a thread
worker (``@work(thread=True)``) defined on the app (writes: tui/writes.py). Workers post
messages to the screen that asked;
failures are handled once, in :meth:`SpeechVaultApp.on_worker_state_changed`, which shows the
``SpeechVaultError`` one-line message in a modal (``VaultBusyError`` with a retry), never a
crash. Browsing and searching use a read-only open (many sessions may search at once); the
passphrase is asked for only to decrypt, export or ingest. Ingest and delete exist only in a
session started with ``--write``; they reopen the vault read-write for their duration and go
back to read-only after.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.worker import Worker, WorkerState, get_current_worker

from store.access import DEFAULT_READ_WAIT
from speechvault.errors import (
    SpeechVaultError,
    VaultBusyError,
    WrongPassphraseError,
)
from speechvault.guess_limit import GuessLimiter
from tui import messages as m
from tui.format import Formatter
from tui.writes import READ_ONLY_HINT, VaultWrites

PASSPHRASE_ENV = "SPEECHVAULT_PASSPHRASE"


def _default_vault_cls():
    from store.vault import Vault  # imported lazily: the TUI module imports without the store

    return Vault


def resolve_passphrase(key_file: str | os.PathLike | None = None,
                       environ: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """(passphrase, source) from a key file or ``$SPEECHVAULT_PASSPHRASE``; (None, None) when
    neither is given (the TUI then asks in a modal, when needed)."""
    env = os.environ if environ is None else environ
    if key_file is not None:
        from speechvault.passphrase import read_key_file

        return read_key_file(key_file), "key file"
    value = env.get(PASSPHRASE_ENV)
    if value:
        return value, f"${PASSPHRASE_ENV}"
    return None, None


class SpeechVaultApp(VaultWrites, App[None]):
    """The speechvault TUI. ``vault_cls`` (tests only) replaces ``store.vault.Vault``.

    ``read_only`` is the session's permission: without ``--write`` nothing is ingested or
    deleted. The handle itself is read-only in every session; writes reopen it (tui/writes.py).
    """

    CSS_PATH = "speechvault.tcss"
    TITLE = "speechvault"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    BINDINGS = [
        # priority: the app switches before the keys typed after F2-F4 are handed to a widget,
        # so they reach the new screen (not the old one's focused field)
        Binding("f2", "show_mode('library')", "Library", priority=True),
        Binding("f3", "show_mode('search')", "Search", priority=True),
        Binding("f4", "show_mode('ingest')", "Ingest", priority=True),
        Binding("ctrl+r", "reopen", "Retry"),
        # ?: not a priority binding, so a "?" typed into a field (a glob) stays a character
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False, priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    MODES = {
        "library": "tui.screens.library:LibraryScreen",
        "search": "tui.screens.search:SearchScreen",
        "ingest": "tui.screens.ingest:IngestScreen",
    }

    #: bumped each time the vault handle changes; screens watch it and reload
    vault_generation: reactive[int] = reactive(0)

    def __init__(self, vault_path: str | os.PathLike, *, key_file: str | None = None,
                 read_only: bool = True, passphrase: str | None = None,
                 vault_cls: Any = None, freeze: bool | None = None,
                 browse_root: str | os.PathLike | None = None, start_mode: str = "library",
                 search_top: int = 10, paths: Any = None) -> None:
        # MODES hold import strings so that textual imports screens lazily; resolve them here
        self.MODES = {name: _load(target) for name, target in type(self).MODES.items()}
        super().__init__()
        self.vault_path = Path(vault_path)
        self.read_only = bool(read_only)
        self.fmt = Formatter(freeze)
        from speechvault.path_policy import PathPolicy

        #: which files of this machine the session may name (speechvault/path_policy.py)
        self.paths = paths if paths is not None else PathPolicy.anywhere()
        self.browse_root = self.paths.start_folder(browse_root)
        self.start_mode = start_mode
        self.search_top = int(search_top)
        self._vault_cls = vault_cls
        if passphrase is not None:
            self.passphrase, self.passphrase_source = passphrase, "argument"
        else:
            self.passphrase, self.passphrase_source = resolve_passphrase(key_file)
        self.vault: Any = None
        self.vault_error: str | None = None
        self.vault_lock = threading.RLock()
        #: back-off and cap on wrong passphrases in this session (each guess is an scrypt)
        self.guess_limiter = GuessLimiter()
        self._unlocked_handle: Any = None
        self.ingesting = False  # any write (ingest, delete) holds the file read-write
        self.write_label = "ingesting"
        self._ingest_cancel: threading.Event | None = None
        #: clear while a worker holds a read-write handle (set again once it is closed)
        self.writes_idle = threading.Event()
        self.writes_idle.set()
        self.hung_up = False
        self._retry: dict[Worker, Callable[[], None]] = {}
        self._on_error: dict[Worker, Callable[[BaseException], None]] = {}

    # ---------------------------------------------------------------------------------------
    # lifecycle
    @property
    def vault_cls(self):
        if self._vault_cls is None:
            self._vault_cls = _default_vault_cls()
        return self._vault_cls

    def on_mount(self) -> None:
        self.sub_title = self._status_line()
        self.switch_mode(self.start_mode)
        if not self.is_headless:
            self._watch_for_hangup()
        self.open_vault()

    def _watch_for_hangup(self) -> None:
        """End the session when its terminal goes (a closed SSH connection): on SIGHUP, unless
        it was ignored when we started (``nohup``), and when stdin reports a hang-up, which
        Textual's input thread would otherwise spin on for ever (tui/terminal.py)."""
        import asyncio
        import signal

        from tui.terminal import stdin_hung_up

        hup = getattr(signal, "SIGHUP", None)  # absent on Windows
        if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
            asyncio.get_running_loop().add_signal_handler(hup, self.hang_up)

        def check() -> None:
            if stdin_hung_up():
                self.hang_up()

        self.set_interval(1.0, check)

    def hang_up(self) -> None:
        """The terminal has gone: close the vault and exit with status 129 (128 + SIGHUP)."""
        from tui.terminal import HANGUP_EXIT_STATUS, detach_from_terminal, exit_after

        if self.hung_up:  # SIGHUP and the stdin watch may both see it
            return
        self.hung_up = True
        if self._ingest_cancel is not None:
            self._ingest_cancel.set()
        detach_from_terminal()
        exit_after(self._release_after_hangup)
        self.exit(return_code=HANGUP_EXIT_STATUS)

    def _release_after_hangup(self) -> None:
        """(a thread) Let a cancelled ingest finish its batch and close its read-write handle,
        then close ours: Textual's own shutdown may never get to it (tui/terminal.py)."""
        self.writes_idle.wait(timeout=60)
        self._close_vault(timeout=5.0)

    def _status_line(self) -> str:
        name = self.vault_path.name
        if self.ingesting:
            state = f"{self.write_label} (read-write)"
        elif self.vault is None:
            state = "closed" if self.vault_error else "opening…"
        else:
            state = "read-only" if self.read_only else "read-write"
        lock = "unlocked" if (self.vault is not None and self._unlocked_handle is self.vault) \
            else "locked"
        return f"{name} · {state} · {lock}"

    def refresh_status(self) -> None:
        self.sub_title = self._status_line()

    def _set_vault(self, vault: Any, error: str | None = None) -> None:
        """Main thread: install a new vault handle (or None) and tell the screens."""
        self.vault = vault
        self.vault_error = error
        self.refresh_status()
        self.refresh_bindings()
        self.vault_generation += 1

    async def action_quit(self) -> None:
        self.exit()

    def on_unmount(self) -> None:
        """Leaving (quit, or a test's run_test ending): stop an ingest, close the handle."""
        if self._ingest_cancel is not None:
            self._ingest_cancel.set()
        self._close_vault(timeout=10.0)

    def _close_vault(self, timeout: float = -1) -> None:
        if not self.vault_lock.acquire(timeout=timeout):
            return  # a worker still uses it; the process is ending anyway
        try:
            if self.vault is not None:
                try:
                    self.vault.close()
                except Exception:  # closing must never keep the app from quitting
                    pass
                self.vault = None
        finally:
            self.vault_lock.release()

    async def action_show_mode(self, mode: str) -> None:
        """Switch screens (each mode keeps its stack). Awaited, so that keys typed while the new
        screen is being built wait for it (they used to be dropped, or go to the old screen)
        instead of being handled before it has focused its first field."""
        from textual.screen import ModalScreen

        if isinstance(self.screen, ModalScreen):  # answer the question first (F2-F4 are priority)
            self.bell()
            return
        if mode == "ingest" and self.read_only:
            self.notify(READ_ONLY_HINT.format(what="ingest"), severity="warning")
            return
        await self.switch_mode(mode)

    def action_help(self) -> None:
        """The keys of the current screen and what it is for (tui/screens/modals.HelpModal)."""
        from textual.screen import ModalScreen

        from tui.screens.modals import HelpModal

        if isinstance(self.screen, ModalScreen):
            return  # a question is open (or the help itself): its own keys are in its footer
        from textual.screen import Screen

        own = {b.action for b in [*type(self).BINDINGS, *type(self.screen).BINDINGS]
               if isinstance(b, Binding)}  # ours: not Textual's tab/copy nor a widget's cursor
        keys: list[tuple[str, str]] = []
        for active in self.active_bindings.values():
            binding = active.binding
            ours = isinstance(active.node, (App, Screen)) and binding.action in own
            if ours and active.enabled and binding.description and binding.action != "help":
                entry = (_key_name(binding.key), binding.description)
                if entry not in keys:
                    keys.append(entry)
        keys.append(("? / F1", "this help"))
        name = "record" if self.screen.has_class("record") else (self.screen.id or "screen")
        self.push_screen(HelpModal(name, keys))

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "reopen":
            # shown (and live) only while the vault is not open: after "vault is busy" etc.
            return self.vault is None and not self.ingesting
        return True

    def action_reopen(self) -> None:
        """Retry opening the vault (e.g. after 'vault is busy')."""
        if self.ingesting:
            self.notify("ingest in progress; the vault is reopened after it")
            return
        self._close_vault()
        self._set_vault(None)
        self.open_vault()

    # ---------------------------------------------------------------------------------------
    # the single place where worker failures are handled
    def track(self, worker: Worker, *, retry: Callable[[], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None) -> Worker:
        if retry is not None:
            self._retry[worker] = retry
        if on_error is not None:
            self._on_error[worker] = on_error
        return worker

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR:
            retry = self._retry.pop(worker, None)
            on_error = self._on_error.pop(worker, None)
            error = worker.error
            if on_error is not None:
                try:
                    on_error(error)
                except Exception:
                    pass
            self.show_error(error, retry=retry)
        elif event.state in (WorkerState.SUCCESS, WorkerState.CANCELLED):
            self._retry.pop(worker, None)
            self._on_error.pop(worker, None)

    def show_error(self, error: BaseException | None, *, retry: Callable[[], None] | None = None
                   ) -> None:
        from tui.screens.modals import BusyModal, ErrorModal

        if isinstance(error, VaultBusyError):
            def after(again: bool | None) -> None:
                if again:
                    (retry or self.action_reopen)()

            self.push_screen(BusyModal(error.message), after)
            return
        if isinstance(error, SpeechVaultError):
            title = _title_of(error)
            message = error.message
        else:
            title = "Internal error"
            message = f"{type(error).__name__}: {' '.join(str(error).split())}"
        self.push_screen(ErrorModal(title, message))

    # ---------------------------------------------------------------------------------------
    # vault handle
    @work(thread=True, exit_on_error=False, group="open", exclusive=True)
    def open_vault(self) -> None:
        try:
            vault = self.vault_cls.open(self.vault_path, read_only=True, shared=True,
                                        wait=DEFAULT_READ_WAIT, **self._index_kwargs())
        except SpeechVaultError as exc:
            self.call_from_thread(self._set_vault, None, exc.message)
            raise
        if get_current_worker().is_cancelled:
            vault.close()
            return
        self.call_from_thread(self._set_vault, vault)

    def _index_kwargs(self) -> dict[str, Any]:
        """``index_passphrase`` for a vault whose index is encrypted (``init --encrypt-index``):
        such a vault cannot even be browsed without the passphrase."""
        from store.encrypted_index import is_encrypted_file

        if is_encrypted_file(self.vault_path):
            return {"index_passphrase": self.passphrase}
        return {}

    def _require_vault(self):
        vault = self.vault
        if vault is None:
            if self.ingesting:
                raise VaultBusyError("ingest in progress: the vault is reopened after it")
            raise VaultBusyError(self.vault_error or "the vault is not open yet")
        return vault

    # ---------------------------------------------------------------------------------------
    # passphrase: asked only when decrypting, exporting or ingesting
    def is_unlocked(self) -> bool:
        return self.vault is not None and self._unlocked_handle is self.vault

    def with_passphrase(self, reason: str, then: Callable[[], None]) -> None:
        """Run ``then`` once the vault handle is unlocked: with the passphrase from the key
        file / environment if any (a wrong one opens the modal), else after the modal."""
        if self.vault is None:
            self.show_error(VaultBusyError(self.vault_error or "the vault is not open yet"))
            return
        if self.is_unlocked():
            then()
            return
        if self.passphrase:
            self._unlock_known(reason, then)
            return
        self._ask_passphrase(reason, then)

    def _ask_passphrase(self, reason: str, then: Callable[[], None], error: str | None = None
                        ) -> None:
        from tui.screens.modals import PassphraseModal

        def after(passphrase: str | None) -> None:
            if passphrase:
                self.passphrase, self.passphrase_source = passphrase, "prompt"
                then()

        self.push_screen(PassphraseModal(reason, self._check_in_modal, error=error), after)

    def _check_in_modal(self, passphrase: str, modal) -> None:
        def reply(ok: bool) -> None:
            modal.post_message(m.PassphraseChecked(passphrase, ok))

        self.track(self.check_passphrase(passphrase, reply),
                   on_error=lambda error: modal.check_failed())

    def _unlock_known(self, reason: str, then: Callable[[], None]) -> None:
        def reply(ok: bool) -> None:
            if ok:
                then()
                return
            source = self.passphrase_source
            self.passphrase = None
            self._ask_passphrase(reason, then, error=f"wrong passphrase (from {source}): type it")

        self.check_passphrase(self.passphrase, reply)

    @work(thread=True, exit_on_error=False, group="unlock")
    def check_passphrase(self, passphrase: str, reply: Callable[[bool], None]) -> None:
        """``vault.unlock``; ``reply(ok)`` runs on the main thread. A wrong passphrase is an
        answer (False), not a failure; other errors go to the one handler."""
        self.guess_limiter.before_attempt()  # waits after wrong ones; refuses past the cap
        with self.vault_lock:
            vault = self._require_vault()
            try:
                vault.unlock(passphrase)
                ok = True
            except WrongPassphraseError:
                ok = False
            self.guess_limiter.record(ok)
            if ok:
                self._unlocked_handle = vault
        self.call_from_thread(self.refresh_status)
        self.call_from_thread(reply, ok)

    # ---------------------------------------------------------------------------------------
    # library
    @work(thread=True, exit_on_error=False, group="library", exclusive=True)
    def load_library(self, screen, category: str | None, name_like: str | None) -> None:
        with self.vault_lock:
            vault = self._require_vault()
            rows = vault.list(category=category, name_like=name_like or None)
            counts = vault.category_counts()
            info = vault.info()
        if not get_current_worker().is_cancelled:
            screen.post_message(m.LibraryLoaded(rows, counts, info, category, name_like))

    @work(thread=True, exit_on_error=False, group="counts")
    def load_counts(self, screen) -> None:
        with self.vault_lock:
            counts = self._require_vault().category_counts()
        screen.post_message(m.LibraryLoaded([], counts, None, None, None))

    # ---------------------------------------------------------------------------------------
    # search
    @work(thread=True, exit_on_error=False, group="search", exclusive=True)
    def run_search(self, screen, query: str, tau: float | None, mode: str, top: int) -> None:
        with self.vault_lock:
            vault = self._require_vault()
            result = vault.search(query, tau=tau, mode=mode, top=top)
        screen.post_message(m.SearchDone(result, query))

    # ---------------------------------------------------------------------------------------
    # record
    @work(thread=True, exit_on_error=False, group="record")
    def load_record(self, screen, recording_id: int) -> None:
        with self.vault_lock:
            vault = self._require_vault()
            row = vault.get(recording_id)
            codes = vault.codes_of(recording_id)
            info = vault.info()
        bits = getattr(codes, "bits", None)
        if bits is None:
            from hashing.codes import unpack_words

            bits = unpack_words(codes.words, int(codes.K))
        category = codes.category
        category = int(category[0]) if getattr(category, "size", 0) else None
        screen.post_message(m.RecordLoaded(row, category, bits, list(info.class_names),
                                           code=_indexed_code(vault)))

    @work(thread=True, exit_on_error=False, group="decrypt")
    def decrypt_spectrogram(self, screen, recording_id: int) -> None:
        from hashing.audio import load_audio
        from hashing.features import log_mel_spectrogram

        with self.vault_lock:
            vault = self._require_vault()
            data = vault.export(recording_id)
            spec = _feature_spec_of(vault)
        y = load_audio(data, spec.sample_rate) if spec is not None else load_audio(data)
        s = log_mel_spectrogram(y, spec)
        screen.post_message(m.SpectrogramReady(recording_id, s))

    @work(thread=True, exit_on_error=False, group="export")
    def export_recording(self, screen, recording_id: int, path: str) -> None:
        with self.vault_lock:
            vault = self._require_vault()
            out = vault.export_to(recording_id, path)
        screen.post_message(m.Exported(recording_id, str(out)))


#: how the help names keys that Textual spells out
_KEY_NAMES = {"slash": "/", "escape": "esc", "delete": "del", "question_mark": "?",
              "enter": "enter"}


def _key_name(key: str) -> str:
    if key in _KEY_NAMES:
        return _KEY_NAMES[key]
    if len(key) > 1 and key[0] == "f" and key[1:].isdigit():
        return key.upper()
    return key


def _indexed_code(vault: Any) -> str:
    """"fingerprint" when the vault's model indexes its excerpt fingerprint, else "h2" (read
    from the stored model's metadata: the model itself is not loaded for this)."""
    try:
        from hashing.model_meta import ModelMeta

        _, meta_json = vault.model_bytes()
        return "fingerprint" if ModelMeta.from_json(meta_json).fingerprint is not None else "h2"
    except (SpeechVaultError, AttributeError, ValueError, KeyError):  # no readable metadata
        return "h2"


def _feature_spec_of(vault: Any):
    enc = getattr(vault, "encoder", None)
    spec = getattr(enc, "feature_spec", None) if enc is not None else None
    if spec is not None:
        return spec
    from hashing.features import FeatureSpec

    return FeatureSpec()


def _title_of(error: SpeechVaultError) -> str:
    name = type(error).__name__.removesuffix("Error")
    words = []
    for ch in name:
        if ch.isupper() and words:
            words.append(" ")
        words.append(ch.lower() if words else ch)
    return "".join(words) or "Error"


def _load(target):
    if isinstance(target, str):
        import importlib

        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    return target


def run(vault_path: str, *, key_file: str | None = None, read_only: bool = True,
        passphrase: str | None = None, **app_options: Any) -> int:
    """Run the TUI on ``vault_path`` (blocks until the user quits); return the exit status (0,
    or 129 after a hang-up).

    The passphrase comes from ``key_file``, else ``$SPEECHVAULT_PASSPHRASE``, else a modal when
    an operation needs it. Raises ``NotFoundError`` before starting when the vault file is
    missing, and the key file's errors (``speechvault.passphrase.read_key_file``).
    ``passphrase`` (already read by the CLI) is needed up front by a vault whose index is
    encrypted. Raises ``NotATerminalError`` when stdin or stdout is not a terminal.
    ``app_options`` go to ``SpeechVaultApp`` (tests: ``vault_cls``).
    """
    from speechvault.errors import NotFoundError
    from tui.terminal import require_terminal

    p = Path(vault_path)
    if not p.exists():
        raise NotFoundError(f"vault {vault_path}: no such file")
    require_terminal()
    app = SpeechVaultApp(p, key_file=None if passphrase else key_file, read_only=read_only,
                         passphrase=passphrase, **app_options)
    app.run()
    return int(app.return_code or 0)
