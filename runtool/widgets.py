"""The dashboard: counts, filters, a paginated table of runs, a run's detail and a Submit form.

`Dashboard(home=None)` is an ipywidgets VBox: `display(Dashboard())` in JupyterLab, or
`runtool dashboard` serves notebooks/dashboard.ipynb with Voila. It reconciles stale runs
on open and on each refresh, and refreshes itself (dashrefresh.py: a thread in a notebook,
so it keeps going while other cells run; an asyncio task under Voila). The table is a
fixed pool of row widgets, each redrawn only when what it shows changed, so a refresh
costs a few indexed queries however many runs are stored. Its width follows the page's:
columns shrink, truncate and give way (CSS in dashview.py), and a run's detail opens
beside the table when there is room, else right under the run's row.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from . import dashview as view
from .api import RunQueue
from .dashrefresh import Refresher, forget, in_kernel, locked, replace_older, under_voila
from .errors import RunNotFound, RuntoolError
from .models import Run, Status
from .submitform import SubmitForm
from .widgets_compare import CompareTab
from .widgets_detail import RunDetail

STATUSES = tuple(s.value for s in Status)
PAGE_SIZE = 20
"""Rows per page of the table."""
COUNT_AHEAD = 10_000
"""Matches counted past the page shown ("1–20 of 10,000+" beyond)."""
METRIC_SAMPLE = 100
"""Newest finished runs of a kind whose metric names become the table's metric columns."""
REFRESH_S = 3.0
"""Seconds between two refreshes of an open dashboard."""
#: Set by `runtool dashboard` for the Voila kernel: where Voila serves the home's files.
FILES_URL_VAR = "RUNTOOL_DASHBOARD_FILES"
FILES_ROOT_VAR = "RUNTOOL_DASHBOARD_ROOT"


class _RunRow(widgets.VBox):
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


