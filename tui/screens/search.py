"""Search: a query file (path input with filesystem completion), tau, mode (two-stage,
traversal, multi-probe); ``vault.search`` in a worker; the hits with their BER, matches set apart
from non-matches, a BER bar chart against the tau line (the paper's Fig. 10), a plain
"no match" when nothing is under tau, and the time of each stage (``SearchResult.timings``)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, Select, Static

from speechvault.hit_rows import evidence_words
from tui.messages import SearchDone
from tui.suggest import PathSuggester
from tui.widgets import Field, Bar, BerChart, OpenTable

MODES = ("auto", "two-stage", "traversal", "multi-probe")
TIMING_KEYS = (("decode", "decode"), ("features", "features"), ("inference", "inference"),
               ("category_stage", "category"), ("hamming_stage", "hamming"), ("total", "total"))


class SearchScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "search", "Search"),
        Binding("ctrl+o", "focus_query", "Query"),
        Binding("ctrl+t", "focus_tau", "τ"),
        Binding("ctrl+g", "focus_mode", "Mode"),
        Binding("ctrl+l", "focus_hits", "Hits", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="search")
        self.result = None
        self.rows: list = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="search-form"):
            with Horizontal(classes="form-row"):
                yield Label("query", classes="field-label")
                yield Field(placeholder=_query_placeholder(self.app.paths), id="query",
                            suggester=PathSuggester(self.app.paths), compact=True)
            with Horizontal(classes="form-row"):
                yield Label("τ", classes="field-label")
                yield Field(placeholder="vault τ", id="tau", compact=True,
                            restrict=r"[0-9.]*", max_length=6)
                yield Label("mode", classes="field-label")
                yield Select([(m, m) for m in MODES], value="auto", allow_blank=False,
                             id="mode", compact=True)
                yield Label("top", classes="field-label")
                yield Field(value=str(getattr(self.app, "search_top", 10)), id="top",
                            compact=True, restrict=r"[0-9]*", max_length=4)
        yield Static("type a query file and press enter", id="verdict")
        yield Static("", id="timings")
        with Container(id="results"):
            yield OpenTable(id="hits", cursor_type="row")
            yield BerChart(id="chart")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#hits", DataTable)
        for label in ("#", "id", "name", "category", "BER", "at", "match"):
            table.add_column(label, key=label)
        # set now, not deferred (``focus()``): keys typed during the switch come next
        self.set_focus(self.query_one("#query", Input))

    # -- actions ---------------------------------------------------------------------------
    def action_focus_query(self) -> None:
        self.query_one("#query", Input).focus()

    def action_focus_tau(self) -> None:
        self.query_one("#tau", Input).focus()

    def action_focus_mode(self) -> None:
        self.query_one("#mode", Select).focus()

    def action_focus_hits(self) -> None:
        self.query_one("#hits", DataTable).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.action_search()

    def params(self) -> tuple[str, float | None, str, int] | None:
        query = self.query_one("#query", Input).value.strip()
        tau_text = self.query_one("#tau", Input).value.strip()
        top_text = self.query_one("#top", Input).value.strip()
        verdict = self.query_one("#verdict", Static)
        if not query:
            verdict.update("type the path of a query file")
            return None
        tau = None
        if tau_text:
            try:
                tau = float(tau_text)
            except ValueError:
                verdict.update(f"τ must be a number in (0, 0.5), not {tau_text!r}")
                return None
            if not 0.0 < tau < 0.5:
                verdict.update(f"τ must be in (0, 0.5), not {tau}")
                return None
        top = int(top_text) if top_text.isdigit() and int(top_text) > 0 else 10
        mode = self.query_one("#mode", Select).value
        return query, tau, str(mode), top

    def action_search(self) -> None:
        p = self.params()
        if p is None:
            return
        query, tau, mode, top = p
        from pathlib import Path

        from speechvault.errors import InvalidInputError

        try:
            self.app.paths.check(query)
        except InvalidInputError as exc:
            self._clear_results()
            self.query_one("#verdict", Static).update(_esc(exc.message))
            return

        self.query_one("#verdict", Static).update(f"searching {Path(query).name} ({mode})…")
        self._clear_results()  # no hits of an earlier query may stand under this one's answer
        self.app.track(self.app.run_search(self, query, tau, mode, top),
                       on_error=self._search_failed)

    def _clear_results(self) -> None:
        self.result = None
        self.rows = []
        self.query_one("#hits", DataTable).clear()
        self.query_one("#chart", BerChart).clear()
        self.query_one("#timings", Static).update("")

    def _search_failed(self, error: BaseException) -> None:
        message = getattr(error, "message", None) or " ".join(str(error).split())
        self.query_one("#verdict", Static).update(f"[b]search failed[/b]: {_esc(message)}")

    # -- results ---------------------------------------------------------------------------
    def on_search_done(self, message: SearchDone) -> None:
        res = message.result
        self.result = res
        fmt = self.app.fmt
        seen = set()
        rows = []
        for h in list(res.hits) + list(getattr(res, "nearest", []) or []):
            if h.recording_id in seen:
                continue
            seen.add(h.recording_id)
            rows.append(h)
        # excerpt hits rank by their evidence, whole-copy hits by BER (as the search did)
        rows.sort(key=lambda h: (not h.is_match, -h.evidence if getattr(h, "evidence", None)
                                 is not None else h.ber, h.recording_id))
        self.rows = rows
        table = self.query_one("#hits", DataTable)
        table.clear()
        separator_done = False
        n_match = sum(1 for h in rows if h.is_match)
        # an excerpt matches by its evidence over the windows (store.excerpt), not by BER < tau
        rule = res.excerpt_rule()
        for i, h in enumerate(rows, 1):
            if not h.is_match and not separator_done:
                if n_match:
                    sep = f"── τ = {res.tau:.2f} ──" if rule is None else "── too little evidence ──"
                    table.add_row("", "", sep, "", "", "", "", key="sep")
                separator_done = True
            mark = ("✓ < τ" if rule is None else "✓ evidence") if h.is_match else "✗"
            name = f"[b]{_esc(h.name)}[/b]" if h.is_match else _esc(h.name)
            table.add_row(str(i), str(h.recording_id), name, _esc(h.category), fmt.ber(h.ber),
                          fmt.clock(getattr(h, "offset", None)), mark, key=str(h.recording_id))
        bars = [Bar(h.name, float(h.ber), bool(h.is_match)) for h in rows]
        chart = self.query_one("#chart", BerChart)
        if rule is None:
            chart.set_data(bars, float(res.tau))
        else:  # each bar is a hit's best window; the line is where a window starts to count
            chart.set_data(bars, rule.tau_window, legend=f"match: {rule.summary()}")

        verdict = self.query_one("#verdict", Static)
        if res.matched and n_match:
            best = rows[0]
            extra = f" (+{n_match - 1} more)" if n_match > 1 else ""
            where = (f" · found at {fmt.clock(best.offset)}"
                     if getattr(best, "offset", None) is not None else "")
            why = (f"BER {fmt.ber(best.ber)} < τ {res.tau:.2f}" if rule is None else
                   f"{evidence_words(best)}, best BER {fmt.ber(best.ber)}")
            verdict.update(f"[b]MATCH[/b] {_esc(best.name)}{where} · category "
                           f"{_esc(best.category)} · {why}{extra}")
        elif rule is not None:
            near = (f" · nearest {_esc(rows[0].name)} evidence {rows[0].evidence:.2f}"
                    if rows else "")
            verdict.update(f"[b]no match[/b]: no recording has the evidence an excerpt needs{near}")
        else:
            near = f" · nearest {_esc(rows[0].name)} BER {fmt.ber(rows[0].ber)}" if rows else ""
            verdict.update(f"[b]no match[/b]: nothing under τ {res.tau:.2f}{near}")
        t = res.timings or {}
        parts = [f"{label} {fmt.seconds(t[key])}" for key, label in TIMING_KEYS if key in t]
        qcat = res.query_category if res.query_category is not None else "-"
        cand = getattr(res, "candidates", None)
        total_rows = getattr(res, "total_rows", None)
        scope = f" · compared {cand}/{total_rows} rows" if total_rows else ""
        mode = res.mode
        if getattr(res, "fell_back", False):
            mode = f"{res.mode}, nothing in the category: all rows"
            scope = f" · compared {cand} rows (category, then all {total_rows})"
        self.query_one("#timings", Static).update(
            f"{mode} · query category {_esc(qcat)}{scope}\n" + " · ".join(parts))
        if rows:
            table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key and key != "sep":
            from tui.screens.record import RecordScreen

            self.app.push_screen(RecordScreen(int(key)))


def _query_placeholder(paths) -> str:
    if not paths.names_paths:
        return "no server files here: ssh HOST search < query.wav"
    return "path of an audio file (→ completes)"


def _esc(text) -> str:
    from rich.markup import escape

    return escape(str(text))
