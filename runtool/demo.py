"""`runtool demo`: the main job end to end, on the real notebooks of the repository.

Before submitting, it checks that the packages the notebooks import are importable by their
kernel (one line naming the missing ones and the install command, instead of runs that
retry a ModuleNotFoundError). Then a worker process executes the runs while the demo shows
each run's progress (cells done/total) and each failed attempt's error as it happens.
"""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput, Refused
from .models import FINISHED, Run, Status

if TYPE_CHECKING:
    from .api import RunQueue

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
#: Import names whose pip package is named otherwise.
PACKAGE_OF = {"sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow", "cv2": "opencv-python"}
INSTALL = "pip install 'runtool[notebooks]'"
#: Seconds between two looks at the runs while they execute.
WATCH_S = 0.25


def run_demo(q: RunQueue, echo: Callable[[str], None], serve: bool = True, port: int = 8866,
             notebooks: Path = NOTEBOOKS, wait_s: float = 600.0) -> int:
    """Submit a training run and a detection run continuing it, execute both, summarize, serve."""
    training_nb, detection_nb = notebooks / "training.ipynb", notebooks / "detection.ipynb"
    if not training_nb.is_file() or not detection_nb.is_file():
        raise InvalidInput(f"demo notebooks not found in {notebooks} (run from a checkout of runtool)")
    check_imports([training_nb, detection_nb], q.inspect(training_nb).kernel)
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


def imported_modules(notebook: Path) -> list[str]:
    """Top-level names of the modules a notebook's code cells import (the standard library left out)."""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    names: list[str] = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module.split(".")[0])
    return [n for n in dict.fromkeys(names) if n not in sys.stdlib_module_names]


def missing_modules(modules: Iterable[str], kernel: str | None) -> list[str]:
    """The modules the kernel's interpreter cannot find ([] when it cannot be asked)."""
    wanted = list(modules)
    if not wanted:
        return []
    python = _kernel_python(kernel)
    code = ("import importlib.util, json, sys\n"
            "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]))")
    try:
        done = subprocess.run([python, "-c", code, *wanted], capture_output=True, text=True, timeout=60)
        return list(json.loads(done.stdout)) if done.returncode == 0 else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []  # no answer: the runs will say it themselves


def check_imports(notebooks: Iterable[Path], kernel: str | None) -> None:
    """Refused, in one line, if a package the notebooks import is missing for their kernel."""
    modules = [m for nb in notebooks for m in imported_modules(nb)]
    missing = missing_modules(dict.fromkeys(modules), kernel)
    if missing:
        packages = ", ".join(PACKAGE_OF.get(m, m) for m in missing)
        raise Refused(f"demo: the notebooks need {packages}, not installed for kernel {kernel or 'python3'}; "
                      f"install with: {INSTALL}")


def _kernel_python(kernel: str | None) -> str:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        argv = KernelSpecManager().get_kernel_spec(kernel or "python3").argv
    except Exception:  # noqa: BLE001 - no kernelspec to ask: the worker's own interpreter
        return sys.executable
    first = argv[0] if argv else ""
    return sys.executable if first in ("", "python", "python3", "{python}") else first


def _execute(ids: list[int], q: RunQueue, echo: Callable[[str], None], wait_s: float) -> list[Run]:
    """Execute the runs in a worker process, echoing progress and failed attempts as they come."""
    worker = subprocess.Popen([sys.executable, "-m", "runtool", "--home", str(q.home), "worker"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watch = _Watch(echo)
    deadline = time.monotonic() + wait_s
    done = False
    try:
        while True:
            runs = [q.get(i, history=True) for i in ids]
            for run in runs:
                watch.see(run)
            done = all(r.status in FINISHED for r in runs)
            if done or time.monotonic() > deadline:
                return runs
            if worker.poll() is not None:
                raise Refused(f"demo: the worker exited with {worker.returncode}; see `runtool worker`")
            time.sleep(WATCH_S)
    finally:
        _stop(worker, signals=1 if done else 2)  # interrupted or out of time: end the run too


class _Watch:
    """What the demo has told about each run so far."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.progress: dict[int, tuple[int, int] | None] = {}
        self.history: dict[int, int] = {}

    def see(self, run: Run) -> None:
        name = f"run {run.id} ({run.kind})"
        for entry in run.history[self.history.get(run.id, 0):]:
            if entry["status"] == Status.PROCESSING.value:
                self.echo(f"{name}: started, {entry['reason']}")
            elif entry["error"]:
                error = entry["error"]
                cell = f" in cell {error['cell']}" if error.get("cell") else ""
                self.echo(f"{name}: attempt failed{cell}: {error['type']}: {error['message']}")
                self.echo(f"  -> {entry['status']}: {entry['reason']}")
        self.history[run.id] = len(run.history)
        progress = (run.progress_done or 0, run.progress_total) if run.progress_total else None
        if run.status is Status.PROCESSING and progress and progress[0] and progress != self.progress.get(run.id):
            self.echo(f"{name}: cells {progress[0]}/{progress[1]}")
        self.progress[run.id] = progress


def _stop(worker: subprocess.Popen[Any], signals: int) -> None:
    """One SIGTERM: the idle worker exits; two: it also ends its run's processes (back to waiting)."""
    for _ in range(signals):
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            time.sleep(0.2)  # the worker counts signals: let it see the first before the second
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


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
