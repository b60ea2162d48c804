"""Library: the recordings table (name, category, duration, size, added), the category filter
(SQL: ``vault.list(category=...)``), a name filter (``name_like``), counts per category
(``vault.category_counts()``) and the vault's info."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Label, OptionList, Static

from tui.widgets import Field, OpenTable
from textual.widgets.option_list import Option

from tui.messages import Deleted, Exported, LibraryLoaded

ALL = "\x00all"
#: "id" first: the number ``speechvault export/delete ID`` take
COLUMNS = ("id", "name", "category", "duration", "size", "added")


class LibraryScreen(Screen):
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("c", "focus_categories", "Cats"),
        Binding("e", "export_selected", "Export"),
        Binding("delete", "delete_selected", "Delete"),
        Binding("escape", "focus_table", "Table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="library")
        self.category: str | None = None
        self.name_like: str = ""
        self.rows: list = []
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="library-body"):
            with Vertical(id="side"):
                yield Label("Categories", classes="panel-title")
                yield OptionList(id="categories")
                yield Label("Vault", classes="panel-title")
                yield Static("opening…", id="vault-info")
            with Vertical(id="main"):
                yield Field(placeholder="/ filter by name", id="name-filter", compact=True)
                yield OpenTable(id="recordings", cursor_type="row", zebra_stripes=True)
                yield Static("", id="library-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#recordings", DataTable)
        self._set_columns(table, [])
        self.set_focus(table)  # now, not deferred: keys typed during the switch come next
        self.watch(self.app, "vault_generation", self._vault_changed, init=True)

    def _vault_changed(self, _generation: int) -> None:
        if self.app.vault is not None:
            self.reload()
        else:
            msg = self.app.vault_error or ("ingest in progress" if self.app.ingesting
                                            else "opening…")
            self.query_one("#library-status", Static).update(msg)

    def reload(self) -> None:
        if self.app.vault is None:
            return
        self.query_one("#library-status", Static).update("loading…")
        self.app.load_library(self, self.category, self.name_like or None)

    # -- results --------------------------------------------------------------------------
    def on_library_loaded(self, message: LibraryLoaded) -> None:
        fmt = self.app.fmt
        self.rows = list(message.rows)
        cells = [(str(r.id), Text(r.name), Text(r.category), fmt.duration(r.duration), fmt.size(r.size),
                  fmt.added(r.added, date_only=True)) for r in self.rows]
        table = self.query_one("#recordings", DataTable)
        table.clear(columns=True)
        self._set_columns(table, cells)
        for r, row in zip(self.rows, cells):
            table.add_row(*row, key=str(r.id))
        self._show_counts(message.counts)
        self._show_info(message.info)
        total = sum(message.counts.values())
        where = f"category {message.category}" if message.category else "all categories"
        if message.name_like:
            where += f", name ~ {message.name_like!r}"
        self.query_one("#library-status", Static).update(
            f"{len(self.rows)} of {total} recordings · {where}")

    @staticmethod
    def _set_columns(table: DataTable, cells: list[tuple]) -> None:
        """Add the columns with explicit widths fitted to the header and ``cells``.

        Not DataTable's auto-width: that is computed when the table is next idle, so a frame
        drawn before then (e.g. the library behind a modal pushed right after a load) shows
        the columns cut to their header widths. The width of a cell is measured as DataTable
        renders it (a str is markup; names and categories are passed as Text, so a file named
        ``x[/b].wav`` is shown as is rather than parsed as markup)."""
        def cell_width(value) -> int:
            if isinstance(value, Text):
                return value.cell_len
            if isinstance(value, str):
                return Text.from_markup(value).cell_len
            return cell_len(str(value))

        for i, label in enumerate(COLUMNS):
            width = max([cell_width(label)] + [cell_width(row[i]) for row in cells])
            table.add_column(label, width=width, key=label)

    def _show_counts(self, counts: dict[str, int]) -> None:
        ol = self.query_one("#categories", OptionList)
        highlighted = self.category or ALL
        ol.clear_options()
        total = sum(counts.values())
        options = [Option(f"{'all':<12} {total:>5}", id=ALL)]
        for name in sorted(counts):
            options.append(Option(f"{name[:12]:<12} {counts[name]:>5}", id=name))
        ol.add_options(options)
        try:
            ol.highlighted = ol.get_option_index(highlighted)
        except Exception:
            ol.highlighted = 0

    def _show_info(self, info) -> None:
        if info is None:
            return
        state = "read-only" if getattr(info, "read_only", True) else "read-write"
        lines = [
            f"file  {self.app.vault_path.name}",
            f"model {info.model_name}",
            f"recs  {info.recordings}",
            f"wins  {info.windows}",
            f"size  {self.app.fmt.file_size(info.size_bytes)}",
            f"K/C   {info.K}/{info.C}",
            f"tau   {info.tau:.2f}",
            f"ciph  {info.cipher}",
            f"open  {state}",
        ]
        self.query_one("#vault-info", Static).update("\n".join(lines))

    # -- filters ---------------------------------------------------------------------------
    @on(OptionList.OptionSelected, "#categories")
    def _category_selected(self, event: OptionList.OptionSelected) -> None:
        option_id = event.option.id
        self.category = None if option_id in (None, ALL) else option_id
        self.reload()
        self.query_one("#recordings", DataTable).focus()

    @on(Input.Changed, "#name-filter")
    def _name_changed(self, event: Input.Changed) -> None:
        self.name_like = event.value.strip()
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(0.25, self.reload)

    @on(Input.Submitted, "#name-filter")
    def _name_submitted(self, event: Input.Submitted) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self.name_like = event.value.strip()
        self.reload()
        self.query_one("#recordings", DataTable).focus()

    def set_category(self, category: str | None) -> None:
        """Filter by category (as selecting it in the side panel does)."""
        self.category = category
        self.reload()

    # -- actions ---------------------------------------------------------------------------
    def action_focus_filter(self) -> None:
        self.query_one("#name-filter", Input).focus()

    def action_focus_categories(self) -> None:
        self.query_one("#categories", OptionList).focus()

    def action_focus_table(self) -> None:
        self.query_one("#recordings", DataTable).focus()

    def _selected_id(self) -> int | None:
        table = self.query_one("#recordings", DataTable)
        if not self.rows or table.cursor_row is None or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key
        return int(key.value)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "recordings":
            self._open(int(event.row_key.value))

    def action_open_selected(self) -> None:
        rid = self._selected_id()
        if rid is not None:
            self._open(rid)

    def _open(self, recording_id: int) -> None:
        from tui.screens.record import RecordScreen

        self.app.push_screen(RecordScreen(recording_id))

    def action_export_selected(self) -> None:
        rid = self._selected_id()
        if rid is None:
            return
        row = next((r for r in self.rows if r.id == rid), None)
        from tui.screens.record import ask_export

        ask_export(self, rid, row.name if row else f"recording-{rid}")

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "delete_selected":
            return not self.app.read_only  # no Delete at all in a read-only session
        return True

    def action_delete_selected(self) -> None:
        rid = self._selected_id()
        if rid is None:
            return
        row = next((r for r in self.rows if r.id == rid), None)
        from tui.screens.record import ask_delete

        ask_delete(self, rid, row.name if row else f"recording-{rid}")

    def on_deleted(self, message: Deleted) -> None:
        self.notify(f"deleted {message.name} (id {message.recording_id})")

    def on_exported(self, message: Exported) -> None:
        self.notify(f"exported to {message.path}")
