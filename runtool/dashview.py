"""What the dashboard shows, as plain data and HTML text (testable without a kernel or browser).

The widgets in `widgets.py` only place these strings and views; every rule about what a
row says or which action a run offers lives here, next to `format.py` whose helpers it reuses.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from . import format as fmt
from .models import FINISHED, LABELS, Run, Status, WorkerInfo

#: Counts shown at the top (in LABELS order); awaiting and retrying only when there are any.
ALWAYS_COUNTED = ("waiting", "scheduled", "processing", "succeeded", "failed", "cancelled")
IMAGE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".svg": "svg+xml"}
MAX_IMAGES = 6
MAX_IMAGE_BYTES = 8_000_000
TAIL_LINES = 40
TAIL_BYTES = 64_000
MAX_METRIC_COLUMNS = 5
"""Metric columns of the runs table at most (each 84 px: the table must fit 800 px)."""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class RowView(NamedTuple):
    """One table row, as shown; rows are redrawn only when this changes."""

    id: int
    kind: str
    parameters: str
    parameters_full: str
    label: str  # e.g. "waiting", "scheduled", "waiting (paused)"
    style: str  # the plain label, naming the badge's colour
    progress: tuple[int, int] | None
    submitted_by: str
    machine: str
    created: str
    duration: str
    error_line: str
    metrics: tuple[tuple[str, str], ...] = ()
    """(shown, full) value of each metric column, when the table is filtered to one kind."""


def row_view(run: Run, now: float, paused: Mapping[str, str], metric_columns: Sequence[str] = ()) -> RowView:
    """The row of `run` at time `now`: label, cells done/total while processing, error line,
    and its value of each of `metric_columns`."""
    progress = None
    if run.status is Status.PROCESSING and run.progress_total:
        progress = (run.progress_done or 0, run.progress_total)
    if run.status is Status.PROCESSING and run.started_at is not None:
        duration = fmt.seconds(max(0.0, now - run.started_at))
    else:
        duration = fmt.seconds(run.duration)
    style = run.label(now)
    return RowView(
        id=run.id, kind=run.kind, parameters=fmt.short_params(run.parameters, 48),
        parameters_full=json.dumps(run.parameters, ensure_ascii=False)[:2000],
        label=fmt.label(run, now, dict(paused)), style=style, progress=progress,
        submitted_by=run.submitted_by, machine=run.machine or "", created=fmt.when(run.created_at),
        duration=duration,
        error_line=error_line(run) if style in ("failed", "retrying") else "",
        metrics=tuple(_metric_cell(run.metrics.get(name)) for name in metric_columns),
    )


def _metric_cell(value: Any) -> tuple[str, str]:
    if value is None:
        return "", ""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value), str(value)
    return fmt.number(value), repr(value)


def metric_columns(runs: Sequence[Run], most: int = MAX_METRIC_COLUMNS) -> list[str]:
    """The metric columns of a table filtered to one kind: the names its `runs` (a sample of
    its newest finished runs) recorded, in the order they first appear, at most `most`."""
    return fmt.metric_names(list(runs))[:most]


def sort_label(name: str, sort: tuple[str, bool] | None) -> str:
    """A metric column's header: its name, after an arrow when the table is sorted by it (first:
    a long name is cut short at its end)."""
    if sort is None or sort[0] != name:
        return name
    return f"{'▼' if sort[1] else '▲'} {name}"


def error_line(run: Run) -> str:
    """`Type: first line of the message`, or "" when the run has no error."""
    if not run.error:
        return ""
    message = str(run.error.get("message") or "").strip().splitlines()
    first = f"{run.error.get('type') or 'Error'}: {message[0] if message else ''}".rstrip(": ")
    return first[:300]


def actions_for(run: Run, can: Callable[[str, str | None], bool]) -> tuple[str, ...]:
    """The actions offered for `run`, given its status and `can(permission, kind)`."""
    offered = []
    if run.status is Status.WAITING and can("cancel", None):
        offered.append("cancel")
    if (run.status is Status.WAITING or run.status in FINISHED) and can("delete", run.kind):
        offered.append("delete")
    if run.status in (Status.FAILED, Status.CANCELLED) and can("retry", None):
        offered.append("retry")
    if run.status is Status.PROCESSING and can("force-cancel", None):
        offered.append("force-cancel")
    return tuple(offered)


# -- HTML of the runs page --------------------------------------------------------------

def counts_html(counts: Mapping[str, int], paused: Mapping[str, str]) -> str:
    """Badges with the number of runs per label, then which queues are paused."""
    parts = [
        f'<span class="rt-count rt-st-{name}" data-status="{name}">{name} <b>{counts.get(name, 0):,}</b></span>'
        for name in LABELS
        if name in ALWAYS_COUNTED or counts.get(name, 0)
    ]
    if paused:
        parts.append(f'<span class="rt-paused">&#9208; {escape(paused_text(paused))}</span>')
    return '<div class="rt-counts">' + "".join(parts) + "</div>"


def fleet_html(fleet: Sequence[tuple[WorkerInfo, bool]], now: float) -> str:
    """One badge per worker or drain: machine, pid, what it runs, last heartbeat; gone ones marked."""
    if not fleet:
        return ""
    parts = []
    for w, gone in fleet:
        doing = f"run {w.run_id}" if w.run_id else "idle"
        beat = fmt.seconds(max(0.0, now - w.heartbeat_at))
        parts.append(f'<span class="rt-worker{" rt-gone" if gone else ""}" title="{escape(w.name)}">'
                     f'{escape(w.machine)}:{w.pid} {w.kind} · {doing} · {beat} ago{" · gone" if gone else ""}</span>')
    return '<div class="rt-fleet">' + "".join(parts) + "</div>"


def paused_text(paused: Mapping[str, str]) -> str:
    if "*" in paused:
        return f"every queue paused by {paused['*']}"
    names = ", ".join(f"{queue} (by {by})" for queue, by in sorted(paused.items()))
    return f"paused: {names}"


def header_html() -> str:
    cells = [("kind", "kind"), ("params", "parameters"), ("status", "status"), ("prog", "progress"),
             ("by", "submitted by"), ("machine", "machine"), ("created", "created (UTC)"), ("dur", "duration")]
    return '<div class="rt-cells rt-head">' + "".join(
        f'<span class="rt-c rt-{cls}" title="{title}">{title}</span>' for cls, title in cells) + "</div>"


def row_html(view: RowView) -> str:
    progress = progress_title = ""
    if view.progress is not None:
        done, total = view.progress
        progress = (f'<progress value="{done}" max="{total}"></progress>'
                    f'<span class="rt-cellcount">{done}/{total}</span>')
        progress_title = f' title="cells {done} of {total} done"'
    line = (
        f'<div class="rt-cells" data-run="{view.id}">'
        f'<span class="rt-c rt-kind" title="{escape(view.kind)}">{escape(view.kind)}</span>'
        f'<span class="rt-c rt-params" title="{escape(view.parameters_full)}">{escape(view.parameters)}</span>'
        f'<span class="rt-c rt-status" title="{escape(view.label)}">'
        f'<span class="rt-badge rt-st-{view.style}">{escape(view.label)}</span></span>'
        f'<span class="rt-c rt-prog"{progress_title}>{progress}</span>'
        f'<span class="rt-c rt-by" title="{escape(view.submitted_by)}">{escape(view.submitted_by)}</span>'
        f'<span class="rt-c rt-machine" title="{escape(view.machine)}">{escape(view.machine)}</span>'
        f'<span class="rt-c rt-created" title="created {view.created} UTC">{view.created}</span>'
        f'<span class="rt-c rt-dur" title="duration {view.duration}">{view.duration}</span>'
        + metric_cells_html(view.metrics) + "</div>"
    )
    if view.error_line:
        line += f'<div class="rt-errline" title="{escape(view.error_line)}">{escape(view.error_line)}</div>'
    return line


def metric_cells_html(values: Sequence[tuple[str, str]]) -> str:
    """A row's metric cells, one group of fixed widths that the header's sort buttons match."""
    if not values:
        return ""
    return '<span class="rt-mcells">' + "".join(
        f'<span class="rt-c rt-metric" title="{escape(full)}">{escape(shown)}</span>' for shown, full in values
    ) + "</span>"


def pager_text(offset: int, shown: int, total: int, more: bool = False) -> str:
    """`1–20 of 345`; with `more`, the count stopped at `total` and there are more."""
    if total == 0:
        return "no runs match"
    return f"{offset + 1:,}–{offset + shown:,} of {total:,}{'+' if more else ''}"


# -- HTML of the detail pane -------------------------------------------------------------

def title_html(run: Run, now: float, paused: Mapping[str, str]) -> str:
    label = fmt.label(run, now, dict(paused))
    return (f'<div class="rt-title">Run {run.id} · {escape(run.kind)} '
            f'<span class="rt-badge rt-st-{run.label(now)}">{escape(label)}</span></div>')


def info_html(run: Run) -> str:
    rows = [
        ("notebook", escape(run.notebook)),
        ("queue", f"{escape(run.queue)} · priority {run.priority}"),
        ("attempt", f"{run.attempt} of {run.max_attempts}"
         + (f" · timeout {fmt.seconds(run.timeout_s)}" if run.timeout_s else "")),
        ("submitted", f"{fmt.when(run.created_at)} by {escape(run.submitted_by)}"),
    ]
    if run.after:
        rows.append(("after", f"{fmt.parents(run.after)} (on {run.after_on})"))
    if run.not_before:
        rows.append(("not before", fmt.when(run.not_before)))
    if run.started_at:
        rows.append(("started", f"{fmt.when(run.started_at)} by {escape(run.worker or '')}"))
    if run.finished_at:
        rows.append(("finished", f"{fmt.when(run.finished_at)} ({fmt.seconds(run.duration)})"))
    if run.status is Status.PROCESSING and run.progress_total:
        rows.append(("progress", f"cells {fmt.progress(run)}"))
    rows.append(("parameters", _json_block(run.parameters)))
    rows.append(("tags", _json_block(run.tags) if run.tags else "none"))
    return '<table class="rt-info">' + "".join(
        f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows) + "</table>"


def _json_block(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > 100:
        text = json.dumps(value, indent=2, ensure_ascii=False)
    return f'<pre class="rt-json">{escape(text)}</pre>'


def history_html(history: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td>{escape(str(h["at"])[:19].replace("T", " "))}</td>'
        f'<td><span class="rt-badge rt-st-{escape(h["status"])}">{escape(h["status"])}</span></td>'
        f'<td>{escape(h["by"])}</td><td>{escape(h["reason"] or "")}</td></tr>'
        for h in history
    )
    return ('<table class="rt-history"><tr><th>at (UTC)</th><th>status</th><th>by</th>'
            f"<th>reason</th></tr>{rows}</table>")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def error_html(error: Mapping[str, Any] | None) -> str:
    if not error:
        return ""
    cell = f" in cell {error['cell']}" if error.get("cell") else ""
    head = f"{error.get('type') or 'Error'}{cell}: {error.get('message') or ''}"
    trace = strip_ansi(str(error.get("traceback") or "")).strip()
    return (f'<div class="rt-error"><b>{escape(head)}</b>'
            + (f"<pre>{escape(trace)}</pre>" if trace else "") + "</div>")


def tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> str:
    """The last `lines` lines of a text file ("" if it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    text = strip_ansi(data.decode("utf-8", errors="replace"))
    return "\n".join(text.splitlines()[-lines:])


def logs_html(paths: list[Path]) -> str:
    parts = []
    for path in paths:
        text = tail(path)
        parts.append(f'<div class="rt-logname">{escape(path.name)}</div>'
                     f'<pre class="rt-log">{escape(text) if text else "(empty)"}</pre>')
    return "".join(parts)


def image_files(run_dir: str | Path) -> list[Path]:
    """Images the run wrote into its folder (the detection preview, plots), oldest name first."""
    folder = Path(run_dir)
    try:
        found = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.is_symlink())
    except OSError:
        return []
    return [p for p in found if p.stat().st_size <= MAX_IMAGE_BYTES][:MAX_IMAGES]


