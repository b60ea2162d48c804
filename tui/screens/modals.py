"""Modal screens: passphrase (hidden input, retry on a wrong one), error, vault busy, export
path, confirmation (delete)."""

from __future__ import annotations

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
            yield SubmitInput(value=self.default, suggester=PathSuggester(self.app.paths),
                              id="export-path",
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
        from speechvault.errors import InvalidInputError

        try:
            path = self.app.paths.check(value)
        except InvalidInputError as exc:
            self.query_one("#export-error", Static).update(exc.message)
            return
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


#: what each screen is for, shown above its keys in the help (``?`` / F1)
SCREEN_HELP = {
    "library": "The recordings in the vault: id, name, category, length, size, date. Enter opens "
               "one; / filters by name; c picks a category. Browsing needs no passphrase.",
    "search": "Type the path of a query recording and press enter. Hits under τ (the vault's "
              "threshold unless you set one) are matches; the chart shows each hit's BER.",
    "ingest": "Add files or folders (type a path, or `a` on the tree), optionally a category, "
              "then ctrl+s. Needs a session started with --write and the passphrase.",
    "record": "One recording: its metadata and public hash code; d decrypts it to draw the "
              "spectrogram, e exports the original (both ask for the passphrase).",
}


class HelpModal(ModalScreen[None]):
    """The keys of the screen it was opened on (``?`` or F1), and what that screen is for.

    Built from the bindings active when it was asked for, so it never lists a key that does
    nothing there (no Delete in a read-only session)."""

    BINDINGS = [Binding("escape,enter,question_mark,q,f1", "close", "Close")]

    def __init__(self, screen_name: str, keys: list[tuple[str, str]]) -> None:
        super().__init__(classes="modal")
        self.screen_name = screen_name
        self.keys = keys

    def compose(self) -> ComposeResult:
        from rich.markup import escape

        width = max((len(k) for k, _ in self.keys), default=0)
        lines = [f"[b]{escape(k.ljust(width))}[/b]  {escape(d)}" for k, d in self.keys]
        with Vertical(id="dialog"):
            yield Label(f"Help: {self.screen_name}", classes="title")
            yield Static(SCREEN_HELP.get(self.screen_name, ""), id="help-about")
            yield Static("\n".join(lines), id="help-keys")
            yield Static("escape/?: close", classes="hint")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
