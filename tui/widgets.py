"""Terminal charts of the TUI: the BER bar chart with its tau line (the paper's Fig. 10), a
Log-Mel spectrogram heat map, and the hash bits of a recording.

Each chart is a pure function ``render_*(...) -> rich.text.Text`` (unit-testable without an app)
wrapped by a small widget that re-renders on resize. Colours are the 16 standard ANSI colours
only, so a 16-colour terminal shows exactly what a truecolour one does; with ``NO_COLOR`` (the
app's ``no_color``) the charts switch to glyphs that carry the same information without colour:
the heat map uses a character ramp, the bar chart uses different fills for matches and
non-matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable, Input

# -------------------------------------------------------------------------------------------
# BER bar chart
# -------------------------------------------------------------------------------------------

MATCH_FILL = "█"
MISS_FILL = "▒"
TAU_MARK = "│"


@dataclass(frozen=True)
class Bar:
    label: str
    ber: float
    is_match: bool


def _fit(label: str, width: int) -> str:
    if width <= 0:
        return ""
    if len(label) <= width:
        return label.ljust(width)
    return label[: max(0, width - 1)] + "…"


def render_ber_chart(bars: Sequence[Bar], tau: float, width: int, *, color: bool = True,
                     max_rows: int | None = None, legend: str | None = None) -> Text:
    """Horizontal bars of BER per hit, a vertical line at tau, matches drawn apart. ``legend``:
    the rule of an excerpt search, whose hits match by their evidence over the windows, not by
    "BER < tau" (each bar is then a hit's best window, the line the rule's per-window tau).

    The scale runs from 0 to 0.5 (the BER of unrelated codes), or to the largest BER if above.
    """
    width = max(int(width), 24)
    label_w = min(22, max(8, width // 4))
    value_w = 6
    bar_w = width - label_w - value_w - 2
    scale = max(0.5, max((b.ber for b in bars), default=0.0))
    tau_col = min(bar_w - 1, max(0, int(round(tau / scale * bar_w))))
    out = Text(no_wrap=True, overflow="crop")

    # axis line with ticks every 0.1 and the tau label
    axis = [" "] * bar_w
    for k in range(0, int(scale * 10 + 1e-9) + 1):
        col = int(round(k / 10 / scale * bar_w))
        if col < bar_w:
            axis[col] = "┬"
    axis[tau_col] = "τ"
    head = " " * (label_w + value_w + 2)
    out.append(head + "".join(axis) + "\n", style="dim" if color else "")
    ticks = [" "] * bar_w
    for k in range(0, int(scale * 10 + 1e-9) + 1):
        col = int(round(k / 10 / scale * bar_w))
        s = f"{k / 10:.1f}"
        if col + len(s) <= bar_w:
            ticks[col:col + len(s)] = list(s)
    out.append(" " * (label_w + 1) + "BER".rjust(value_w) + " " + "".join(ticks) + "\n",
               style="dim" if color else "")

    rows = list(bars) if max_rows is None else list(bars)[:max_rows]
    for i, b in enumerate(rows):
        n = min(bar_w, int(round(min(b.ber, scale) / scale * bar_w)))
        fill = MATCH_FILL if b.is_match else MISS_FILL
        bar_style = ("bold green" if b.is_match else "red") if color else ""
        label_style = ("bold" if b.is_match else "") if color else ("bold" if b.is_match else "")
        out.append(_fit(b.label, label_w), style=label_style)
        out.append(" ")
        out.append(f"{b.ber:.3f}".rjust(value_w), style=label_style)
        out.append(" ")
        cells = []
        if n == 0 and b.is_match:
            n = 1
            fill = "▏"  # a match at BER ~0 still shows where it is
        for c in range(bar_w):
            if c < n:
                cells.append((fill, bar_style))
            elif c == tau_col:
                cells.append((TAU_MARK, "yellow" if color else ""))
            else:
                cells.append((" ", ""))
        # merge runs of the same style
        run_text, run_style = "", None
        for ch, st in cells:
            if st != run_style and run_text:
                out.append(run_text, style=run_style or "")
                run_text = ""
            run_style = st
            run_text += ch
        if run_text:
            out.append(run_text, style=run_style or "")
        if i < len(rows) - 1:
            out.append("\n")
    if not rows:
        out.append(" " * (label_w + value_w + 2) + " " * tau_col + TAU_MARK)
    out.append("\n")
    if legend is None:
        legend = f"{MATCH_FILL} match (BER < τ={tau:.2f})   {MISS_FILL} no match   {TAU_MARK} τ"
    else:  # an excerpt search: the line is where a window starts to add evidence
        legend = (f"{MATCH_FILL} match by evidence   {MISS_FILL} no match   {TAU_MARK} τ={tau:.2f} "
                  f"per window\n{legend}")
    out.append(legend, style="dim" if color else "")
    return out


class BerChart(Widget):
    """The BER of each hit against the tau line."""

    DEFAULT_CSS = """
    BerChart { height: auto; min-height: 4; }
    """

    bars: reactive[tuple[Bar, ...]] = reactive(tuple, layout=True)
    #: None until a search has answered: no tau line is drawn before the vault's tau is known
    #: (a fixed 0.26 was drawn, which is not every vault's threshold)
    tau: reactive[float | None] = reactive(None)
    #: what a match means when it is not "BER < tau" (``render_ber_chart``)
    legend: str | None = None

    def set_data(self, bars: Sequence[Bar], tau: float, legend: str | None = None) -> None:
        self.legend = legend
        self.tau = float(tau)
        self.bars = tuple(bars)

    def clear(self) -> None:
        self.bars = ()
        self.tau = None
        self.legend = None

    def render(self) -> Text:
        if self.tau is None:
            return Text("BER chart: after a search", style="dim" if not self.app.no_color else "")
        legend_rows = 2 if self.legend is not None else 1  # the excerpt rule's line too
        rows = max(1, self.size.height - 2 - legend_rows) if self.size.height else None
        return render_ber_chart(self.bars, self.tau, self.size.width or 60,
                                color=not self.app.no_color, max_rows=rows, legend=self.legend)

    def get_content_height(self, container, viewport, width: int) -> int:
        extra = 0 if self.legend is None else 1  # the excerpt rule's line under the legend
        return (len(self.bars) + 3 if self.bars else 4) + extra


# -------------------------------------------------------------------------------------------
# Spectrogram heat map
# -------------------------------------------------------------------------------------------

#: dark -> bright, standard ANSI colours only (exact in 16-colour terminals)
HEAT_COLORS = ("black", "blue", "magenta", "red", "bright_red", "yellow", "bright_yellow",
               "bright_white")
#: the same ramp as characters, for NO_COLOR
HEAT_RAMP = " .:-=+*#%@"


def _resample(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Block-mean resampling of a 2-D array to (rows, cols) (nearest when enlarging)."""
    a = np.asarray(a, dtype=np.float64)
    r_edges = np.linspace(0, a.shape[0], rows + 1)
    c_edges = np.linspace(0, a.shape[1], cols + 1)
    out = np.empty((rows, cols))
    for i in range(rows):
        r0 = int(r_edges[i]); r1 = max(r0 + 1, int(np.ceil(r_edges[i + 1])))
        block_r = a[r0:min(r1, a.shape[0])]
        for j in range(cols):
            c0 = int(c_edges[j]); c1 = max(c0 + 1, int(np.ceil(c_edges[j + 1])))
            out[i, j] = block_r[:, c0:min(c1, a.shape[1])].mean()
    return out