def files_html(run: Run, files_url: str | None, max_inline_bytes: int = 5_000_000) -> str:
    """Links to download the output notebook (and other files) of the run's folder.

    Served by `runtool dashboard`, files are links into Voila's file handler; inside
    JupyterLab there is no such URL, so the output notebook is embedded as a data link.
    """
    folder = Path(run.run_dir)
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    except OSError:
        files = []
    if not files:
        return '<div class="rt-files">no files yet</div>'
    links = []
    for path in files:
        name = escape(path.name)
        download = f"run-{run.id}-{name}"
        if files_url:
            href = escape(f"{files_url}runs/{run.id}/{quote(path.name)}")
            links.append(f'<a href="{href}" download="{download}" target="_blank">{name}</a>')
        elif (path.name == "output.ipynb" and run.status in FINISHED
              and path.stat().st_size <= max_inline_bytes):
            data = base64.b64encode(path.read_bytes()).decode()
            links.append(f'<a href="data:application/x-ipynb+json;base64,{data}" download="{download}">'
                         f"{name}</a>")
        else:
            links.append(f'<span title="{escape(str(path))}">{name}</span>')
    return f'<div class="rt-files">files in {escape(str(folder))}: ' + " · ".join(links) + "</div>"


def message_html(text: str, kind: str = "info") -> str:
    """A one-line note in the page: kind is info, ok or error (a refused action)."""
    return f'<div class="rt-msg rt-msg-{kind}">{escape(text)}</div>' if text else ""


