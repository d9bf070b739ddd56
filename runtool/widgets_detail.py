"""The detail pane of one run: its record, history, error, logs, files, images and actions.

Each action button calls one library function (which re-checks status and permission);
Delete and Force cancel take a second, confirming click. A refused action shows the
library's one-line message in the pane.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from . import dashview as view
from .api import RunQueue
from .dashrefresh import locked
from .errors import RunNotFound, RuntoolError
from .models import FINISHED, Run

FORCE_WARNING = (
    "Force cancel ends every process of this run: the runner, its kernel and every process the "
    "kernel started. Work in progress is lost and the run becomes cancelled."
)
DELETE_WARNING = "Delete removes the run, its history and its run folder (output notebook, logs, artifacts)."


class RunDetail(widgets.VBox):
    """Everything about one run; `show(run_id)` picks it, `refresh()` redraws what changed."""

    def __init__(self, queue: RunQueue, on_change: Callable[[], None],
                 files_url: str | None = None, lock: threading.RLock | None = None, **kwargs: Any) -> None:
        self._lock = lock or threading.RLock()  # the dashboard's: its refresh thread shares the store
        self._q = queue
        self._on_change = on_change
        self._files_url = files_url
        self._run: Run | None = None
        self._run_id: int | None = None
        self._pending: str | None = None  # "delete" or "force-cancel" awaiting its confirm click
        # force cancels waiting for another machine: run id -> (what the pane says, whether it ended)
        self._cancelling: dict[int, tuple[str, bool]] = {}
        self._signatures: dict[str, Any] = {}
        self._changes = 0  # parts redrawn by the current refresh

        self._title = widgets.HTML()
        self._close = widgets.Button(description="Close", icon="times", tooltip="Close the detail",
                                     layout=widgets.Layout(width="90px"))
        self._cancel = widgets.Button(description="Cancel", icon="ban", button_style="warning")
        self._delete = widgets.Button(description="Delete", icon="trash")
        self._retry = widgets.Button(description="Retry", icon="redo", button_style="info")
        self._force = widgets.Button(description="Force cancel", icon="skull", button_style="danger")
        self._buttons = {"cancel": self._cancel, "delete": self._delete, "retry": self._retry,
                         "force-cancel": self._force}
        self._warning = widgets.HTML()
        self._confirm = widgets.Button(button_style="danger")
        self._back = widgets.Button(description="Keep the run")
        self._confirm_box = widgets.VBox([self._warning, widgets.HBox([self._confirm, self._back])])
        self._message = widgets.HTML()
        self._info = widgets.HTML()
        self._error = widgets.HTML()
        self._history = widgets.HTML()
        self._logs = widgets.HTML()
        self._files = widgets.HTML()
        self._open_output = widgets.Button(description="Open output notebook", icon="book-open",
                                           layout=widgets.Layout(width="200px"))
        self._viewer = widgets.HTML()
        self._images = [widgets.Image(layout=widgets.Layout(max_width="min(560px, 100%)", height="auto"))
                        for _ in range(view.MAX_IMAGES)]
        self._captions = [widgets.HTML() for _ in range(view.MAX_IMAGES)]
        self._gallery = widgets.HBox(
            [widgets.VBox([caption, image]) for caption, image in zip(self._captions, self._images)],
            layout=widgets.Layout(flex_flow="row wrap"))
        self._actions = widgets.HBox([*self._buttons.values()])

        for name, button in self._buttons.items():
            button.add_class("rt-action")
            button.add_class(f"rt-action-{name}")
        self._confirm.add_class("rt-confirm")
        self._close.on_click(self._on_close_click)
        self._cancel.on_click(self._on_cancel_click)
        self._delete.on_click(self._on_delete_click)
        self._retry.on_click(self._on_retry_click)
        self._force.on_click(self._on_force_click)
        self._confirm.on_click(self._on_confirm_click)
        self._back.on_click(self._on_back_click)
        self._open_output.on_click(self._on_open_output_click)

        super().__init__([
            widgets.HBox([self._title, self._close],
                         layout=widgets.Layout(justify_content="space-between")),
            self._actions, self._confirm_box, self._message,
            _section("Run"), self._info, self._error,
            _section("History"), self._history,
            _section("Logs (last lines)"), self._logs,
            _section("Output"), self._files, self._open_output, self._viewer, self._gallery,
        ], **kwargs)
        self.add_class("rt-detail")
        self._set_pending(None)
        self.show(None)

    # -- what tests and the dashboard ask ----------------------------------------------

    @property
    def run_id(self) -> int | None:
        return self._run_id

    @property
    def actions(self) -> tuple[str, ...]:
        """The action buttons currently shown, e.g. ("cancel", "delete")."""
        return tuple(name for name, b in self._buttons.items() if b.layout.display != "none")

    @property
    def confirming(self) -> str | None:
        """The action waiting for its confirm click, if any."""
        return self._pending

    @property
    def message(self) -> str:
        return self._message.value

    @locked
    def press(self, name: str) -> None:
        """Click a button by name (an action, "confirm" or "back"), as a person would."""
        {**self._buttons, "confirm": self._confirm, "back": self._back}[name].click()

    # -- showing -----------------------------------------------------------------------

    def show(self, run_id: int | None) -> None:
        if run_id != self._run_id:
            self._pending = None
            self._signatures = {}
            self._message.value = ""
            self._viewer.value = ""
        self._run_id = run_id
        self.refresh()

    def refresh(self, now: float | None = None, paused: Mapping[str, str] | None = None) -> bool:
        """Re-read the run; send only the parts whose content changed. True if any did."""
        self._changes = 0
        self._redraw(time.time() if now is None else now, paused)
        return self._changes > 0

    def _redraw(self, now: float, paused: Mapping[str, str] | None) -> None:
        if self._run_id is None:
            self._run = None
            self.layout.display = "none"
            return
        paused = self._q.paused() if paused is None else paused
        try:
            run = self._q.get(self._run_id, history=True)
        except RunNotFound:
            self._run = None
            self._set("title", f'<div class="rt-title">Run {self._run_id}</div>')
            self._show_actions(())
            for part in (self._info, self._error, self._history, self._logs, self._files):
                part.value = ""
            self._open_output.layout.display = "none"
            self._show_images([])
            self._message.value = self._message.value or view.message_html(
                f"run {self._run_id}: not found (deleted)", "info")
            return
        self._run = run
        self.layout.display = ""
        offered = view.actions_for(run, self._q.can)
        if run.id in self._cancelling:  # asked already: no second request; the note, then the outcome
            note, ended = self._cancelling[run.id]
            if ended:
                del self._cancelling[run.id]
            else:
                offered = tuple(a for a in offered if a != "force-cancel")
            self._set("message", note)
        self._show_actions(offered)
        if self._pending and self._pending not in offered:
            self._set_pending(None)
        self._set("title", view.title_html(run, now, paused))  # after the buttons: pages see both
        self._set("info", view.info_html(run))
        self._set("error", view.error_html(run.error))
        self._set("history", view.history_html(run.history))
        self._refresh_folder(run)

    def _refresh_folder(self, run: Run) -> None:
        """Logs, file links and images: each re-read only when one of its files changed."""
        folder = Path(run.run_dir)
        try:
            stats = {p.name: (st.st_size, st.st_mtime_ns) for p in folder.iterdir() for st in [p.stat()]}
        except OSError:
            stats = {}
        log_paths: Sequence[Path] = self._q.log_paths(run.id)
        logs = tuple(stats.get(p.name) for p in log_paths)
        if self._changed("logs", logs):
            self._logs.value = view.logs_html(self._q.log_paths(run.id))
        # a finished run's output may be embedded as a data link: follow its content then
        files = tuple(sorted(stats.items())) if run.status in FINISHED else tuple(sorted(stats))
        if self._changed("files", files):
            self._files.value = view.files_html(run, self._files_url)
            self._open_output.layout.display = "" if "output.ipynb" in stats else "none"
        images = view.image_files(folder)
        if self._changed("images", tuple((p.name, stats.get(p.name)) for p in images)):
            self._show_images(images)

    def _changed(self, part: str, signature: Any) -> bool:
        if self._signatures.get(part) == signature:
            return False
        self._signatures[part] = signature
        self._changes += 1
        return True

    def _show_images(self, paths: list[Path]) -> None:
        for index, (image, caption) in enumerate(zip(self._images, self._captions)):
            box = self._gallery.children[index]
            try:
                data = paths[index].read_bytes() if index < len(paths) else None
            except OSError:
                data = None
            if data is None:
                box.layout.display = "none"
                continue
            image.format = view.IMAGE_SUFFIXES[paths[index].suffix.lower()]
            image.value = data
            caption.value = f'<span class="rt-logname">{escape(paths[index].name)}</span>'
            box.layout.display = ""
        self._gallery.layout.display = "" if paths else "none"

    def _set(self, part: str, html: str) -> None:
        widget = getattr(self, f"_{part}")
        if widget.value != html:
            widget.value = html
            self._changes += 1

    def _show_actions(self, offered: tuple[str, ...]) -> None:
        for name, button in self._buttons.items():
            display = "" if name in offered else "none"
            if button.layout.display != display:
                button.layout.display = display
                self._changes += 1

    def _set_pending(self, action: str | None) -> None:
        self._pending = action
        if action == "delete":
            self._warning.value = f'<div class="rt-warning">{escape(DELETE_WARNING)}</div>'
            self._confirm.description, self._confirm.icon = "Confirm delete", "trash"
        elif action == "force-cancel":
            self._warning.value = f'<div class="rt-warning">{escape(FORCE_WARNING)}</div>'
            self._confirm.description, self._confirm.icon = "End every process", "skull"
        self._confirm_box.layout.display = "" if action else "none"
        self._actions.layout.display = "none" if action else ""

    def _act(self, action: Callable[[int], Run], done: str) -> None:
        """Call one library function; show its refusal, or what it did, then redraw."""
        assert self._run_id is not None
        run_id = self._run_id
        self._set_pending(None)
        try:
            action(run_id)
        except RuntoolError as exc:
            self._message.value = view.message_html(str(exc), "error")
        else:
            self._message.value = view.message_html(f"run {run_id}: {done}", "ok")
        self._on_change()

    # -- handlers ----------------------------------------------------------------------

    @locked
    def _on_close_click(self, _: widgets.Button) -> None:
        self.show(None)
        self._on_change()

    @locked
    def _on_cancel_click(self, _: widgets.Button) -> None:
        self._act(self._q.cancel, "cancelled")

    @locked
    def _on_retry_click(self, _: widgets.Button) -> None:
        self._act(self._q.retry, "queued again")

    @locked
    def _on_delete_click(self, _: widgets.Button) -> None:
        self._message.value = ""
        self._set_pending("delete")

    @locked
    def _on_force_click(self, _: widgets.Button) -> None:
        self._message.value = ""
        self._set_pending("force-cancel")

    @locked
    def _on_back_click(self, _: widgets.Button) -> None:
        self._set_pending(None)

    @locked
    def _on_confirm_click(self, _: widgets.Button) -> None:
        if self._pending == "delete":
            self._act(self._q.delete, "deleted")
        elif self._pending == "force-cancel":
            run = self._run
            if run is not None and self._q.executes_elsewhere(run):
                self._force_cancel_elsewhere(run)
            else:
                self._act(lambda run_id: self._q.cancel(run_id, force=True), "force-cancelled")

    def _force_cancel_elsewhere(self, run: Run) -> None:
        """The run's own machine ends it, which takes up to `stale_after`: the page does not
        wait. A thread with a connection of its own asks and waits (`RunQueue.cancel`, as
        `runtool cancel --force` does); the next refresh shows how it ended."""
        self._set_pending(None)
        self._cancelling[run.id] = (view.message_html(
            f"run {run.id}: cancel requested, waiting for machine {run.machine} to end it "
            f"(up to {self._q.settings.stale_after:g} s)", "info"), False)
        home, user = self._q.home, self._q.user

        def ask() -> None:
            try:
                with RunQueue(home, user=user) as q:
                    q.cancel(run.id, force=True)
                outcome = view.message_html(f"run {run.id}: force-cancelled", "ok")
            except RuntoolError as exc:
                outcome = view.message_html(str(exc), "error")
            with self._lock:  # widgets change only in a refresh (the page's own thread or task)
                self._cancelling[run.id] = (outcome, True)

        threading.Thread(target=ask, name=f"force-cancel-{run.id}", daemon=True).start()
        self._on_change()

    @locked
    def _on_open_output_click(self, _: widgets.Button) -> None:
        if self._viewer.value:
            self._viewer.value = ""
            self._open_output.description = "Open output notebook"
            return
        if self._run is None:
            return
        self._viewer.value = notebook_iframe(Path(self._run.output_path))
        self._open_output.description = "Close output notebook"


#: The rendered notebook may load nothing from anywhere (lab machines often have no internet):
#: its images are embedded, its styles inline, and scripts could not run in the sandbox anyway.
OFFLINE_POLICY = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                  "img-src data:; style-src 'unsafe-inline'; font-src data:\">")
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.S | re.I)


def notebook_html(path: Path) -> str:
    """The notebook as one self-contained HTML page: nbconvert's lab template with images
    embedded and without its scripts (require.js, MathJax and mermaid from a CDN)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_filename(str(path))
    body = _SCRIPT.sub("", body)
    head = re.search(r"<head[^>]*>", body, re.I)
    at = head.end() if head else 0
    return body[:at] + OFFLINE_POLICY + body[at:]


def notebook_iframe(path: Path) -> str:
    """The notebook rendered to HTML by nbconvert, isolated in an iframe (its CSS stays inside)."""
    try:
        body = notebook_html(path)
    except Exception as exc:  # noqa: BLE001 - nbconvert raises many kinds; the page shows which
        return view.message_html(f"cannot render {path.name}: {type(exc).__name__}: {exc}", "error")
    return (f'<iframe class="rt-viewer" sandbox="" srcdoc="{escape(body, quote=True)}" '
            'style="width: 100%; height: 600px; border: 1px solid #ccc;"></iframe>')


def _section(title: str) -> widgets.HTML:
    return widgets.HTML(f'<div class="rt-section">{escape(title)}</div>')
