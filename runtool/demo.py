"""`runtool demo`: the main job end to end, on the real notebooks of the repository."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput
from .models import FINISHED, Run

if TYPE_CHECKING:
    from .api import RunQueue

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_demo(q: RunQueue, echo: Callable[[str], None], serve: bool = True, port: int = 8866,
             notebooks: Path = NOTEBOOKS, wait_s: float = 600.0) -> int:
    """Submit a training run and a detection run continuing it, execute both, summarize, serve."""
    training_nb, detection_nb = notebooks / "training.ipynb", notebooks / "detection.ipynb"
    if not training_nb.is_file() or not detection_nb.is_file():
        raise InvalidInput(f"demo notebooks not found in {notebooks} (run from a checkout of runtool)")
    training = q.submit(training_nb, {"seed": 0}, tags={"demo": "training"})
    detection = q.submit(detection_nb, {"n_scenes": 8}, after=training.id, tags={"demo": "detection"})
    echo(f"submitted training run {training.id} and detection run {detection.id} (after {training.id})")
    runs = _execute([training.id, detection.id], q, echo, wait_s)
    for run in runs:
        echo(summary(run))
    if serve:
        from .serve import serve_dashboard

        return serve_dashboard(q.home, port=port, open_browser=False)
    echo(f"outputs are in {q.runs_dir}; `runtool dashboard` shows them")
    return 0 if all(r.status.value == "succeeded" for r in runs) else 1


def _execute(ids: list[int], q: RunQueue, echo: Callable[[str], None], wait_s: float) -> list[Run]:
    from .worker import Worker

    deadline = time.monotonic() + wait_s
    while True:
        code, message = Worker(q).drain()
        runs = [q.get(i) for i in ids]
        if all(r.status in FINISHED for r in runs) or time.monotonic() > deadline:
            return runs
        if message.startswith("another process"):
            echo(f"{message}: waiting")
        time.sleep(1.0)


def summary(run: Run) -> str:
    folder = Path(run.run_dir)
    lines = [f"run {run.id} ({run.kind}): {run.status.value}"
             + (f" in {run.duration:.1f} s" if run.duration is not None else "")]
    metrics = _read_json(folder / "metrics.json")
    if run.kind == "training" and metrics:
        lines.append(f"  held-out accuracy {metrics['accuracy']:.4f}")
    elif metrics:
        lines.append(f"  precision {metrics['precision']:.3f}  recall {metrics['recall']:.3f}"
                     f"  mAP@0.5 {metrics['mAP']:.3f}")
    if run.error:
        lines.append(f"  error {run.error['type']}: {run.error['message']}")
    lines.append(f"  output notebook {run.output_path}")
    artifacts = sorted(p.name for p in folder.iterdir() if p.suffix in (".png", ".json", ".joblib")) \
        if folder.is_dir() else []
    if artifacts:
        lines.append(f"  artifacts in {folder}: {', '.join(artifacts)}")
    return "\n".join(lines)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