class Dashboard(widgets.VBox):
    """Runs of one home, as its user (whose role decides which actions are offered)."""

    def __init__(self, home: str | Path | None = None, user: str | None = None,
                 refresh_interval: float | None = REFRESH_S, page_size: int = PAGE_SIZE,
                 refresh_mode: str | None = None, **kwargs: Any) -> None:
        # first: close() may run on a failed open
        self._refresher: Refresher | None = None
        self._lock = threading.RLock()  # one refresh or one click at a time (dashrefresh.py)
        self._stopped_why = ""
        self.queue = RunQueue(home, user)
        q = self.queue
        self._interval = refresh_interval
        self._mode = refresh_mode
        self._page_size = page_size
        self._offset = 0
        self._selected: int | None = None
        self._known: tuple[int, int] | None = None  # (runs stored, newest id) when options were made
        self._metric_columns: list[str] = []
        self._metrics_seen: tuple[Any, ...] | None = None  # what the metric columns were read for
        self._sort: tuple[str, bool] | None = None  # (metric, descending) the table is sorted by
        self._sorted: tuple[Any, list[Run]] | None = None  # a sorted page, and what it was read for
        self._quiet = False  # True while code (not a person) changes the filters
        self.last_refresh_ms = 0.0

        self._style = widgets.HTML(view.STYLE)
        self._title = widgets.HTML(
            f'<div class="rt-titlebar">runtool <span class="rt-sub">{escape(str(q.home))} · '
            f"user {escape(q.user)} ({escape(q.role)})</span></div>")
        self._counts = widgets.HTML()
        self._message = widgets.HTML()
        self._status = widgets.Dropdown(options=[("any status", "")] + [(s, s) for s in STATUSES],
                                        layout=widgets.Layout(width="140px"))
        self._kind = widgets.Dropdown(options=[("any kind", "")], layout=widgets.Layout(width="160px"))
        self._queue_filter = widgets.Dropdown(options=[("any queue", "")], layout=widgets.Layout(width="160px"))
        self._text = widgets.Text(placeholder="search words in notebook, parameters, tags; word* for a prefix (Enter)",
                                  continuous_update=False, layout=widgets.Layout(flex="1 1 220px", width="auto"))
        self._refresh = widgets.Button(description="Refresh", icon="sync",
                                       layout=widgets.Layout(width="100px"))
        self._pause_target = widgets.Dropdown(options=[("every queue", "")],
                                              layout=widgets.Layout(width="150px"))
        self._pause = widgets.Button(description="Pause", icon="pause", layout=widgets.Layout(width="90px"))
        self._resume = widgets.Button(description="Resume", icon="play", layout=widgets.Layout(width="90px"))
        self._admin = widgets.HBox([widgets.HTML("<b>Queues</b>&nbsp;"), self._pause_target,
                                    self._pause, self._resume], layout=widgets.Layout(align_items="center"))
        self._sort_buttons: dict[widgets.Button, str] = {}
        self._metric_head = widgets.HBox()
        self._metric_head.add_class("rt-mhead")
        self._head = widgets.HBox([widgets.HTML(view.header_html()), self._metric_head])
        self._head.add_class("rt-headrow")
        self._rows = [_RunRow() for _ in range(page_size)]
        self._row_of = {row.open_button: row for row in self._rows}
        self._newer = widgets.Button(description="Newer", icon="chevron-left",
                                     layout=widgets.Layout(width="100px"))
        self._older = widgets.Button(description="Older", icon="chevron-right",
                                     layout=widgets.Layout(width="100px"))
        self._page = widgets.HTML()
        self._footer = widgets.HTML()
        self._detail = RunDetail(q, on_change=self._on_detail_change, files_url=_files_url(q.home),
                                 lock=self._lock)
        self._detail_slot = widgets.VBox()  # holds the detail when its run is not on this page
        self._form = SubmitForm(q, on_submit=self._on_form_submit, lock=self._lock)
        self._compare_tab = CompareTab(q, on_open=self._on_compare_open, lock=self._lock)

        for control, name in ((self._status, "status"), (self._kind, "kind"), (self._queue_filter, "queue"),
                              (self._text, "text")):
            control.add_class(f"rt-filter-{name}")
            control.observe(self._on_filter_value, "value")
        for row in self._rows:
            row.open_button.on_click(self._on_row_click)
        self._newer.on_click(self._on_newer_click)
        self._older.on_click(self._on_older_click)
        self._refresh.on_click(self._on_refresh_click)
        self._pause.on_click(self._on_pause_click)
        self._resume.on_click(self._on_resume_click)

        self.observe(self._on_view_count, "_view_count")

        filters = widgets.HBox([self._status, self._kind, self._queue_filter, self._text, self._refresh],
                               layout=widgets.Layout(flex_flow="row wrap"))
        pager = widgets.HBox([self._newer, self._page, self._older],
                             layout=widgets.Layout(align_items="center"))
        self._runs = widgets.VBox([filters, self._head, *self._rows, pager, self._detail_slot])
        self._runs.add_class("rt-runs")
        runs = self._runs
        self._tabs = widgets.Tab(children=[runs, self._form, self._compare_tab])
        self._tabs.set_title(0, "Runs")
        self._tabs.set_title(1, "Submit")
        self._tabs.set_title(2, "Compare")
        self._tabs.observe(self._on_tabs_selected_index, "selected_index")
        super().__init__([self._style, self._title, self._counts, self._admin, self._message,
                          self._tabs, self._footer], **kwargs)
        self.add_class("rt-dash")
        self._admin.layout.display = "" if q.can("pause") else "none"
        self._view_count = 0  # the front end now reports how many views show the dashboard
        self._start()
        self.refresh()

    # -- what tests, benchmarks and notebooks call --------------------------------------

    @property
    def rows(self) -> list[view.RowView]:
        """The rows shown now, top to bottom."""
        return [row.view for row in self._rows if row.view is not None]

    @property
    def detail(self) -> RunDetail:
        return self._detail

    @property
    def form(self) -> SubmitForm:
        return self._form

    @property
    def compare(self) -> CompareTab:
        return self._compare_tab

    @property
    def metric_columns(self) -> list[str]:
        """The metric columns shown (filtered to one kind whose finished runs recorded metrics)."""
        return list(self._metric_columns)

    @property
    def sort(self) -> tuple[str, bool] | None:
        """(metric, descending) the table is sorted by; None: newest first."""
        return self._sort

    @locked
    def sort_by(self, metric: str | None) -> None:
        """Sort the table by a metric column, as a click on its header does: highest first,
        a second click on the same column lowest first (None: newest first again)."""
        if metric is None:
            self._sort = None
        elif self._sort is not None and self._sort[0] == metric:
            self._sort = (metric, not self._sort[1])
        else:
            self._sort = (metric, True)
        self._offset = 0
        self.refresh()

    def show_tab(self, name: str) -> None:
        """Show the Runs, Submit or Compare tab."""
        self._tabs.selected_index = ("Runs", "Submit", "Compare").index(name)

    @property
    def counts_text(self) -> str:
        return self._counts.value

    @property
    def message(self) -> str:
        return self._message.value

    @property
    def admin_controls(self) -> bool:
        """True if Pause/Resume are offered."""
        return self._admin.layout.display != "none"

    @property
    def page_text(self) -> str:
        return self._page.value

    @property
    def refreshing(self) -> bool:
        """True while it refreshes itself (False once closed, replaced or without views)."""
        return self._refresher is not None and self._refresher.alive

    @locked
    def select(self, run_id: int | None) -> None:
        """Open the detail of a run (None closes it)."""
        self._selected = run_id
        self._detail.show(run_id)
        self._mark_selected()

    @locked
    def set_filters(self, status: str | None = None, kind: str | None = None, queue: str | None = None,
                    text: str | None = None, page: int = 0) -> None:
        """Filter the table as the controls would (None: any) and show page `page` (from 0)."""
        self._quiet = True
        try:
            for control, value in ((self._status, status), (self._kind, kind), (self._queue_filter, queue)):
                if value and value not in [v for _, v in control.options]:
                    control.options = [*control.options, (value, value)]
                control.value = value or ""
            self._text.value = text or ""
        finally:
            self._quiet = False
        self._offset = max(0, page) * self._page_size
        self.refresh()

    @locked
    def refresh(self) -> None:
        """Reconcile, re-read counts and the page, and send only what changed to the browser."""
        started = time.perf_counter()
        q, now = self.queue, time.time()
        try:
            repaired = q.reconcile()
            counts, paused = q.counts(), q.paused()
            fleet = q.workers()
            self._update_options(sum(counts.values()))
            self._update_metric_columns(counts)
            filters = self._filters()
            # Counting a million matches would cost more than the page: count a little past it.
            cap = self._offset + COUNT_AHEAD
            total = q.count(**filters, cap=cap)
            more, total = total > cap, min(total, cap)
            if self._offset >= total > 0:
                self._offset = (total - 1) // self._page_size * self._page_size
            runs = self._read_page(filters, counts)
            changed = self._detail.refresh(now, paused)
        except RuntoolError as exc:
            self._set(self._message, view.message_html(f"cannot read the queue: {exc}", "error"))
            return
        if repaired:
            changed |= self._set(self._message, view.message_html("reconciled: " + "; ".join(repaired)))
        changed |= self._set(self._counts, view.counts_html(counts, paused) + view.fleet_html(fleet, now))
        for index, row in enumerate(self._rows):
            changed |= row.show(view.row_view(runs[index], now, paused, self._metric_columns)
                                if index < len(runs) else None)
        self._mark_selected()
        self._compare_tab.sync(self._kind.value or None, visible=self._tabs.selected_index == 2)
        changed |= self._set(self._page, view.pager_text(self._offset, len(runs), total, more))
        self._newer.disabled = self._offset == 0
        self._older.disabled = self._offset + len(runs) >= total and not more
        self.last_refresh_ms = (time.perf_counter() - started) * 1000
        if changed or not self._footer.value:
            # Only on changes: a page that sends nothing lets Voila cull a forgotten kernel.
            self._footer.value = self._footer_html()

    def tick(self) -> None:
        """One refresh of the refresher's; an error is shown in the page, and refreshing goes on."""
        try:
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - keep refreshing; show what went wrong in the page
            with self._lock:
                self._set(self._message, view.message_html(f"refresh failed: {type(exc).__name__}: {exc}",
                                                           "error"))

    def stop_refresh(self, why: str = "") -> None:
        """Stop refreshing itself (the Refresh button still works); `why` goes into the footer."""
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.stop()
        if why:
            self._stopped_why = why
            if "_footer" in self.__dict__ and (refresher is not None or not self._footer.value):
                with self._lock:
                    self._footer.value = self._footer_html()

    def close(self) -> None:
        """Stop refreshing, close every widget and the store connection."""
        self.stop_refresh()
        if "queue" in self.__dict__:  # absent when opening the store failed
            forget(str(self.queue.home), self)
        with self._lock:
            for widget in reversed(list(_descendants(self))[1:]):
                widget.close()
            super().close()
            if "queue" in self.__dict__:
                self.queue.close()

    # -- inner workings ----------------------------------------------------------------

    def _filters(self) -> dict[str, Any]:
        return {"status": self._status.value or None, "kind": self._kind.value or None,
                "queue": self._queue_filter.value or None, "text": self._text.value.strip() or None}

    def _update_options(self, stored: int) -> None:
        """Kinds, queues and notebook suggestions, re-read only when runs came or went."""
        newest = self.queue.list(limit=1)
        known = (stored, newest[0].id if newest else 0)
        if known == self._known:
            return
        self._known = known
        kinds, queues = self.queue.kinds_and_queues()
        self._quiet = True
        try:
            _set_options(self._kind, "any kind", kinds)
            _set_options(self._queue_filter, "any queue", queues)
            _set_options(self._pause_target, "every queue", sorted({*queues, "default"}))
        finally:
            self._quiet = False
        self._form.suggest()

    def _read_page(self, filters: dict[str, Any], counts: dict[str, int]) -> list[Run]:
        """The runs of the page shown. Sorted by a metric, the store walks its run_metrics
        index (~2 ms a page at a million runs; a status rare among the runs having the metric
        costs more), so a sorted page is read again only when the filters, the page or the runs
        changed: a change of status moves the counts per label, a new run the newest id, and
        metrics come only with a finishing change. Its processing runs are re-read for their
        progress."""
        q = self.queue
        if self._sort is None:
            self._sorted = None
            return q.list(**filters, limit=self._page_size, offset=self._offset)
        read_for = (sorted(filters.items()), self._sort, self._offset, sorted(counts.items()), self._known)
        if self._sorted is not None and self._sorted[0] == read_for:
            try:
                return [q.get(r.id) if r.status is Status.PROCESSING else r for r in self._sorted[1]]
            except RunNotFound:
                pass
        metric, descending = self._sort
        runs = q.list(**filters, limit=self._page_size, offset=self._offset, sort_metric=metric,
                      descending=descending)
        self._sorted = (read_for, runs)
        return runs

    def _update_metric_columns(self, counts: dict[str, int]) -> None:
        """Filtered to one kind: its metric names as columns, re-read only when the kind or the
        number of finished runs changed (a newest-first sample of METRIC_SAMPLE runs: an
        indexed read, whatever the number of runs stored). A sort by a metric the kind does not
        show ends."""
        kind = self._kind.value or None
        seen = (kind, counts.get("succeeded"), counts.get("failed"), self._known)
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
            self._runs.add_class("rt-with-metrics")
        else:
            self._runs.remove_class("rt-with-metrics")

    def _mark_selected(self) -> None:
        """Highlight the selected run's row and open the detail under it (beside the table
        when it is wide enough: CSS moves it there), or after the pager when it is not on this page."""
        holder = None
        for row in self._rows:
            if row.view is not None and row.view.id == self._selected:
                row.add_class("rt-selected")
                holder = row
            else:
                row.remove_class("rt-selected")
        for row in self._rows:
            if row is not holder:
                row.hold(None)
        if self._selected is None:
            self._detail_slot.children = ()
            self._runs.remove_class("rt-has-detail")
            return
        self._runs.add_class("rt-has-detail")
        if holder is None:
            self._detail_slot.children = (self._detail,)
        else:
            self._detail_slot.children = ()
            holder.hold(self._detail)

    def _footer_html(self) -> str:
        if self.refreshing:
            every = f", checked every {self._interval:g} s"
        elif self._stopped_why:
            every = f"; refresh stopped: {self._stopped_why} (Refresh still works)"
        else:
            every = ""
        return (f'<div class="rt-footer">last change seen {time.strftime("%H:%M:%S")} '
                f"(that refresh took {self.last_refresh_ms:.0f} ms){every}</div>")

    @staticmethod
    def _set(widget: widgets.HTML, html: str) -> bool:
        if widget.value == html:
            return False
        widget.value = html
        return True

    def _start(self) -> None:
        """Refresh every `refresh_interval` seconds (None: never by itself), stopping older
        dashboards of this home in this kernel: a thread in a notebook kernel, an asyncio task
        under Voila or on a running loop outside a kernel; by hand in a script."""
        if not self._interval:
            return
        mode = self._mode or self._default_mode()
        if mode is None:
            return
        for older in replace_older(str(self.queue.home), self):
            older.stop_refresh("a newer dashboard of this home opened in this kernel")
        self._stopped_why = ""
        self._refresher = Refresher(self, self._interval, mode, name=f"runtool-dashboard-{id(self):x}")
        if self.comm is not None:
            self.comm.on_close(self._on_comm_close)

    @staticmethod
    def _default_mode() -> str | None:
        if in_kernel() and not under_voila():
            return "thread"
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None  # a script or a test: refresh() is called by hand
        return "asyncio"

    def _queue_action(self, action: str) -> None:
        target = self._pause_target.value or None
        try:
            getattr(self.queue, action)(target)
        except RuntoolError as exc:
            self._message.value = view.message_html(str(exc), "error")
        else:
            what = f"queue {target}" if target else "every queue"
            self._message.value = view.message_html(f"{action}d {what}", "ok")
        self.refresh()

    # -- handlers ----------------------------------------------------------------------

    def _on_view_count(self, change: dict[str, Any]) -> None:
        # JupyterLab removed the last view (cleared or re-run output): nobody sees it any more.
        if change["new"] == 0 and (change["old"] or 0) > 0 and self.refreshing:
            self.stop_refresh("no view shows this dashboard any more")
        elif (change["new"] or 0) > 0 and self._refresher is None and self._stopped_why.startswith("no view"):
            self._start()

    def _on_comm_close(self, _: Any) -> None:
        self.stop_refresh()

    @locked
    def _on_filter_value(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self._offset = 0
        self.refresh()

    @locked
    def _on_row_click(self, button: widgets.Button) -> None:
        row = self._row_of[button]
        if row.view is not None:
            self.select(row.view.id)

    @locked
    def _on_sort_click(self, button: widgets.Button) -> None:
        self.sort_by(self._sort_buttons[button])

    @locked
    def _on_newer_click(self, _: widgets.Button) -> None:
        self._offset = max(0, self._offset - self._page_size)
        self.refresh()

    @locked
    def _on_older_click(self, _: widgets.Button) -> None:
        self._offset += self._page_size
        self.refresh()

    @locked
    def _on_refresh_click(self, _: widgets.Button) -> None:
        self._message.value = ""
        self.refresh()

    @locked
    def _on_pause_click(self, _: widgets.Button) -> None:
        self._queue_action("pause")

    @locked
    def _on_resume_click(self, _: widgets.Button) -> None:
        self._queue_action("resume")

    @locked
    def _on_detail_change(self) -> None:
        if self._detail.run_id != self._selected:
            self._selected = self._detail.run_id
        self._known = None  # a run may have gone: re-read kinds and queues
        self.refresh()

    @locked
    def _on_tabs_selected_index(self, change: dict[str, Any]) -> None:
        if change["new"] == 2:
            self._compare_tab.sync(self._kind.value or None, visible=True)

    @locked
    def _on_compare_open(self, run_id: int) -> None:
        self.select(run_id)
        self._tabs.selected_index = 0

    @locked
    def _on_form_submit(self, run: Run) -> None:
        self._known = None
        self.refresh()


def open_dashboard(home: str | Path | None = None, user: str | None = None, **kwargs: Any) -> widgets.Widget:
    """The Dashboard, or one line saying why it cannot open (a locked store, a bad runtool.toml)."""
    try:
        return Dashboard(home, user, **kwargs)
    except RuntoolError as exc:
        return widgets.HTML(f'<pre style="color:#b00020">runtool: {escape(str(exc))}</pre>')


def _descendants(widget: widgets.Widget) -> Iterator[widgets.Widget]:
    """A widget, its layout and style, and the same for every child, recursively."""
    yield widget
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, widgets.Widget):
            yield part
    for child in getattr(widget, "children", ()):
        yield from _descendants(child)


def _set_options(dropdown: widgets.Dropdown, any_label: str, values: list[str]) -> None:
    """New options, keeping the chosen value (even if no run has it any more)."""
    chosen = dropdown.value
    names = list(values) + ([chosen] if chosen and chosen not in values else [])
    options = [(any_label, ""), *((v, v) for v in names)]
    if list(dropdown.options) != options:
        dropdown.options = options
        dropdown.value = chosen


def _files_url(home: Path) -> str | None:
    """Voila's URL for the home's files, if `runtool dashboard` serves this very home."""
    root = os.environ.get(FILES_ROOT_VAR)
    if root and Path(root).resolve() == home.resolve():
        return os.environ.get(FILES_URL_VAR) or None
    return None