def normalise(spec: np.ndarray) -> np.ndarray:
    """Log-Mel values to [0, 1] between the 5th and 99.5th percentiles."""
    s = np.asarray(spec, dtype=np.float64)
    finite = s[np.isfinite(s)]
    if finite.size == 0:
        return np.zeros_like(s)
    lo, hi = np.percentile(finite, [5, 99.5])
    if hi - lo < 1e-9:
        return np.zeros_like(s)
    s = np.where(np.isfinite(s), s, lo)
    return np.clip((s - lo) / (hi - lo), 0.0, 1.0)


def render_heatmap(spec: np.ndarray, width: int, height: int, *, color: bool = True) -> Text:
    """A (n_mels, n_frames) Log-Mel spectrogram as ``height`` text rows, low frequencies at the
    bottom, time left to right.

    With colour each cell is an upper half block whose foreground is the upper pixel and whose
    background the lower one (two Mel rows per text row); without colour each cell is one
    character of ``HEAT_RAMP``.
    """
    width, height = max(1, int(width)), max(1, int(height))
    spec = np.asarray(spec)
    out = Text(no_wrap=True, overflow="crop")
    if spec.ndim != 2 or spec.size == 0:
        out.append("(no spectrogram)")
        return out
    norm = normalise(spec)[::-1]  # row 0 = highest Mel band
    if color:
        px = _resample(norm, 2 * height, width)
        levels = np.clip((px * len(HEAT_COLORS)).astype(int), 0, len(HEAT_COLORS) - 1)
        for r in range(height):
            top, bottom = levels[2 * r], levels[2 * r + 1]
            run, run_style = "", None
            for c in range(width):
                st = f"{HEAT_COLORS[top[c]]} on {HEAT_COLORS[bottom[c]]}"
                if st != run_style and run:
                    out.append(run, style=run_style)
                    run = ""
                run_style = st
                run += "▀"
            out.append(run, style=run_style)
            if r < height - 1:
                out.append("\n")
    else:
        px = _resample(norm, height, width)
        levels = np.clip((px * len(HEAT_RAMP)).astype(int), 0, len(HEAT_RAMP) - 1)
        lines = ["".join(HEAT_RAMP[v] for v in row) for row in levels]
        out.append("\n".join(lines))
    return out


