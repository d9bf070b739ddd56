"""The dashboard's Runs tab: the filters, a header whose metric columns sort, a page of runs
and the pager; a run's detail opens under its row (CSS moves it beside the table when there
is room), or after the pager when the run is not on the page.

The rows are a fixed pool of widgets, each redrawn only when what it shows changed, so a
refresh costs a few indexed queries however many runs are stored. `Dashboard` (widgets.py)
owns the filters and the refresh; the table reads and shows the page they ask for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from . import dashview as view
from .api import RunQueue
from .dashrefresh import locked
from .errors import RunNotFound
from .models import Run, Status

PAGE_SIZE = 20
"""Rows per page of the table."""
COUNT_AHEAD = 10_000
"""Matches counted past the page shown ("1–20 of 10,000+" beyond)."""
METRIC_SAMPLE = 100
"""Newest finished runs of a kind whose metric names become the table's metric columns."""


class RunRow(widgets.VBox):
    """One table row: a button opening the run and its cells as one HTML widget; under them,
    the run's detail when it is the selected run and the table is too narrow to show it beside."""

    def __init__(self) -> None:
        self.open_button = widgets.Button()
        self.open_button.add_class("rt-open")
        self.cells = widgets.HTML()
        self.cells.add_class("rt-cellbox")
        self.view: view.RowView | None = None
        self.line = widgets.HBox([self.open_button, self.cells])
        self.line.add_class("rt-line")
        super().__init__([self.line], layout=widgets.Layout(display="none"))
        self.add_class("rt-row")

    def hold(self, detail: widgets.Widget | None) -> None:
        """Show `detail` under this row (None: nothing)."""
        children = (self.line,) if detail is None else (self.line, detail)
        if tuple(self.children) != children:  # type: ignore[has-type]
            self.children = children

    def show(self, row: view.RowView | None) -> bool:
        """Redraw if `row` differs from what is shown; True if it did."""
        if row == self.view:
            return False
        self.view = row
        if row is None:
            self.layout.display = "none"
            self.open_button.description = ""  # a hidden row must not look like a run
            self.cells.value = ""
            return True
        self.open_button.description = str(row.id)
        self.open_button.tooltip = f"Show run {row.id}"
        self.cells.value = view.row_html(row)
        self.layout.display = ""
        return True


