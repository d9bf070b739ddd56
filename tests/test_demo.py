"""The main job through the queue: training, then detection continuing it (issue 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import clean_env

from runtool import Run, RunQueue, Status
from runtool.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[list[str], Run, Run]:
    """One run of the demo (a training run, a detection run continuing it) for the tests
    below: what it printed, and the two runs as recorded."""
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        clean_env(monkeypatch, tmp_path_factory)
        with RunQueue(tmp_path_factory.mktemp("demo") / "home") as q:
            assert run_demo(q, lines.append, serve=False) == 0
            training, detection = sorted(q.list(), key=lambda r: r.id)
    return lines, training, detection


@pytest.mark.kernel
def test_demo_trains_then_detects_through_the_queue(demo):
    lines, training, detection = demo
    assert (training.kind, detection.kind) == ("training", "detection")
    assert (training.status, detection.status) == (Status.SUCCEEDED, Status.SUCCEEDED)
    assert detection.after == [training.id] and detection.started_at >= training.finished_at
    train_dir, detect_dir = Path(training.run_dir), Path(detection.run_dir)
    assert json.loads((train_dir / "metrics.json").read_text())["accuracy"] >= 0.95
    for name in ("model.joblib", "confusion_matrix.png"):
        assert (train_dir / name).stat().st_size > 0
    metrics = json.loads((detect_dir / "metrics.json").read_text())
    assert metrics["recall"] >= 0.8
    assert metrics["model_path"] == str(train_dir / "model.joblib")  # continued the training run
    assert (detect_dir / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scenes = json.loads((detect_dir / "detections.json").read_text())
    assert len(scenes) == 8 and {"boxes", "labels", "scores"} <= set(scenes[0])
    output = json.loads((detect_dir / "output.ipynb").read_text())
    assert output["metadata"]["papermill"]["parameters"]["parent_run_dir"] == str(train_dir)
    text = "\n".join(lines)
    assert f"run {training.id} (training): succeeded" in text and "held-out accuracy 0.99" in text
    assert "recall 0.9" in text and str(detect_dir / "preview.png").rsplit("/", 1)[0] in text


@pytest.mark.kernel
def test_demo_shows_progress_while_runs_execute(demo):
    lines, training, detection = demo
    text = "\n".join(lines)
    assert f"run {training.id} (training): started, attempt 1 of 4" in text
    cells = [line for line in lines if line.startswith(f"run {detection.id} (detection): cells ")]
    assert cells, text
    done, total = map(int, cells[-1].rsplit(" ", 1)[1].split("/"))
    assert 0 < done <= total
    assert lines.index(cells[-1]) < next(i for i, line in enumerate(lines) if line.startswith(f"run {training.id} (training): succeeded"))


def test_demo_checks_the_notebooks_packages_before_submitting(home, tmp_path):
    from helpers import notebook
    from runtool import Refused
    from runtool.demo import NOTEBOOKS, imported_modules

    assert {"joblib", "matplotlib", "sklearn", "numpy", "scipy"} <= set(
        imported_modules(NOTEBOOKS / "training.ipynb") + imported_modules(NOTEBOOKS / "detection.ipynb"))
    assert "json" not in imported_modules(NOTEBOOKS / "training.ipynb")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    notebook(folder / "training.ipynb", "seed = 0\n", ["import json\nimport no_such_package_xyz.sub"])
    notebook(folder / "detection.ipynb", "n_scenes = 8\n", ["from sklearn import svm\n%matplotlib inline"])
    q = RunQueue(home)
    lines: list[str] = []
    with pytest.raises(Refused) as refused:
        run_demo(q, lines.append, serve=False, notebooks=folder)
    assert str(refused.value) == ("demo: the notebooks need no_such_package_xyz, not installed for kernel python3; "
                                  "install with: pip install 'runtool[notebooks]'")
    assert q.count() == 0 and lines == []


@pytest.mark.kernel
def test_demo_prints_a_failed_attempt_as_it_happens(home, tmp_path):
    from helpers import notebook, write_config

    write_config(home, 'retries = 1\nretry_base_delay = "0.5s"\n')
    folder = tmp_path / "notebooks"
    folder.mkdir()
    notebook(folder / "training.ipynb", "seed = 0\n", ["raise RuntimeError('broken on purpose')"])
    notebook(folder / "detection.ipynb", "n_scenes = 8\nparent_run_dir = ''\n", ["print(n_scenes)"])
    q = RunQueue(home)
    lines: list[str] = []
    assert run_demo(q, lines.append, serve=False, notebooks=folder) == 1
    training, detection = sorted(q.list(), key=lambda r: r.id)
    failed = [i for i, line in enumerate(lines)
              if line == f"run {training.id} (training): attempt failed in cell 3: RuntimeError: broken on purpose"]
    assert len(failed) == 2, lines  # both attempts, each when it failed
    assert lines[failed[0] + 1].startswith("  -> waiting: RuntimeError: broken on purpose; retry 1 of 1 in 0.5 s")
    assert lines[failed[1] + 1] == "  -> failed: RuntimeError: broken on purpose"
    assert (training.status, detection.status) == (Status.FAILED, Status.CANCELLED)
    summary_at = next(i for i, line in enumerate(lines) if line.startswith(f"run {training.id} (training): failed"))
    assert failed[1] < summary_at