class SpectrogramHeatmap(Widget):
    """A terminal heat map of a Log-Mel spectrogram (fills its region)."""

    DEFAULT_CSS = """
    SpectrogramHeatmap { height: 10; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._spec: np.ndarray | None = None
        self._message = "spectrogram: decrypt the recording to see it (d)"

    def set_spectrogram(self, spec: np.ndarray | None, message: str | None = None) -> None:
        self._spec = spec
        if message is not None:
            self._message = message
        self.refresh()

    def set_message(self, message: str) -> None:
        self._spec = None
        self._message = message
        self.refresh()

    @property
    def spectrogram(self) -> np.ndarray | None:
        return self._spec

    def render(self) -> Text:
        if self._spec is None:
            return Text(self._message, style="dim" if not self.app.no_color else "")
        return render_heatmap(self._spec, self.size.width, self.size.height,
                              color=not self.app.no_color)


# -------------------------------------------------------------------------------------------
# Hash bits
# -------------------------------------------------------------------------------------------

def render_hash_bits(category: int | None, n_classes: int | None, bits: np.ndarray | None,
                     *, class_name: str | None = None, window: int = 0, n_windows: int = 1,
                     width: int = 80, color: bool = True, code: str = "h2") -> Text:
    """h1 (one-hot category) and the indexed code (K bits) of one window, 64 bits a line in
    groups of 8 ('1' bold, '0' dim). ``code`` names what the vault indexes: "h2" (the paper's
    semantic hash) or "fingerprint" (the default model's excerpt fingerprint) -- calling a
    fingerprint "h2" told the user something false about what is stored."""
    out = Text(no_wrap=True, overflow="crop")
    if category is not None and n_classes:
        h1 = "".join("1" if i == int(category) else "0" for i in range(int(n_classes)))
        name = f"  = {class_name}" if class_name else f"  = class {int(category)}"
        out.append(f"h1 ({int(n_classes)} bits) ", style="bold" if color else "")
        out.append(h1 + name + "\n")
    if bits is None or np.asarray(bits).size == 0:
        out.append(f"{code}: -")
        return out
    b = np.asarray(bits).reshape(-1)
    k = b.size
    per_line = 64 if width >= 76 else 32
    out.append(f"{code} (K={k} bits, window {window + 1}/{n_windows})", style="bold" if color else "")
    for start in range(0, k, per_line):
        chunk = b[start:start + per_line]
        out.append(f"\n{start:>4} ")
        for g in range(0, chunk.size, 8):
            group = "".join("1" if v else "0" for v in chunk[g:g + 8])
            if color:
                for ch in group:
                    out.append(ch, style="bold bright_white" if ch == "1" else "dim")
            else:
                out.append(group)
            if g + 8 < chunk.size:
                out.append(" ")
    return out


class HashBitsView(Widget):
    DEFAULT_CSS = """
    HashBitsView { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.category: int | None = None
        self.n_classes: int | None = None
        self.class_name: str | None = None
        self.bits: np.ndarray | None = None  # (n_windows, K)
        self.window = 0
        self.code = "h2"

    def set_codes(self, category, n_classes, bits, class_name=None, code: str = "h2") -> None:
        self.code = code
        self.category = category
        self.n_classes = n_classes
        self.class_name = class_name
        self.bits = None if bits is None else np.atleast_2d(np.asarray(bits))
        self.window = 0
        self.refresh(layout=True)

    def next_window(self) -> None:
        if self.bits is not None and len(self.bits) > 1:
            self.window = (self.window + 1) % len(self.bits)
            self.refresh(layout=True)

    def _text(self, width: int) -> Text:
        row = None if self.bits is None else self.bits[self.window]
        n = 1 if self.bits is None else len(self.bits)
        return render_hash_bits(self.category, self.n_classes, row, class_name=self.class_name,
                                window=self.window, n_windows=n, width=width,
                                color=not self.app.no_color, code=self.code)

    def render(self) -> Text:
        return self._text(self.size.width or 80)

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self._text(width).plain.splitlines()))


# -------------------------------------------------------------------------------------------
# small keyboard helpers: the enter key shown in the footer
# -------------------------------------------------------------------------------------------

class OpenTable(DataTable):
    """A row-cursor DataTable whose enter ("Open") is shown in the footer."""

    BINDINGS = [Binding("enter", "select_cursor", "Open")]


class Field(Input):
    """An Input whose cursor does not blink when the app's display is frozen (snapshots)."""

    def on_mount(self) -> None:
        fmt = getattr(self.app, "fmt", None)
        if fmt is not None and fmt.freeze:
            self.cursor_blink = False


class SubmitInput(Field):
    """An Input whose enter is shown in the footer with a label of our choosing."""

    def __init__(self, *args, submit_label: str = "OK", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._bindings.bind("enter", "submit", submit_label, show=True)
