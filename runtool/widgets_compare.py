"""The dashboard's Compare tab: one kind's finished runs by their metrics.

A scatter plot of a chosen metric against a chosen parameter (or the time the run finished),
each point labelled with its run id, and below it the runs behind the plot as a table with
one column per metric and per parameter, sorted by a click on a column's header; each run's
button opens it in the Runs tab. The plot is plain SVG (no plotting library in the kernel)
built by functions that need no widgets, so they are tested without a browser.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import ipywidgets as widgets

from . import format as fmt
from .api import RunQueue
from .dashrefresh import locked
from .errors import RuntoolError
from .metrics import is_number
from .models import Run

#: The newest finished runs of a kind that the tab reads (a sweep is rarely larger).
MAX_RUNS = 500
#: Rows of the table (the plot shows every run read).
TABLE_ROWS = 100
#: The "against" choice that plots against the time a run finished.
TIME = "finished at"
FINISHED = ("succeeded", "failed")
WIDTH, HEIGHT, MARGIN = 660, 340, 64


@dataclass(frozen=True)
class Point:
    run_id: int
    x: float | str
    y: float


def points(runs: Sequence[Run], metric: str, against: str) -> list[Point]:
    """The runs that recorded `metric` (and have a value for `against`), as points."""
    found = []
    for run in runs:
        y = run.metrics.get(metric)
        if not is_number(y):
            continue
        if against == TIME:
            x: Any = run.finished_at
        else:
            x = run.parameters.get(against)
        if x is None:
            continue
        found.append(Point(run.id, x if is_number(x) else json.dumps(x, ensure_ascii=False), float(y)))  # type: ignore[arg-type]
    return found


@dataclass(frozen=True)
class Spot:
    """Where a point is drawn, as fractions of the plot's width and height (from its top left)."""

    run_id: int
    left: float
    top: float
    tip: str


def scatter_svg(pts: Sequence[Point], x_label: str, y_label: str, time_axis: bool = False) -> str:
    """An SVG scatter plot with each point labelled by its run id; numbers on a linear axis
    (logarithmic when positive and spanning two decades), anything else as categories."""
    return scatter(pts, x_label, y_label, time_axis)[0]


def scatter(pts: Sequence[Point], x_label: str, y_label: str, time_axis: bool = False) -> tuple[str, list[Spot]]:
    """`scatter_svg`'s plot, and where each point is in it (for the buttons laid over them)."""
    if not pts:
        return '<div class="rt-cmp-empty">no finished run of this kind recorded this metric</div>', []
    numeric = all(isinstance(p.x, (int, float)) for p in pts)
    categories = [] if numeric else sorted({str(p.x) for p in pts})
    xs = [float(p.x) for p in pts] if numeric else [float(categories.index(str(p.x))) for p in pts]
    log = numeric and not time_axis and min(xs) > 0 and max(xs) / min(xs) >= 100
    if log:
        xs = [math.log10(x) for x in xs]
    ys = [p.y for p in pts]
    x0, x1 = _span(xs)
    y0, y1 = _span(ys)

    def sx(v: float) -> float:
        return MARGIN + (v - x0) / (x1 - x0) * (WIDTH - 2 * MARGIN)

    def sy(v: float) -> float:
        return HEIGHT - MARGIN + (y0 - v) / (y1 - y0) * (HEIGHT - 2 * MARGIN) + 0.0

    parts = [f'<svg class="rt-cmp-plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-size="11" font-family="sans-serif">',
             f'<rect x="{MARGIN}" y="{MARGIN // 2}" width="{WIDTH - 2 * MARGIN}" '
             f'height="{HEIGHT - MARGIN - MARGIN // 2}" fill="#fafafa" stroke="#ccc"/>']
    for value in _ticks(y0, y1):
        parts.append(f'<text x="{MARGIN - 6}" y="{sy(value) + 4:.1f}" text-anchor="end">{fmt.number(value)}</text>'
                     f'<line x1="{MARGIN}" x2="{WIDTH - MARGIN}" y1="{sy(value):.1f}" y2="{sy(value):.1f}" '
                     'stroke="#eee"/>')
    if numeric:
        for value in _ticks(x0, x1, log=log):
            label = _x_text(value, log, time_axis)
            parts.append(f'<text x="{sx(value):.1f}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle">'
                         f"{escape(label)}</text>")
    else:
        for index, name in enumerate(categories):
            parts.append(f'<text x="{sx(index):.1f}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle">'
                         f"{escape(name[:24])}</text>")
    spots = []
    for point, x, y in zip(pts, xs, ys, strict=True):
        tip = f"run {point.run_id}: {x_label} {_x_text(x, log, time_axis) if numeric else point.x}, {y_label} {fmt.number(y)}"
        spots.append(Spot(point.run_id, sx(x) / WIDTH, sy(y) / HEIGHT, tip))
        parts.append(f'<g class="rt-cmp-point" data-run="{point.run_id}"><title>{escape(tip)}</title>'
                     f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="#1565c0" fill-opacity="0.8"/>'
                     f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 6:.1f}" fill="#333">{point.run_id}</text></g>')
    scale = " (log scale)" if log else ""
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle" font-weight="600">'
                 f"{escape(x_label + scale)}</text>")
    parts.append(f'<text x="12" y="{HEIGHT / 2}" text-anchor="middle" font-weight="600" '
                 f'transform="rotate(-90 12 {HEIGHT / 2})">{escape(y_label)}</text></svg>')
    return "".join(parts), spots


