"""`runtool logs`: print a run's logs, or follow them until the run finishes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .models import FINISHED

if TYPE_CHECKING:
    from .api import RunQueue


def print_logs(q: RunQueue, run_id: int, echo: Callable[[str], None]) -> None:
    for path in q.log_paths(run_id):
        text = path.read_text(errors="replace") if path.is_file() else ""
        echo(f"==> {path.name} <==")
        echo(text.rstrip("\n") if text else "(empty)")


def follow_logs(q: RunQueue, run_id: int, echo: Callable[[str], None], interval: float = 0.5) -> None:
    """Print new log lines as they come, each prefixed by its stream, until the run finishes."""
    offsets = {path: 0 for path in q.log_paths(run_id)}
    while True:
        finished = q.get(run_id).status in FINISHED
        for path in offsets:
            if not path.is_file():
                continue
            with open(path, "rb") as handle:
                handle.seek(offsets[path])
                data = handle.read()
            offsets[path] += len(data)
            for line in data.decode(errors="replace").splitlines():
                echo(f"{path.stem}: {line}")
        if finished:
            return
        time.sleep(interval)
