"""Ingest: pick files or folders (a directory tree, or a path input with completion) and a
category; ``vault.ingest`` runs in a worker with a progress bar and a cancel (a
``threading.Event``); per-file errors are listed at the end. The app reopens the vault
read-write for the ingest and read-only after; a held lock shows "vault is busy" with a retry."""

from __future__ import annotations

import threading
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import (
    DirectoryTree,
    Footer,
    Header,
    Input,
    Label,
    ProgressBar,
    Static,
)

from tui.messages import IngestDone, IngestFinished, IngestProgress, IngestStarted, LibraryLoaded
from tui.suggest import PathSuggester
from tui.widgets import Field


class SourceTree(DirectoryTree):
    """A directory tree whose root shows a short label (not an absolute path)."""

    def __init__(self, path: Path, **kwargs) -> None:
        super().__init__(path, **kwargs)
        self.root.set_label(path.name or str(path))

    def filter_paths(self, paths):
        policy = self.app.paths  # a symlink out of the session's root is not shown
        return [p for p in paths if not p.name.startswith(".") and policy.allows(p)]


class IngestScreen(Screen):
    BINDINGS = [
        Binding("a", "add_highlighted", "Add"),
        Binding("ctrl+l", "clear_sources", "Clear"),
        Binding("ctrl+s", "start", "Start"),
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+o", "focus_source", "Path", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="ingest")
        self.sources: list[str] = []
        self.cancel_event: threading.Event | None = None
        self.running = False
        self.report = None
        self.skipped: list = []
        self.warnings: list = []
        self.counts = {"added": 0, "duplicate": 0, "error": 0}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="ingest-body"):
            if self.app.paths.names_paths:
                yield SourceTree(self.app.browse_root, id="tree")
            else:
                yield Static("no server files in this session", id="tree")
            with Vertical(id="ingest-main"):
                with Horizontal(classes="form-row"):
                    yield Label("path", classes="field-label")
                    yield Field(placeholder="file or folder (→ completes, enter adds)",
                                id="source", suggester=PathSuggester(self.app.paths),
                                compact=True)
                with Horizontal(classes="form-row"):
                    yield Label("category", classes="field-label")
                    yield Field(placeholder="blank: the model's prediction", id="category",
                                compact=True)
                yield Static("nothing selected: a on the tree, or type a path", id="selected")
                yield ProgressBar(total=1, id="progress", show_eta=False)
                yield Static("", id="ingest-status")
                with VerticalScroll(id="ingest-errors-box"):
                    yield Static("", id="ingest-errors")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.errors: list[tuple[str, str]] = []
        # the path input, not the tree: typing a path must not fire the tree's `a` (add)
        # (set now, not deferred as ``focus()`` is: keys typed during the switch come next)
        self.set_focus(self.query_one("#source", Input))
        self.watch(self.app, "vault_generation", self._vault_changed, init=True)

    def _vault_changed(self, _generation: int) -> None:
        if self.app.vault is not None and not self.running:
            # category suggestions from the library's counts
            self.app.load_counts(self)

    def on_library_loaded(self, message: LibraryLoaded) -> None:
        names = sorted(message.counts)
        if names:
            self.query_one("#category", Input).suggester = SuggestFromList(names)

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "cancel":
            return True if self.running else None
        if action in ("start", "add_highlighted", "clear_sources"):
            return None if self.running else True
        return True

    # -- choosing sources --------------------------------------------------------------------
    def _add(self, path: str) -> None:
        from speechvault.errors import InvalidInputError

        try:
            path = str(self.app.paths.check(path))
        except InvalidInputError as exc:
            self.query_one("#ingest-status", Static).update(exc.message)
            return
        if path and path not in self.sources:
            self.sources.append(path)
        self._show_sources()

    def _show_sources(self) -> None:
        if not self.sources:
            text = "nothing selected: a on the tree, or type a path"
        else:
            shown = [self.app.fmt.path(s) + ("/" if Path(s).is_dir() else "")
                     for s in self.sources[:4]]
            more = f" (+{len(self.sources) - 4} more)" if len(self.sources) > 4 else ""
            text = f"{len(self.sources)} selected: " + ", ".join(shown) + more
        self.query_one("#selected", Static).update(text)

    def action_add_highlighted(self) -> None:
        tree = self.query_one("#tree")
        if not isinstance(tree, DirectoryTree):
            return
        node = tree.cursor_node
        if node is not None and node.data is not None:
            self._add(str(node.data.path))

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self._add(str(event.path))

    @on(Input.Submitted, "#source")
    def _source_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if value:
            self._add(value)
            event.input.value = ""

    @on(Input.Submitted, "#category")
    def _category_submitted(self, event: Input.Submitted) -> None:
        self.action_start()

    def action_clear_sources(self) -> None:
        self.sources.clear()
        self._show_sources()

    def action_focus_source(self) -> None:
        self.query_one("#source", Input).focus()

    # -- running ---------------------------------------------------------------------------
    def action_start(self) -> None:
        if self.running:
            return
        if self.app.read_only:
            from tui.writes import READ_ONLY_HINT

            self.query_one("#ingest-status", Static).update(READ_ONLY_HINT.format(what="ingest"))
            return
        if not self.sources:
            self.query_one("#ingest-status", Static).update("choose files or a folder first")
            return
        self.app.with_passphrase("Ingest", self._start_worker)

    def _start_worker(self) -> None:
        self.running = True
        self.refresh_bindings()
        self.cancel_event = threading.Event()
        self.counts = {"added": 0, "duplicate": 0, "error": 0}
        self.report = None
        self.skipped = []
        self.errors = []
        self.warnings = []
        self.query_one("#ingest-errors", Static).update("")
        self.query_one("#progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#ingest-status", Static).update("opening the vault read-write…")
        category = self.query_one("#category", Input).value.strip() or None
        worker = self.app.run_ingest(self, list(self.sources), category, self.cancel_event)
        self.app.track(worker, retry=self._start_worker)

    def action_cancel(self) -> None:
        if self.running and self.cancel_event is not None:
            self.cancel_event.set()
            self.query_one("#ingest-status", Static).update("cancelling…")

    def on_ingest_started(self, message: IngestStarted) -> None:
        self.query_one("#progress", ProgressBar).update(total=message.total or None, progress=0)
        self.query_one("#ingest-status", Static).update(
            f"ingesting {message.total} file(s)… (escape cancels)")

    def on_ingest_progress(self, message: IngestProgress) -> None:
        ev = message.event
        kind = getattr(ev, "kind", "")
        if kind in self.counts:
            self.counts[kind] += 1
        bar = self.query_one("#progress", ProgressBar)
        total = getattr(ev, "total", None)
        index = getattr(ev, "index", None)
        if total and index is not None and kind in self.counts:
            bar.update(total=total, progress=index)
        if kind == "error":
            self._add_error(getattr(ev, "path", "") or "", getattr(ev, "message", "") or "")
        name = Path(ev.path).name if getattr(ev, "path", None) else ""
        c = self.counts
        self.query_one("#ingest-status", Static).update(
            f"{index or 0}/{total or '?'} {kind} {name} · added {c['added']} · "
            f"duplicates {c['duplicate']} · errors {c['error']}")

    def _add_error(self, path: str, message: str) -> None:
        if (path, message) in self.errors:
            return
        self.errors.append((path, message))
        self._show_issues()

    def _show_issues(self) -> None:
        """Errors (not stored), then warnings (stored, but worth a look: almost all silence)."""
        from rich.text import Text

        text = Text(style="bold")  # as before: the whole list bold
        for title, mark, items in (("errors", "✗", self.errors), ("warnings", "⚠", self.warnings)):
            if not items:
                continue
            if text.plain:
                text.append("\n")
            text.append(f"{title} ({len(items)}):", style="bold")
            for p, msg in items:
                text.append(f"\n{mark} ")
                text.append(Path(p).name or p, style="bold")
                text.append(f": {_strip_source(msg, p)}")
        self.query_one("#ingest-errors", Static).update(text)

    def on_ingest_done(self, message: IngestDone) -> None:
        r = message.report
        self.report = r
        self.skipped = message.skipped
        self.warnings = list(message.warnings)
        for path, msg in [*message.problems, *r.errors]:
            self._add_error(path, msg)
        self._show_issues()
        state = "cancelled" if r.cancelled else "done"
        self.query_one("#ingest-status", Static).update(
            f"{state}: added {len(r.added)} · duplicates {len(r.skipped_duplicates)} · "
            f"errors {len(r.errors) + len(message.problems)}" + _skipped_note(message.skipped))
        bar = self.query_one("#progress", ProgressBar)
        if not r.cancelled and bar.total:
            bar.update(progress=bar.total)
        if not r.cancelled:
            self.sources.clear()
            self._show_sources()

    def on_ingest_finished(self, message: IngestFinished) -> None:
        self.running = False
        self.cancel_event = None
        self.refresh_bindings()
        if self.report is None:
            self.query_one("#ingest-status", Static).update("ingest did not run")


def _skipped_note(skipped: list) -> str:
    """" · skipped 2 (not audio: .m4a, .txt)": files in the folders that were left out."""
    if not skipped:
        return ""
    kinds = sorted({Path(p).suffix.lower() or "no suffix" for p in skipped})
    return f" · skipped {len(skipped)} (not audio: {', '.join(kinds[:3])})"


def _strip_source(message: str, path: str) -> str:
    """The library's message names the file (its path, or "<N bytes>"); the list shows the
    name already."""
    import re

    for prefix in (f"{path}: ", f"{Path(path).name}: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return re.sub(r"^<\d+ bytes>: ", "", message)
