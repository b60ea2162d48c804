"""Record view: metadata (``vault.get``), the hash bits (``vault.codes_of``: the public index,
no passphrase), and -- after decryption (``vault.export``, needs the passphrase) -- the Log-Mel
spectrogram as a terminal heat map; export of the decrypted original (``vault.export_to``)."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static

from tui.messages import Deleted, Exported, RecordLoaded, SpectrogramReady
from tui.widgets import HashBitsView, SpectrogramHeatmap


def ask_export(screen: Screen, recording_id: int, name: str) -> None:
    """Passphrase (if needed) -> path modal -> ``vault.export_to`` in a worker; the screen gets
    ``Exported``."""
    app = screen.app
    from tui.screens.modals import ExportModal

    if not app.paths.names_paths:  # an export would write a file on the server
        from speechvault.path_policy import NO_PATHS_HINT

        app.notify(NO_PATHS_HINT, severity="warning")
        return

    def chosen(path: str | None) -> None:
        if path:
            app.export_recording(screen, recording_id, path)

    def then() -> None:
        default = str(app.paths.start_folder() / Path(name).name)
        app.push_screen(ExportModal(name, default), chosen)

    app.with_passphrase("Export", then)


def ask_delete(screen: Screen, recording_id: int, name: str) -> None:
    """Confirmation modal -> ``vault.delete`` in a worker (``--write`` sessions only); the
    screen gets ``Deleted``."""
    app = screen.app
    from rich.markup import escape

    from tui.screens.modals import ConfirmModal

    def answered(yes: bool | None) -> None:
        if yes:
            app.delete_recording(screen, recording_id, name)

    app.push_screen(ConfirmModal(
        "Delete recording", f"Delete [b]{escape(name)}[/b] (id {recording_id})? Its code and its "
        "encrypted audio are removed from the vault; this cannot be undone."), answered)


class RecordScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("d", "decrypt", "Decrypt"),
        Binding("e", "export", "Export"),
        Binding("w", "next_window", "Win"),
        Binding("delete", "delete", "Delete"),
    ]

    def __init__(self, recording_id: int) -> None:
        super().__init__(classes="record")
        self.recording_id = int(recording_id)
        self.row = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="record-body"):
            yield Static("loading…", id="record-meta")
            yield Label("Log-Mel spectrogram (time →, frequency ↑)", classes="panel-title")
            yield SpectrogramHeatmap(id="heatmap")
            yield Label("Hash code h1 || h2 (public index)", classes="panel-title", id="code-title")
            yield HashBitsView(id="bits")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#record-body").focus()
        self.app.load_record(self, self.recording_id)
        if self.app.passphrase or self.app.is_unlocked():
            self.action_decrypt()

    def on_record_loaded(self, message: RecordLoaded) -> None:
        fmt = self.app.fmt
        r = message.row
        self.row = r
        lines = [
            f"[b]{_esc(r.name)}[/b]  (id {r.id})",
            f"category {_esc(r.category)} · {fmt.duration(r.duration)} · "
            f"{r.sample_rate} Hz · {r.channels} ch · {fmt.size(r.size)} · "
            f"{r.n_windows} window(s)",
            f"added {fmt.added(r.added)} · sha256 {r.sha256[:16]}…",
        ]
        self.query_one("#record-meta", Static).update("\n".join(lines))
        names = message.class_names or []
        cname = names[message.category] if message.category is not None and \
            0 <= message.category < len(names) else None
        n_classes = len(names) or None
        code = getattr(message, "code", "h2")
        self.query_one("#code-title", Label).update(f"Hash code h1 || {code} (public index)")
        self.query_one("#bits", HashBitsView).set_codes(message.category, n_classes,
                                                         message.bits, cname, code=code)

    def on_spectrogram_ready(self, message: SpectrogramReady) -> None:
        if message.recording_id == self.recording_id:
            self.query_one("#heatmap", SpectrogramHeatmap).set_spectrogram(message.spec)

    def on_exported(self, message: Exported) -> None:
        self.notify(f"exported to {message.path}")

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_decrypt(self) -> None:
        heat = self.query_one("#heatmap", SpectrogramHeatmap)

        def then() -> None:
            heat.set_message("decrypting…")
            self.app.decrypt_spectrogram(self, self.recording_id)

        self.app.with_passphrase("Decrypting", then)

    def action_export(self) -> None:
        name = self.row.name if self.row is not None else f"recording-{self.recording_id}"
        ask_export(self, self.recording_id, name)

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "delete":
            return not self.app.read_only  # no Delete at all in a read-only session
        return True

    def action_delete(self) -> None:
        name = self.row.name if self.row is not None else f"recording-{self.recording_id}"
        ask_delete(self, self.recording_id, name)

    def on_deleted(self, message: Deleted) -> None:
        self.notify(f"deleted {message.name} (id {message.recording_id})")
        self.app.pop_screen()

    def action_next_window(self) -> None:
        self.query_one("#bits", HashBitsView).next_window()


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))