def _span(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, count: int = 5, log: bool = False) -> list[float]:
    """Round values between `lo` and `hi`: whole decades on a log axis, else steps of 1, 2, 2.5 or 5."""
    if log and math.floor(hi) - math.ceil(lo) >= 1:
        return [float(v) for v in range(math.ceil(lo), math.floor(hi) + 1)]
    span = hi - lo
    magnitude = 10 ** math.floor(math.log10(span / count))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if span / (m * magnitude) <= count)
    first = math.ceil(lo / step)
    return [round(i * step, 12) for i in range(first, math.floor(hi / step) + 1)]


def _x_text(value: float, log: bool, time_axis: bool) -> str:
    if time_axis:
        return time.strftime("%m-%d %H:%M:%S", time.gmtime(value))
    return fmt.number(10**value if log else value)


def columns(runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """The metric names and the parameter names of `runs`, in the order they first appear."""
    metrics = list(dict.fromkeys(name for r in runs for name in r.metrics))
    params = list(dict.fromkeys(name for r in runs for name in r.parameters))
    return metrics, params


def sort_key(column: str) -> Callable[[Run], tuple[int, Any]]:
    """Sorting by `column` ("id", "m:<metric>" or "p:<parameter>"); runs without it go last."""
    def key(run: Run) -> tuple[int, Any]:
        if column == "id":
            return 0, run.id
        source: dict[str, Any] = run.metrics if column.startswith("m:") else run.parameters
        value = source.get(column[2:])
        if is_number(value):
            return 0, float(value)
        return (1, "") if value is None else (0, str(value))
    return key


def sorted_runs(runs: Sequence[Run], column: str, descending: bool) -> list[Run]:
    present = [r for r in runs if sort_key(column)(r)[0] == 0]
    missing = [r for r in runs if sort_key(column)(r)[0] == 1]
    try:
        present.sort(key=sort_key(column), reverse=descending)
    except TypeError:  # numbers and text in one column: compare as text
        present.sort(key=lambda r: str(sort_key(column)(r)[1]), reverse=descending)
    return present + missing


def row_html(run: Run, metrics: Sequence[str], params: Sequence[str]) -> str:
    cells = [f'<span class="rt-c rt-cmp-status"><span class="rt-badge rt-st-{run.status.value}">'
             f"{run.status.value}</span></span>"]
    cells += [f'<span class="rt-c rt-cmp-num">{fmt.number(run.metrics.get(m))}</span>' for m in metrics]
    for name in params:
        value = run.parameters.get(name)
        text = "" if name not in run.parameters else json.dumps(value, ensure_ascii=False)
        cells.append(f'<span class="rt-c rt-cmp-num" title="{escape(text)}">{escape(text[:14])}</span>')
    return f'<div class="rt-cells" data-run="{run.id}">' + "".join(cells) + "</div>"


STYLE = """<style>
.rt-cmp-status { width: 100px; } .rt-cmp-num { width: 96px; text-align: right; }
.rt-cmp-head .widget-button { width: 96px; margin: 0; padding: 0 4px; font-size: 12px; }
.rt-cmp-head .rt-cmp-sort-id { width: 64px; margin-right: 6px; }
.rt-cmp-head .rt-cmp-status-h { width: 100px; }
.rt-cmp-empty, .rt-cmp-note { color: #555; padding: 6px 0; }
/* The plot scales with the page (at most its own size); a transparent button over each point
   opens its run: placed in percent of the plot, so it stays on its point at any scale. */
.rt-dash .rt-cmp-canvas, .rt-cmp-canvas { position: relative; display: block; width: 100%; max-width: 660px; }
.rt-cmp-canvas.rt-cmp-has-plot { aspect-ratio: 660 / 340; }
.rt-cmp-canvas svg.rt-cmp-plot { display: block; width: 100%; height: auto; }
.rt-cmp-canvas .widget-button.rt-cmp-dot { position: absolute; width: 18px; height: 18px; min-width: 0;
  margin: 0; padding: 0; transform: translate(-50%, -50%); border-radius: 50%; border: 0;
  background: transparent; box-shadow: none; cursor: pointer; }
.rt-cmp-canvas .widget-button.rt-cmp-dot:hover, .rt-cmp-canvas .widget-button.rt-cmp-dot:focus {
  box-shadow: 0 0 0 2px #ef6c00; outline: none; }
</style>"""


class CompareTab(widgets.VBox):
    """One kind's finished runs: a metric plotted against a parameter or time, and a sortable table."""

    def __init__(self, queue: RunQueue, on_open: Callable[[int], None],
                 lock: threading.RLock | None = None, **kwargs: Any) -> None:
        self._lock = lock or threading.RLock()  # the dashboard's: its refresh thread shares the store
        self._q = queue
        self._on_open = on_open
        self._runs: list[Run] = []
        self._seen: tuple[Any, ...] | None = None
        self._sort = ("id", True)
        self._column_of: dict[widgets.Button, str] = {}
        self._quiet = False

        self._kind = widgets.Dropdown(description="Kind", options=[("pick a kind", "")],
                                      layout=widgets.Layout(width="240px"))
        self._metric = widgets.Dropdown(description="Metric", options=[], layout=widgets.Layout(width="260px"))
        self._against = widgets.Dropdown(description="against", options=[TIME], layout=widgets.Layout(width="260px"))
        self._note = widgets.HTML()
        self._plot = _PlotCanvas(self._on_point_open)
        self._head = widgets.HBox()
        self._head.add_class("rt-cmp-head")
        self._rows = [_CompareRow() for _ in range(TABLE_ROWS)]
        self._row_of = {row.open_button: row for row in self._rows}

        self._kind.add_class("rt-cmp-kind")
        self._metric.add_class("rt-cmp-metric")
        self._against.add_class("rt-cmp-against")
        for control in (self._kind, self._metric, self._against):
            control.observe(self._on_choice_value, "value")
        for row in self._rows:
            row.open_button.on_click(self._on_row_click)

        super().__init__([widgets.HTML(STYLE), widgets.HBox([self._kind, self._metric, self._against]),
                          self._note, self._plot, self._head, *self._rows], **kwargs)
        self.add_class("rt-compare")

    # -- what the dashboard and tests call ------------------------------------------------

    @property
    def plot_html(self) -> str:
        return self._plot.svg.value

    def open_point(self, run_id: int) -> None:
        """Click the plot's point of `run_id`, as a person would."""
        self._plot.button_of(run_id).click()

    @property
    def table_ids(self) -> list[int]:
        """Run ids of the table, top to bottom."""
        return [row.run_id for row in self._rows if row.run_id is not None]

    def choose(self, kind: str | None = None, metric: str | None = None, against: str | None = None) -> None:
        """Pick what to compare, as the dropdowns would."""
        if kind is not None:
            self.sync(kind, visible=True)
        if metric is not None:
            self._metric.value = metric
        if against is not None:
            self._against.value = against

    def sort_by(self, column: str) -> None:
        """Sort the table by `column` ("id", "m:<metric>", "p:<parameter>"), as a header click
        does: a second click on the same column reverses the order."""
        name, descending = self._sort
        self._sort = (column, not descending if column == name else True)
        self._draw_table()

    def sync(self, kind: str | None, visible: bool) -> None:
        """Follow the dashboard's kind filter; re-read the runs when the tab is visible."""
        if not visible and (not kind or kind == self._kind.value):
            return  # nothing to follow: a hidden tab costs the dashboard's refresh nothing
        kinds = self._q.kinds_and_queues()[0]
        self._quiet = True
        try:
            options = [("pick a kind", ""), *((k, k) for k in kinds)]
            if list(self._kind.options) != options:
                chosen = self._kind.value
                self._kind.options = options
                self._kind.value = chosen if chosen in kinds else ""
            if kind and kind in kinds and kind != self._kind.value:
                self._kind.value = kind
        finally:
            self._quiet = False
        if visible:
            self._load()

    # -- inner workings ----------------------------------------------------------------

    def _load(self) -> None:
        kind = self._kind.value
        try:
            runs = self._q.list(status=list(FINISHED), kind=kind, limit=MAX_RUNS) if kind else []
        except RuntoolError as exc:
            self._note.value = f'<div class="rt-cmp-note">cannot read the runs: {escape(str(exc))}</div>'
            return
        seen = (kind, tuple((r.id, r.finished_at, tuple(r.metrics.items())) for r in runs))
        if seen == self._seen:
            return
        self._seen, self._runs = seen, runs
        metrics, params = columns(runs)
        self._quiet = True
        try:
            _set(self._metric, metrics)
            _set(self._against, [*params, TIME])
        finally:
            self._quiet = False
        self._draw()

    def _draw(self) -> None:
        kind, metric, against = self._kind.value, self._metric.value, self._against.value
        if not kind:
            self._note.value = '<div class="rt-cmp-note">Pick a kind (or filter the Runs tab to one kind).</div>'
            self._plot.draw("", [])
        elif not metric:
            self._note.value = (f'<div class="rt-cmp-note">No finished {escape(kind)} run recorded metrics '
                                "(metrics.json in its run folder, or scrapbook scraps).</div>")
            self._plot.draw("", [])
        else:
            pts = points(self._runs, metric, against)
            self._note.value = (f'<div class="rt-cmp-note">{len(pts)} finished {escape(kind)} run(s) with '
                                f"{escape(metric)}; click a point or a run below to open it.</div>")
            self._plot.draw(*scatter(pts, against, metric, time_axis=against == TIME))
        self._draw_table()

    def _draw_table(self) -> None:
        metric, against = self._metric.value, self._against.value
        behind = self._runs
        if metric:  # the table lists the runs behind the plot
            plotted = {p.run_id for p in points(self._runs, metric, against)}
            behind = [r for r in self._runs if r.id in plotted]
        metrics, params = columns(behind)
        column, descending = self._sort
        ordered = sorted_runs(behind, column, descending)
        labels = {"id": "run", **{f"m:{m}": m for m in metrics}, **{f"p:{p}": p for p in params}}
        if list(self._column_of.values()) != list(labels):
            # new columns: new buttons (same columns keep theirs, so a click is never lost
            # on a button replaced under the pointer)
            for old in self._head.children:
                old.close()
            self._column_of = {}
            for name in labels:
                button = widgets.Button(tooltip=f"sort by {labels[name]}")
                button.add_class("rt-cmp-sort")
                if name == "id":
                    button.add_class("rt-cmp-sort-id")
                button.on_click(self._on_header_click)
                self._column_of[button] = name
            buttons = list(self._column_of)
            status = widgets.HTML("<b>status</b>", layout=widgets.Layout(width="100px"))
            self._head.children = [buttons[0], status, *buttons[1:]]
        for button, name in self._column_of.items():
            arrow = (" ▼" if descending else " ▲") if name == column else ""
            button.description = labels[name] + arrow
        for index, row in enumerate(self._rows):
            row.show(ordered[index] if index < len(ordered) else None, metrics, params)

    # -- handlers ----------------------------------------------------------------------

    @locked
    def _on_choice_value(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        if change["owner"] is self._kind:
            self._seen = None
            self._load()
        else:
            self._draw()

    @locked
    def _on_header_click(self, button: widgets.Button) -> None:
        self.sort_by(self._column_of[button])

    @locked
    def _on_point_open(self, run_id: int) -> None:
        self._on_open(run_id)

    @locked
    def _on_row_click(self, button: widgets.Button) -> None:
        row = self._row_of[button]
        if row.run_id is not None:
            self._on_open(row.run_id)


class _PlotCanvas(widgets.Box):
    """The plot, with a transparent button over each point (no script in the page: ipywidgets
    buttons work under Voila, in JupyterLab and in a strict content security policy alike).
    Buttons are made as the plots need them and reused."""

    def __init__(self, on_open: Callable[[int], None]) -> None:
        self._on_open = on_open
        self.svg = widgets.HTML()
        self._buttons: list[widgets.Button] = []
        self._run_of: dict[widgets.Button, int] = {}
        super().__init__([self.svg])
        self.add_class("rt-cmp-canvas")

    def draw(self, svg: str, spots: Sequence[Spot]) -> None:
        self.svg.value = svg
        (self.add_class if spots else self.remove_class)("rt-cmp-has-plot")
        made = len(self._buttons)
        while len(self._buttons) < len(spots):
            button = widgets.Button()
            button.add_class("rt-cmp-dot")
            button.on_click(self._on_dot_click)
            self._buttons.append(button)
        self._run_of = {}
        for button, spot in zip(self._buttons, spots):
            self._run_of[button] = spot.run_id
            button.tooltip = f"{spot.tip} (click to open run {spot.run_id})"
            button.layout.left = f"{spot.left * 100:.2f}%"
            button.layout.top = f"{spot.top * 100:.2f}%"
            button.layout.display = ""
        for button in self._buttons[len(spots):]:
            button.layout.display = "none"
        if len(self._buttons) != made:
            self.children = (self.svg, *self._buttons)

    def button_of(self, run_id: int) -> widgets.Button:
        return next(b for b, shown in self._run_of.items() if shown == run_id)

    def _on_dot_click(self, button: widgets.Button) -> None:
        run_id = self._run_of.get(button)
        if run_id is not None:
            self._on_open(run_id)


class _CompareRow(widgets.HBox):
    def __init__(self) -> None:
        self.open_button = widgets.Button(layout=widgets.Layout(width="64px"))
        self.open_button.add_class("rt-open")
        self.cells = widgets.HTML()
        self.run_id: int | None = None
        super().__init__([self.open_button, self.cells], layout=widgets.Layout(display="none"))
        self.add_class("rt-row")

    def show(self, run: Run | None, metrics: Sequence[str], params: Sequence[str]) -> None:
        self.run_id = run.id if run else None
        if run is None:
            self.layout.display = "none"
            self.open_button.description = ""
            self.cells.value = ""
            return
        self.open_button.description = str(run.id)
        self.open_button.tooltip = f"Open run {run.id}"
        self.cells.value = row_html(run, metrics, params)
        self.layout.display = ""


def _set(dropdown: widgets.Dropdown, names: list[str]) -> None:
    """New options, keeping the chosen one if it is still offered."""
    chosen = dropdown.value
    if list(dropdown.options) != names:
        dropdown.options = names
    dropdown.value = chosen if chosen in names else (names[0] if names else None)