STYLE = """<style>
/* Fits any width from 800 px up (JupyterLab with its sidebars open, Voila on a laptop):
   nothing scrolls sideways. Columns have fixed bases and shrink (min-width 0, ellipsis, full
   text on hover); the table's own width decides, through container queries, which columns
   give way first: submitted by, then created, then progress. A run's detail sits beside
   the table when the dashboard is wide, else right under the run's row. */
.rt-dash { font-size: 13px; container: rtdash / inline-size; min-width: 0; max-width: 100%; }
.rt-dash .widget-box { overflow: visible; min-width: 0; max-width: 100%; }
.rt-dash .widget-html, .rt-dash .widget-html-content { min-width: 0; max-width: 100%; }
.rt-dash .widget-html-content { line-height: 1.4; }
.rt-titlebar { font-size: 18px; font-weight: 600; white-space: normal; overflow-wrap: anywhere; }
.rt-sub { color: #666; font-size: 12px; font-weight: normal; margin-left: 10px; }
.rt-counts { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; padding: 4px 0; }
.rt-count { padding: 3px 10px; border-radius: 12px; color: #fff; }
.rt-fleet { display: flex; flex-wrap: wrap; gap: 6px; margin: 4px 0; font-size: 12px; }
.rt-worker { padding: 2px 8px; border-radius: 10px; background: #e8f0fe; } .rt-gone { background: #fde8e8; }
.rt-paused { padding: 3px 10px; border-radius: 12px; background: #fff3cd; color: #7a5a00;
  border: 1px solid #e0c36b; font-weight: 600; }
.rt-runs { position: relative; container: rttable / inline-size; }
.rt-cellbox { flex: 1 1 0; }
.rt-cells { display: flex; align-items: center; white-space: nowrap; min-height: 26px; min-width: 0; }
.rt-head { font-weight: 600; color: #555; border-bottom: 2px solid #ccc; }
.rt-c { display: block; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; padding: 0 5px;
  box-sizing: border-box; min-width: 0; }
.rt-kind { flex: 1 0 84px; } .rt-params { flex: 3 1 120px; } .rt-by { flex: 1 1 80px; }
.rt-machine { flex: 1 1 80px; }
.rt-status { flex: 0 0 136px; } .rt-prog { flex: 0 0 128px; } .rt-created { flex: 0 0 150px; }
.rt-dur { flex: 0 0 74px; text-align: right; }
.rt-prog progress { width: 50px; height: 12px; vertical-align: middle; }
.rt-cellcount { margin-left: 5px; color: #333; }
.rt-headrow { padding-left: 62px; align-items: flex-end; }
.rt-headrow > .widget-html { flex: 1 1 0; }
/* Metric columns (a table filtered to one kind): fixed widths, the same in the header (sort
   buttons) and the rows, so they line up however the other columns shrink. */
.rt-mcells, .rt-dash .rt-mhead { display: flex; flex: 0 0 auto; }
/* A row's cells sit in a box with 2 px margins; the header's two parts together match it. */
.rt-dash .rt-cellbox { margin: 0 2px; }
.rt-dash .rt-headrow > .widget-html { margin: 0 0 0 2px; }
.rt-dash .rt-mhead { border-bottom: 2px solid #ccc; margin: 0 2px 0 0; }
.rt-c.rt-metric { flex: 0 0 84px; width: 84px; text-align: right; }
.rt-dash .rt-mhead .rt-msort { flex: 0 0 84px; width: 84px; min-width: 0; height: 24px; margin: 0 0 2px 0;
  padding: 0 4px; font-size: 12px; font-weight: 600; text-align: right; background: #f0f0f0; }
.rt-dash .rt-mhead .rt-msort.rt-sorted { background: #dbe6f6; }
.rt-with-metrics .rt-c.rt-kind, .rt-with-metrics .rt-c.rt-machine { display: none; }
@container rttable (max-width: 1280px) { .rt-with-metrics .rt-c.rt-by { display: none; } }
@container rttable (max-width: 1100px) { .rt-with-metrics .rt-c.rt-created { display: none; } }
@container rttable (max-width: 900px) { .rt-with-metrics .rt-c.rt-prog { display: none; } }
.rt-row, .rt-line { position: static; }
.rt-row { border-bottom: 1px solid #e6e6e6; }
.rt-line { align-items: flex-start; }
.rt-row.rt-selected > .rt-line { background: #e8f0fe; }
.rt-dash .rt-open { width: 56px; min-width: 56px; height: 24px; margin: 2px 6px 2px 0; padding: 0 4px; flex: none; }
.rt-errline { color: #b00020; font-size: 12px; padding: 0 6px 3px 6px; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
@container rttable (max-width: 1020px) { .rt-c.rt-machine { display: none; } }
@container rttable (max-width: 920px) { .rt-c.rt-by { display: none; } }
@container rttable (max-width: 720px) { .rt-c.rt-created { display: none; } }
@container rttable (max-width: 580px) { .rt-c.rt-prog { display: none; } }
.rt-badge { padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 600; font-size: 12px;
  white-space: nowrap; }
.rt-st-waiting { background: #546e7a; } .rt-st-scheduled { background: #7b1fa2; }
.rt-st-awaiting { background: #00838f; } .rt-st-retrying { background: #ef6c00; }
.rt-st-processing { background: #1565c0; } .rt-st-succeeded { background: #2e7d32; }
.rt-st-failed { background: #c62828; } .rt-st-cancelled { background: #757575; }
.rt-detail { border: 1px solid #9db4d8; border-radius: 4px; padding: 8px 12px; margin: 4px 0 10px 0;
  background: #fff; box-shadow: 0 1px 4px rgba(0,0,0,0.12); box-sizing: border-box; }
.rt-detail .widget-html-content { white-space: normal; }
.rt-detail > * { flex-shrink: 0; }  /* beside the table it scrolls: its parts keep their height */
@container rtdash (min-width: 1150px) {
  /* as tall as the window (at least 760 px): the detail scrolls on its own beside the table */
  .rt-runs.rt-has-detail { padding-right: calc(42% + 12px); min-height: max(760px, calc(100vh - 140px)); }
  .rt-runs.rt-has-detail .rt-detail { position: absolute; top: 0; right: 0; width: 42%; margin: 0;
    max-height: 100%; overflow-y: auto; overflow-x: hidden; }
}
.rt-title { font-size: 16px; font-weight: 600; }
.rt-section { font-weight: 600; margin-top: 8px; color: #333; }
.rt-info { width: 100%; table-layout: fixed; border-collapse: collapse; }
.rt-info th { width: 90px; text-align: left; padding-right: 12px; color: #555; vertical-align: top; font-weight: 600; }
.rt-info td { vertical-align: top; overflow-wrap: anywhere; }
.rt-dash pre { font-family: var(--jp-code-font-family, monospace); }
.rt-json { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; }
.rt-history { border-collapse: collapse; width: 100%; }
.rt-history th, .rt-history td { text-align: left; padding: 2px 10px 2px 0; vertical-align: top; }
.rt-history td:last-child { overflow-wrap: anywhere; }
.rt-error { color: #b00020; white-space: pre-wrap; overflow-wrap: anywhere; }
.rt-error pre, .rt-log { background: #f7f7f7; color: #222; padding: 6px; max-height: 320px;
  overflow-y: auto; overflow-x: hidden; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px;
  margin: 2px 0 6px 0; }
.rt-logname { color: #555; font-size: 12px; }
.rt-msg { padding: 4px 8px; border-radius: 4px; margin: 4px 0; white-space: normal; overflow-wrap: anywhere; }
.rt-msg-info { background: #eef3fb; color: #123; }
.rt-msg-ok { background: #e7f5e9; color: #1b5e20; }
.rt-msg-error { background: #fdecea; color: #8a1c1c; font-weight: 600; }
.rt-warning { background: #fff3cd; color: #6b4e00; padding: 6px 8px; border-radius: 4px; white-space: normal; }
.rt-files { white-space: normal; overflow-wrap: anywhere; }
.rt-files a { margin: 0 4px; color: #1565c0; text-decoration: underline; }
.rt-footer { color: #888; font-size: 11px; white-space: normal; }
.rt-form .widget-hbox { flex-wrap: wrap; }
.rt-param-help { color: #777; font-size: 12px; margin-left: 8px; white-space: normal; }
.rt-form-note { color: #555; white-space: normal; }
.rt-viewer { max-width: 100%; box-sizing: border-box; }
</style>"""
