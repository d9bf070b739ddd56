"""The dashboard: counts, filters, a paginated table of runs, a run's detail and a Submit form.

`Dashboard(home=None)` is an ipywidgets VBox: `display(Dashboard())` in JupyterLab, or
`runtool dashboard` serves notebooks/dashboard.ipynb with Voila. It reconciles stale runs
on open and on each refresh, and refreshes itself from an asyncio task on the kernel's
loop (a thread's widget updates do not reach the page reliably under Voila). The table is
a fixed pool of row widgets, each redrawn only when what it shows changed, so a refresh
costs a few indexed queries however many runs are stored.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from . import dashview as view
from .api import RunQueue
from .errors import RuntoolError
from .models import Run, Status
from .submitform import SubmitForm
from .widgets_detail import RunDetail

STATUSES = tuple(s.value for s in Status)
PAGE_SIZE = 20
"""Rows per page of the table."""
COUNT_AHEAD = 10_000
"""Matches counted past the page shown ("1–20 of 10,000+" beyond)."""
REFRESH_S = 3.0
"""Seconds between two refreshes of an open dashboard."""
#: Set by `runtool dashboard` for the Voila kernel: where Voila serves the home's files.
FILES_URL_VAR = "RUNTOOL_DASHBOARD_FILES"
FILES_ROOT_VAR = "RUNTOOL_DASHBOARD_ROOT"


class _RunRow(widgets.HBox):
    """One table row: a button opening the run, then its cells as one HTML widget."""

    def __init__(self) -> None:
        self.open_button = widgets.Button(layout=widgets.Layout(width="64px"))
        self.open_button.add_class("rt-open")
        self.cells = widgets.HTML()
        self.view: view.RowView | None = None
        super().__init__([self.open_button, self.cells], layout=widgets.Layout(display="none"))
        self.add_class("rt-row")

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
                 **kwargs: Any) -> None:
        self._task: asyncio.Task[None] | None = None  # first: close() may run on a failed open
        self.queue = RunQueue(home, user)
        q = self.queue
        self._interval = refresh_interval
        self._page_size = page_size
        self._offset = 0
        self._selected: int | None = None
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
                                  continuous_update=False, layout=widgets.Layout(width="340px"))
        self._refresh = widgets.Button(description="Refresh", icon="sync",
                                       layout=widgets.Layout(width="100px"))
        self._pause_target = widgets.Dropdown(options=[("every queue", "")],
                                              layout=widgets.Layout(width="150px"))
        self._pause = widgets.Button(description="Pause", icon="pause", layout=widgets.Layout(width="90px"))
        self._resume = widgets.Button(description="Resume", icon="play", layout=widgets.Layout(width="90px"))
        self._admin = widgets.HBox([widgets.HTML("<b>Queues</b>&nbsp;"), self._pause_target,
                                    self._pause, self._resume], layout=widgets.Layout(align_items="center"))
        self._head = widgets.HTML(view.header_html())
        self._head.add_class("rt-headrow")
        self._rows = [_RunRow() for _ in range(page_size)]
        self._row_of = {row.open_button: row for row in self._rows}
        self._newer = widgets.Button(description="Newer", icon="chevron-left",
                                     layout=widgets.Layout(width="100px"))
        self._older = widgets.Button(description="Older", icon="chevron-right",
                                     layout=widgets.Layout(width="100px"))
        self._page = widgets.HTML()
        self._footer = widgets.HTML()
        self._detail = RunDetail(q, on_change=self._on_detail_change, files_url=_files_url(q.home))
        self._form = SubmitForm(q, on_submit=self._on_form_submit)

        for control in (self._status, self._kind, self._queue_filter, self._text):
            control.observe(self._on_filter_value, "value")
        for row in self._rows:
            row.open_button.on_click(self._on_row_click)
        self._newer.on_click(self._on_newer_click)
        self._older.on_click(self._on_older_click)
        self._refresh.on_click(self._on_refresh_click)
        self._pause.on_click(self._on_pause_click)
        self._resume.on_click(self._on_resume_click)

        filters = widgets.HBox([self._status, self._kind, self._queue_filter, self._text, self._refresh])
        pager = widgets.HBox([self._newer, self._page, self._older],
                             layout=widgets.Layout(align_items="center"))
        runs = widgets.VBox([filters, self._head, *self._rows, pager, self._detail])
        self._tabs = widgets.Tab(children=[runs, self._form])
        self._tabs.set_title(0, "Runs")
        self._tabs.set_title(1, "Submit")
        super().__init__([self._style, self._title, self._counts, self._admin, self._message,
                          self._tabs, self._footer], **kwargs)
        self.add_class("rt-dash")
        self._admin.layout.display = "" if q.can("pause") else "none"
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

    def select(self, run_id: int | None) -> None:
        """Open the detail of a run (None closes it)."""
        self._selected = run_id
        self._detail.show(run_id)
        self._mark_selected()

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

    def refresh(self) -> None:
        """Reconcile, re-read counts and the page, and send only what changed to the browser."""
        started = time.perf_counter()
        q, now = self.queue, time.time()
        try:
            repaired = q.reconcile()
            counts, paused = q.counts(), q.paused()
            self._update_options(sum(counts.values()))
            filters = self._filters()
            # Counting a million matches would cost more than the page: count a little past it.
            cap = self._offset + COUNT_AHEAD
            total = q.count(**filters, cap=cap)
            more, total = total > cap, min(total, cap)
            if self._offset >= total > 0:
                self._offset = (total - 1) // self._page_size * self._page_size
            runs = q.list(**filters, limit=self._page_size, offset=self._offset)
            changed = self._detail.refresh(now, paused)
        except RuntoolError as exc:
            self._set(self._message, view.message_html(f"cannot read the queue: {exc}", "error"))
            return
        if repaired:
            changed |= self._set(self._message, view.message_html("reconciled: " + "; ".join(repaired)))
        changed |= self._set(self._counts, view.counts_html(counts, paused))
        for index, row in enumerate(self._rows):
            changed |= row.show(view.row_view(runs[index], now, paused) if index < len(runs) else None)
        self._mark_selected()
        changed |= self._set(self._page, view.pager_text(self._offset, len(runs), total, more))
        self._newer.disabled = self._offset == 0
        self._older.disabled = self._offset + len(runs) >= total and not more
        self.last_refresh_ms = (time.perf_counter() - started) * 1000
        if changed or not self._footer.value:
            # Only on changes: a page that sends nothing lets Voila cull a forgotten kernel.
            every = f", checked every {self._interval:g} s" if self._task is not None else ""
            self._footer.value = (f'<div class="rt-footer">last change seen {time.strftime("%H:%M:%S")} '
                                  f"(that refresh took {self.last_refresh_ms:.0f} ms){every}</div>")

    def close(self) -> None:
        """Stop refreshing, close every widget and the store connection."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for widget in reversed(list(_descendants(self))[1:]):
            widget.close()
        super().close()
        if "queue" in self.__dict__:  # absent when opening the store failed
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

    def _mark_selected(self) -> None:
        for row in self._rows:
            if row.view is not None and row.view.id == self._selected:
                row.add_class("rt-selected")
            else:
                row.remove_class("rt-selected")

    @staticmethod
    def _set(widget: widgets.HTML, html: str) -> bool:
        if widget.value == html:
            return False
        widget.value = html
        return True

    def _start(self) -> None:
        """Refresh every `refresh_interval` seconds on the running loop (none: no autorefresh)."""
        if not self._interval:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not in a kernel (a script or a test): refresh() is called by hand
        self._task = loop.create_task(self._autorefresh(self._interval))

    async def _autorefresh(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep refreshing; show what went wrong in the page
                self._set(self._message, view.message_html(f"refresh failed: {type(exc).__name__}: {exc}",
                                                           "error"))

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

    def _on_filter_value(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self._offset = 0
        self.refresh()

    def _on_row_click(self, button: widgets.Button) -> None:
        row = self._row_of[button]
        if row.view is not None:
            self.select(row.view.id)

    def _on_newer_click(self, _: widgets.Button) -> None:
        self._offset = max(0, self._offset - self._page_size)
        self.refresh()

    def _on_older_click(self, _: widgets.Button) -> None:
        self._offset += self._page_size
        self.refresh()

    def _on_refresh_click(self, _: widgets.Button) -> None:
        self._message.value = ""
        self.refresh()

    def _on_pause_click(self, _: widgets.Button) -> None:
        self._queue_action("pause")

    def _on_resume_click(self, _: widgets.Button) -> None:
        self._queue_action("resume")

    def _on_detail_change(self) -> None:
        if self._detail.run_id != self._selected:
            self._selected = self._detail.run_id
        self._known = None  # a run may have gone: re-read kinds and queues
        self.refresh()

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
