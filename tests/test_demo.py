"""The main job through the queue: training, then detection continuing it (issue 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtool import RunQueue, Status
from runtool.demo import run_demo


@pytest.mark.kernel
def test_demo_trains_then_detects_through_the_queue(home):
    lines: list[str] = []
    q = RunQueue(home)
    assert run_demo(q, lines.append, serve=False) == 0
    training, detection = sorted(q.list(), key=lambda r: r.id)
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
