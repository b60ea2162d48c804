"""Modal screens: passphrase (hidden input, retry on a wrong one), error, vault busy, export
path, confirmation (delete)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from tui.messages import PassphraseChecked
from tui.suggest import PathSuggester
from tui.widgets import SubmitInput


class PassphraseModal(ModalScreen[str | None]):
    """Asks for the passphrase with a hidden input. The check (``vault.unlock``) runs in an app
    worker that posts ``PassphraseChecked``; a wrong passphrase is told here and may be retried."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, reason: str, check: Callable[[str, "PassphraseModal"], None],
                 error: str | None = None) -> None:
        super().__init__(classes="modal")
        self.reason = reason
        self._check = check
        self._initial_error = error
        self.attempts = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Passphrase", classes="title")
            yield Static(f"{self.reason} needs the vault passphrase.", id="reason")
            yield SubmitInput(password=True, placeholder="passphrase", id="passphrase",
                              submit_label="Unlock")
            yield Static(self._initial_error or "", id="passphrase-error", classes="error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#passphrase", Input).focus()

    @on(Input.Submitted, "#passphrase")
    def action_submit(self) -> None:
        field = self.query_one("#passphrase", Input)
        value = field.value
        if not value:
            self.query_one("#passphrase-error", Static).update("type the passphrase, or escape")
            return
        field.disabled = True
        self.query_one("#passphrase-error", Static).update("checking…")
        self._check(value, self)

    def on_passphrase_checked(self, message: PassphraseChecked) -> None:
        field = self.query_one("#passphrase", Input)
        if message.ok:
            self.dismiss(message.passphrase)
            return
        self.attempts += 1
        field.disabled = False
        field.value = ""
        field.focus()
        self.query_one("#passphrase-error", Static).update(
            f"wrong passphrase (attempt {self.attempts}): try again, or escape to cancel")

    def check_failed(self) -> None:
        """The check worker failed with an error the app reported; let the user try again."""
        field = self.query_one("#passphrase", Input)
        field.disabled = False
        field.focus()
        self.query_one("#passphrase-error", Static).update("")

    def action_cancel(self) -> None:
        self.dismiss(None)


class ErrorModal(ModalScreen[None]):
    """One failure, its one-line message."""

    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, title: str, message: str) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="error-dialog"):
            yield Label(self.title_text, classes="title")
            yield Static(self.message, id="error-message")
            yield Static("enter/escape: close", classes="hint")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)


class BusyModal(ModalScreen[bool]):
    """The vault's lock is held by a writer: retry or cancel."""

    BINDINGS = [
        Binding("r", "retry", "Retry"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, message: str) -> None:
        super().__init__(classes="modal")
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="error-dialog"):
            yield Label("Vault is busy", classes="title")
            yield Static(self.message, id="busy-message")
            yield Static("Another process is writing to the vault. r: retry, escape: cancel",
                         classes="hint")
        yield Footer()

    def action_retry(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class ExportModal(ModalScreen[str | None]):
    """Asks where to write the decrypted original."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, name: str, default: str) -> None:
        super().__init__(classes="modal")
        self.recording_name = name
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Export decrypted original", classes="title")
            yield Static(f"{self.recording_name} → file:")
            yield SubmitInput(value=self.default, suggester=PathSuggester(), id="export-path",
                              submit_label="Export")
            yield Static("", id="export-error", classes="error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    @on(Input.Submitted, "#export-path")
    def action_submit(self) -> None:
        value = self.query_one("#export-path", Input).value.strip()
        if not value:
            self.query_one("#export-error", Static).update("type a path")
            return
        path = Path(value).expanduser()
        if path.is_dir():
            path = path / self.recording_name
        self.dismiss(str(path))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question for what cannot be undone (delete); no is the default (escape, n)."""

    BINDINGS = [
        Binding("y", "yes", "Yes"),
        Binding("n,escape", "no", "No"),
    ]

    def __init__(self, title: str, question: str) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="error-dialog"):
            yield Label(self.title_text, classes="title")
            yield Static(self.question, id="confirm-question")
            yield Static("y: yes · n/escape: no", classes="hint")
        yield Footer()

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)
