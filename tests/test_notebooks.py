"""Execute the example notebooks with papermill and check their artifacts.

Training runs once per module (module-scoped fixture); detection continues from that run
the way runtool chains a detection run onto a training run (parent_run_dir).
"""

import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest

pytestmark = pytest.mark.kernel
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def execute(name, out_dir, **parameters):
    """Run notebooks/<name>.ipynb with papermill; the executed copy goes to out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return pm.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(out_dir / f"{name}.out.ipynb"),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(out_dir),
        progress_bar=False,
    )


def assert_png(path):
    assert path.is_file(), f"missing {path.name}"
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert path.stat().st_size > 5_000, f"{path.name} looks empty"


@pytest.fixture(scope="module")
def training_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("training") / "run"
    execute("training", run_dir.parent, run_dir=str(run_dir))
    return run_dir


@pytest.fixture(scope="module")
def detection_run(training_run, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("detection") / "run"
    execute(
        "detection",
        run_dir.parent,
        parent_run_dir=str(training_run),
        run_dir=str(run_dir),
    )
    return run_dir


def test_training_writes_model_metrics_and_plot(training_run):
    assert (training_run / "model.joblib").stat().st_size > 0
    assert_png(training_run / "confusion_matrix.png")

    metrics = json.loads((training_run / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.95
    assert sorted(metrics["per_class"]) == [str(digit) for digit in range(10)]
    for scores in metrics["per_class"].values():
        assert 0 <= scores["precision"] <= 1 and 0 <= scores["recall"] <= 1
    assert metrics["n_train"] + metrics["n_test"] == 1797  # the whole load_digits set
    assert metrics["parameters"]["test_fraction"] == 0.25
    assert metrics["parameters"]["run_dir"] == str(training_run)


def test_detection_from_parent_training_run(training_run, detection_run):
    assert_png(detection_run / "preview.png")

    detections = json.loads((detection_run / "detections.json").read_text())
    metrics = json.loads((detection_run / "metrics.json").read_text())
    assert (
        [entry["scene"] for entry in detections]
        == list(range(metrics["n_scenes"]))
        == list(range(8))
    )
    for entry in detections:
        assert len(entry["boxes"]) == len(entry["labels"]) == len(entry["scores"])
        for x0, y0, x1, y1 in entry["boxes"]:
            assert x0 < x1 and y0 < y1
        assert all(
            0.5 <= score <= 1 for score in entry["scores"]
        )  # default score_threshold
        truth = entry["ground_truth"]
        assert len(truth["boxes"]) == len(truth["labels"]) > 0
    assert metrics["n_objects"] == sum(
        len(entry["ground_truth"]["labels"]) for entry in detections
    )

    assert metrics["recall"] >= 0.8
    for key in ("precision", "recall", "mAP"):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["model_path"] == str(training_run / "model.joblib")
    assert (metrics["score_threshold"], metrics["nms_iou"]) == (0.5, 0.3)


def test_detection_refuses_missing_model_path(tmp_path):
    missing = tmp_path / "nowhere" / "model.joblib"
    with pytest.raises(pm.PapermillExecutionError) as failure:
        execute(
            "detection",
            tmp_path,
            model_path=str(missing),
            run_dir=str(tmp_path / "run"),
        )
    assert failure.value.ename == "FileNotFoundError"
    assert str(missing) in failure.value.evalue


def test_detection_refuses_score_threshold_above_one(tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as failure:
        execute(
            "detection", tmp_path, score_threshold=1.5, run_dir=str(tmp_path / "run")
        )
    assert failure.value.ename == "ValueError"
    assert "score_threshold" in failure.value.evalue


@pytest.mark.parametrize(
    "path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda path: path.name
)
def test_notebook_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} have outputs or an execution count; clear them"
    )