class RunsTable(widgets.VBox):
    """`filters` on top, then the header, the rows and the pager; `detail` goes under the
    selected run's row. A click on a row calls `on_open(run_id)`; a click on a sortable
    column or the pager changes the page and calls `on_change()` to refresh."""

    def __init__(self, q: RunQueue, filters: widgets.Widget, detail: widgets.Widget, *,
                 on_open: Callable[[int], None], on_change: Callable[[], None], lock: threading.RLock,
                 page_size: int = PAGE_SIZE) -> None:
        self.queue = q
        self._detail = detail
        self._on_open = on_open
        self._on_change = on_change
        self._lock = lock
        self.page_size = page_size
        self.selected: int | None = None
        self._offset = 0
        self._metric_columns: list[str] = []
        self._metrics_seen: tuple[Any, ...] | None = None  # what the metric columns were read for
        self._sort: tuple[str, bool] | None = None  # (metric, descending) the table is sorted by
        self._sorted: tuple[Any, list[Run]] | None = None  # a sorted page, and what it was read for
        self._runs: list[Run] = []  # the page read last
        self._total, self._more = 0, False  # its matches (counted up to a cap), and if there are more

        self._sort_buttons: dict[widgets.Button, str] = {}
        self._metric_head = widgets.HBox()
        self._metric_head.add_class("rt-mhead")
        self._head = widgets.HBox([widgets.HTML(view.header_html()), self._metric_head])
        self._head.add_class("rt-headrow")
        self._rows = [RunRow() for _ in range(page_size)]
        self._row_of = {row.open_button: row for row in self._rows}
        self._newer = widgets.Button(description="Newer", icon="chevron-left",
                                     layout=widgets.Layout(width="100px"))
        self._older = widgets.Button(description="Older", icon="chevron-right",
                                     layout=widgets.Layout(width="100px"))
        self._page = widgets.HTML()
        self._detail_slot = widgets.VBox()  # holds the detail when its run is not on this page

        for row in self._rows:
            row.open_button.on_click(self._on_row_click)
        self._newer.on_click(self._on_newer_click)
        self._older.on_click(self._on_older_click)

        pager = widgets.HBox([self._newer, self._page, self._older],
                             layout=widgets.Layout(align_items="center"))
        super().__init__([filters, self._head, *self._rows, pager, self._detail_slot])
        self.add_class("rt-runs")

    @property
    def rows(self) -> list[view.RowView]:
        """The rows shown now, top to bottom."""
        return [row.view for row in self._rows if row.view is not None]

    @property
    def metric_columns(self) -> list[str]:
        """The metric columns shown (filtered to one kind whose finished runs recorded metrics)."""
        return list(self._metric_columns)

    @property
    def sort(self) -> tuple[str, bool] | None:
        """(metric, descending) the table is sorted by; None: newest first."""
        return self._sort

    @property
    def page_text(self) -> str:
        return self._page.value

    def sort_by(self, metric: str | None) -> None:
        """Sort by a metric column: highest first, a second time on the same column lowest
        first (None: newest first again); back to the first page."""
        if metric is None:
            self._sort = None
        elif self._sort is not None and self._sort[0] == metric:
            self._sort = (metric, not self._sort[1])
        else:
            self._sort = (metric, True)
        self._offset = 0

    def go_to(self, page: int) -> None:
        """Show page `page` (from 0) at the next read."""
        self._offset = max(0, page) * self.page_size

    def read(self, filters: dict[str, Any], counts: dict[str, int], known: tuple[int, int] | None) -> None:
        """Read the metric columns and the page for `filters`; `counts` (per status label) and
        `known` (runs stored, newest id) say whether what was read before still holds."""
        self._update_metric_columns(filters.get("kind"), counts, known)
        # Counting a million matches would cost more than the page: count a little past it.
        cap = self._offset + COUNT_AHEAD
        total = self.queue.count(**filters, cap=cap)
        self._more, self._total = total > cap, min(total, cap)
        if self._offset >= self._total > 0:
            self._offset = (self._total - 1) // self.page_size * self.page_size
        self._runs = self._read_page(filters, counts, known)

    def show(self, now: float, paused: dict[str, str]) -> bool:
        """Show the page read last; True if anything changed."""
        runs, changed = self._runs, False
        for index, row in enumerate(self._rows):
            changed |= row.show(view.row_view(runs[index], now, paused, self._metric_columns)
                                if index < len(runs) else None)
        self.mark_selected()
        text = view.pager_text(self._offset, len(runs), self._total, self._more)
        if self._page.value != text:
            self._page.value = text
            changed = True
        self._newer.disabled = self._offset == 0
        self._older.disabled = self._offset + len(runs) >= self._total and not self._more
        return changed

    def mark_selected(self) -> None:
        """Highlight the selected run's row and open the detail under it (beside the table
        when it is wide enough: CSS moves it there), or after the pager when it is not on this page."""
        holder = None
        for row in self._rows:
            if row.view is not None and row.view.id == self.selected:
                row.add_class("rt-selected")
                holder = row
            else:
                row.remove_class("rt-selected")
        for row in self._rows:
            if row is not holder:
                row.hold(None)
        if self.selected is None:
            self._detail_slot.children = ()
            self.remove_class("rt-has-detail")
            return
        self.add_class("rt-has-detail")
        if holder is None:
            self._detail_slot.children = (self._detail,)
        else:
            self._detail_slot.children = ()
            holder.hold(self._detail)

    # -- inner workings ----------------------------------------------------------------

    def _read_page(self, filters: dict[str, Any], counts: dict[str, int],
                   known: tuple[int, int] | None) -> list[Run]:
        """The runs of the page shown. Sorted by a metric, the store walks its run_metrics
        index (~2 ms a page at a million runs; a status rare among the runs having the metric
        costs more), so a sorted page is read again only when the filters, the page or the runs
        changed: a change of status moves the counts per label, a new run the newest id, and
        metrics come only with a finishing change. Its processing runs are re-read for their
        progress."""
        q = self.queue
        if self._sort is None:
            self._sorted = None
            return q.list(**filters, limit=self.page_size, offset=self._offset)
        read_for = (sorted(filters.items()), self._sort, self._offset, sorted(counts.items()), known)
        if self._sorted is not None and self._sorted[0] == read_for:
            try:
                return [q.get(r.id) if r.status is Status.PROCESSING else r for r in self._sorted[1]]
            except RunNotFound:
                pass
        metric, descending = self._sort
        runs = q.list(**filters, limit=self.page_size, offset=self._offset, sort_metric=metric,
                      descending=descending)
        self._sorted = (read_for, runs)
        return runs

    def _update_metric_columns(self, kind: str | None, counts: dict[str, int],
                               known: tuple[int, int] | None) -> None:
        """Filtered to one kind: its metric names as columns, re-read only when the kind or the
        number of finished runs changed (a newest-first sample of METRIC_SAMPLE runs: an
        indexed read, whatever the number of runs stored). A sort by a metric the kind does not
        show ends."""
        seen = (kind, counts.get("succeeded"), counts.get("failed"), known)
        if seen != self._metrics_seen:
            self._metrics_seen = seen
            sample = self.queue.list(status=["succeeded", "failed"], kind=kind, limit=METRIC_SAMPLE) if kind else []
            self._metric_columns = view.metric_columns(sample)
        if self._sort is not None and self._sort[0] not in self._metric_columns:
            self._sort = None
        names = self._metric_columns
        if list(self._sort_buttons.values()) != names:
            # new columns, new buttons (the same columns keep theirs: a click is never lost on
            # a button replaced under the pointer)
            for old in self._metric_head.children:
                old.close()
            self._sort_buttons = {}
            for name in names:
                button = widgets.Button()
                button.add_class("rt-msort")
                button.on_click(self._on_sort_click)
                self._sort_buttons[button] = name
            self._metric_head.children = tuple(self._sort_buttons)
        for button, name in self._sort_buttons.items():
            label = view.sort_label(name, self._sort)
            if button.description != label:
                button.description = label
                button.tooltip = (f"{name}: sorted {'highest' if self._sort and self._sort[1] else 'lowest'} first"
                                  " (click to reverse)" if label != name else f"sort by {name}, highest first")
                (button.add_class if label != name else button.remove_class)("rt-sorted")
        if names:
            self.add_class("rt-with-metrics")
        else:
            self.remove_class("rt-with-metrics")

    # -- handlers ----------------------------------------------------------------------

    @locked
    def _on_row_click(self, button: widgets.Button) -> None:
        row = self._row_of[button]
        if row.view is not None:
            self._on_open(row.view.id)

    @locked
    def _on_sort_click(self, button: widgets.Button) -> None:
        self.sort_by(self._sort_buttons[button])
        self._on_change()

    @locked
    def _on_newer_click(self, _: widgets.Button) -> None:
        self._offset = max(0, self._offset - self.page_size)
        self._on_change()

    @locked
    def _on_older_click(self, _: widgets.Button) -> None:
        self._offset += self.page_size
        self._on_change()
