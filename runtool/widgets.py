"""The dashboard: counts, filters, a paginated table of runs, a run's detail and a Submit form.

`Dashboard(home=None)` is an ipywidgets VBox: `display(Dashboard())` in JupyterLab, or
`runtool dashboard` serves notebooks/dashboard.ipynb with Voila. It reconciles stale runs
on open and on each refresh, and refreshes itself (dashrefresh.py: a thread in a notebook,
so it keeps going while other cells run; an asyncio task under Voila). The Runs tab is
widgets_table.py, a run's detail widgets_detail.py, the Compare tab widgets_compare.py and
the Submit form submitform.py; dashview.py writes their strings. The width follows the page's:
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
from .errors import RuntoolError
from .models import Run, Status
from .submitform import SubmitForm
from .widgets_compare import CompareTab
from .widgets_detail import RunDetail
from .widgets_table import PAGE_SIZE, RunsTable

STATUSES = tuple(s.value for s in Status)
REFRESH_S = 3.0
"""Seconds between two refreshes of an open dashboard."""
#: Set by `runtool dashboard` for the Voila kernel: where Voila serves the home's files.
FILES_URL_VAR = "RUNTOOL_DASHBOARD_FILES"
FILES_ROOT_VAR = "RUNTOOL_DASHBOARD_ROOT"


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
        self._known: tuple[int, int] | None = None  # (runs stored, newest id) when options were made
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
        self._footer = widgets.HTML()
        self._detail = RunDetail(q, on_change=self._on_detail_change, files_url=_files_url(q.home),
                                 lock=self._lock)
        self._form = SubmitForm(q, on_submit=self._on_form_submit, lock=self._lock)
        self._compare_tab = CompareTab(q, on_open=self._on_compare_open, lock=self._lock)

        for control, name in ((self._status, "status"), (self._kind, "kind"), (self._queue_filter, "queue"),
                              (self._text, "text")):
            control.add_class(f"rt-filter-{name}")
            control.observe(self._on_filter_value, "value")
        self._refresh.on_click(self._on_refresh_click)
        self._pause.on_click(self._on_pause_click)
        self._resume.on_click(self._on_resume_click)

        self.observe(self._on_view_count, "_view_count")

        filters = widgets.HBox([self._status, self._kind, self._queue_filter, self._text, self._refresh],
                               layout=widgets.Layout(flex_flow="row wrap"))
        self._table = RunsTable(q, filters, self._detail, on_open=self.select, on_change=self.refresh,
                                lock=self._lock, page_size=page_size)
        self._tabs = widgets.Tab(children=[self._table, self._form, self._compare_tab])
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
        return self._table.rows

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
    def table(self) -> RunsTable:
        return self._table

    @property
    def metric_columns(self) -> list[str]:
        """The metric columns shown (filtered to one kind whose finished runs recorded metrics)."""
        return self._table.metric_columns

    @property
    def sort(self) -> tuple[str, bool] | None:
        """(metric, descending) the table is sorted by; None: newest first."""
        return self._table.sort

    @locked
    def sort_by(self, metric: str | None) -> None:
        """Sort the table by a metric column, as a click on its header does: highest first,
        a second click on the same column lowest first (None: newest first again)."""
        self._table.sort_by(metric)
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
        return self._table.page_text

    @property
    def refreshing(self) -> bool:
        """True while it refreshes itself (False once closed, replaced or without views)."""
        return self._refresher is not None and self._refresher.alive

    @locked
    def select(self, run_id: int | None) -> None:
        """Open the detail of a run (None closes it)."""
        self._table.selected = run_id
        self._detail.show(run_id)
        self._table.mark_selected()

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
        self._table.go_to(page)
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
            self._table.read(self._filters(), counts, self._known)
            changed = self._detail.refresh(now, paused)
        except RuntoolError as exc:
            self._set(self._message, view.message_html(f"cannot read the queue: {exc}", "error"))
            return
        if repaired:
            changed |= self._set(self._message, view.message_html("reconciled: " + "; ".join(repaired)))
        changed |= self._set(self._counts, view.counts_html(counts, paused) + view.fleet_html(fleet, now))
        changed |= self._table.show(now, paused)
        self._compare_tab.sync(self._kind.value or None, visible=self._tabs.selected_index == 2)
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
        self._table.go_to(0)
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
        if self._detail.run_id != self._table.selected:
            self._table.selected = self._detail.run_id
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
