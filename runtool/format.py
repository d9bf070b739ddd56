"""Plain-text views of runs for the command line (no kernel or widgets needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .durations import iso
from .models import Run, WorkerInfo


def short_params(parameters: dict[str, Any], limit: int = 40) -> str:
    text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in parameters.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f}s"
    if value < 3600:
        return f"{int(value // 60)}m{int(value % 60):02d}s"
    return f"{int(value // 3600)}h{int(value % 3600 // 60):02d}m"


def when(ts: float | None) -> str:
    text = iso(ts)
    return text[:19].replace("T", " ") if text else ""


def label(run: Run, now: float, paused: dict[str, str]) -> str:
    text = run.label(now)
    if run.status.value == "waiting" and (run.queue in paused or "*" in paused):
        text += " (paused)"
    return text


def parents(ids: list[int]) -> str:
    """`run 3`, or `runs 3, 4, 5` for a continuation of several."""
    return f"run {ids[0]}" if len(ids) == 1 else "runs " + ", ".join(map(str, ids))


def progress(run: Run) -> str:
    if run.status.value == "processing" and run.progress_total:
        return f"{run.progress_done or 0}/{run.progress_total}"
    return ""


def number(value: float | None) -> str:
    """A metric as people read it: 0.9933, 450, 1.5e-05; empty when missing."""
    return "" if value is None else f"{value:.6g}"


def metric_names(runs: list[Run]) -> list[str]:
    """Every metric name of `runs`, in the order they first appear."""
    return list(dict.fromkeys(name for r in runs for name in r.metrics))


def table(runs: list[Run], now: float, paused: dict[str, str], metrics: bool = False,
          sorted_by: str | None = None) -> str:
    """One line per run; with `metrics`, one column per metric name the runs recorded; the
    metric `sorted_by` (the order of the lines) comes first, with or without `metrics`."""
    names = metric_names(runs) if metrics else []
    if sorted_by is not None:
        names = [sorted_by] + [n for n in names if n != sorted_by]
    header = ("ID", "STATUS", "KIND", "QUEUE", "CREATED", "DURATION", "CELLS", "BY", "MACHINE",
              *(n.upper() for n in names), "PARAMETERS")
    rows = [header] + [
        (str(r.id), label(r, now, paused), r.kind, r.queue, when(r.created_at), seconds(r.duration),
         progress(r), r.submitted_by, r.machine or "", *(number(r.metrics.get(n)) for n in names),
         short_params(r.parameters))
        for r in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    return "\n".join(line.rstrip() for line in lines) if runs else "no runs"


def details(run: Run, now: float, paused: dict[str, str]) -> str:
    lines = [
        f"run {run.id}: {label(run, now, paused)}",
        f"  notebook    {run.notebook}",
        f"  kind        {run.kind}    queue {run.queue}    priority {run.priority}",
        f"  parameters  {json.dumps(run.parameters, ensure_ascii=False)}",
    ]
    if run.tags:
        lines.append(f"  tags        {json.dumps(run.tags, ensure_ascii=False)}")
    lines.append(f"  attempt     {run.attempt} of {run.max_attempts}"
                 + (f"    timeout {seconds(run.timeout_s)}" if run.timeout_s else ""))
    if run.after:
        lines.append(f"  after       {parents(run.after)} (on {run.after_on})")
    lines.append(f"  submitted   {when(run.created_at)} by {run.submitted_by}")
    if run.not_before:
        lines.append(f"  not before  {when(run.not_before)}")
    if run.started_at:
        lines.append(f"  started     {when(run.started_at)} by {run.worker}")
    if run.finished_at:
        lines.append(f"  finished    {when(run.finished_at)} ({seconds(run.duration)})")
    if progress(run):
        lines.append(f"  progress    cells {progress(run)}")
    if run.metrics:
        lines.append("  metrics     " + "  ".join(f"{k}={number(v)}" for k, v in run.metrics.items()))
    if run.error:
        cell = f" (cell {run.error['cell']})" if run.error.get("cell") else ""
        lines.append(f"  error       {run.error['type']}: {run.error['message']}{cell}")
    lines.append("history:")
    for h in run.history:
        reason = f"  {h['reason']}" if h["reason"] else ""
        lines.append(f"  {h['at'][:19].replace('T', ' ')}  {h['status']:<10} by {h['by']}{reason}")
    lines.append(f"files in {run.run_dir}:")
    folder = Path(run.run_dir)
    files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    lines.extend(f"  {name}" for name in files) if files else lines.append("  (none yet)")
    return "\n".join(lines)


def workers(fleet: list[tuple[WorkerInfo, bool]], now: float) -> str:
    """`runtool workers`: each worker or drain, what it runs, its last heartbeat; gone ones marked."""
    header = ("MACHINE", "PID", "KIND", "QUEUES", "RUN", "HEARTBEAT", "STATE")
    rows = [header] + [
        (w.machine, str(w.pid), w.kind, ",".join(w.queues) or "all", str(w.run_id) if w.run_id else "",
         f"{seconds(max(0.0, now - w.heartbeat_at))} ago", "gone" if gone else "alive")
        for w, gone in fleet
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) if fleet else "no workers"
