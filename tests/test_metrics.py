"""Metrics: the numbers a finished run recorded (metrics.json, scrapbook scraps), in the record,
`show`, `list --json` and `list --metrics`."""

from __future__ import annotations

import json

import pytest

from helpers import notebook, runtool
from runtool import RunQueue, Status
from runtool.metrics import read_metrics, scraps
from runtool.worker import Limits, Worker

PARAMETERS = "accuracy = 0.9\nfail = False\nrun_dir = ''\n"
#: What scrapbook.glue("loss", value) puts in a notebook, written without the scrapbook package.
GLUE = ("from IPython.display import display\n"
        "def glue(name, value):\n"
        "    display({'application/scrapbook.scrap.json+json': {'name': name, 'data': value,\n"
        "             'encoder': 'json', 'version': 1}},\n"
        "            metadata={'scrapbook': {'name': name, 'data': True, 'display': False}}, raw=True)\n"
        "glue('loss', 0.25)\nglue('note', 'text is not a metric')\nglue('steps', 3)\nglue('steps', 4)")
WRITE = ("import json, os\n"
         "with open(os.path.join(run_dir, 'metrics.json'), 'w') as f:\n"
         "    json.dump({'accuracy': accuracy, 'n_test': 450, 'ok': True, 'name': 'svm',\n"
         "               'per_class': {'0': 1.0}, 'bad': float('nan')}, f)")
FAIL = "if fail:\n    raise ValueError('after the metrics')"


def drain(q: RunQueue) -> tuple[int, str]:
    return Worker(q, [], limits=Limits()).drain()


@pytest.mark.kernel
def test_metrics_come_from_metrics_json_and_scraps(home, tmp_path, no_leftovers):
    nb = notebook(tmp_path / "scored.ipynb", parameters=PARAMETERS, body=[GLUE, WRITE, FAIL])
    q = RunQueue(home)
    first = q.submit(nb, {"accuracy": 0.9})
    q.submit(nb, {"accuracy": 0.95})
    failed = q.submit(nb, {"fail": True}, retries=0)
    drain(q)
    assert q.get(first.id).metrics == {"loss": 0.25, "steps": 4, "accuracy": 0.9, "n_test": 450}
    assert q.get(failed.id).status is Status.FAILED
    assert q.get(failed.id).metrics["accuracy"] == 0.9  # a failed run keeps what it recorded

    shown = runtool(home, "show", str(first.id))
    assert "  metrics     loss=0.25  steps=4  accuracy=0.9  n_test=450\n" in shown.out
    listed = json.loads(runtool(home, "list", "--json").out)
    assert [r["metrics"].get("accuracy") for r in listed] == [0.9, 0.95, 0.9]
    table = runtool(home, "list", "--metrics").out.splitlines()
    assert table[0].split() == ["ID", "STATUS", "KIND", "QUEUE", "CREATED", "DURATION", "CELLS", "BY", "MACHINE",
                                "LOSS", "STEPS", "ACCURACY", "N_TEST", "PARAMETERS"]
    assert table[2].split()[-5:-1] == ["0.25", "4", "0.95", "450"]
    assert "LOSS" not in runtool(home, "list").out

    # a retry starts over: the metrics are those of the next finish
    q.retry(failed.id)
    assert q.get(failed.id).metrics == {}


@pytest.mark.kernel
def test_a_run_that_records_nothing_has_empty_metrics(q, job, no_leftovers):
    run = q.submit(job)
    drain(q)
    assert q.get(run.id).metrics == {}
    assert q.get(run.id).to_dict()["metrics"] == {}


def test_unreadable_metrics_are_ignored(tmp_path):
    (tmp_path / "metrics.json").write_text("{not json")
    assert read_metrics(tmp_path) == {}
    (tmp_path / "metrics.json").write_text("[1, 2]")
    assert read_metrics(tmp_path) == {}
    (tmp_path / "output.ipynb").write_text('{"cells": [{"outputs": [{"data": 3}]}]}')
    assert read_metrics(tmp_path) == {}
    assert scraps({"cells": "nope"}) == {} and scraps(None) == {}
    assert read_metrics(tmp_path / "missing") == {}


@pytest.mark.kernel
def test_the_example_notebooks_record_their_metrics(home, no_leftovers):
    from runtool.config import NOTEBOOKS_DIR

    q = RunQueue(home)
    training = q.submit(NOTEBOOKS_DIR / "training.ipynb")
    detection = q.submit(NOTEBOOKS_DIR / "detection.ipynb", {"n_scenes": 2}, after=training.id)
    drain(q)
    trained, detected = q.get(training.id), q.get(detection.id)
    assert trained.status is Status.SUCCEEDED, trained.error
    assert 0.9 < trained.metrics["accuracy"] <= 1 and trained.metrics["n_test"] == 450
    assert detected.status is Status.SUCCEEDED, detected.error
    assert {"precision", "recall", "mAP", "n_scenes"} <= set(detected.metrics)


@pytest.mark.kernel
def test_reconcile_records_the_metrics_of_a_run_whose_worker_died(home, tmp_path, no_leftovers):
    nb = notebook(tmp_path / "scored.ipynb", parameters=PARAMETERS, body=[WRITE])
    run = RunQueue(home).submit(nb)
    runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "executed"})  # dies before recording
    assert RunQueue(home).get(run.id).status is Status.PROCESSING
    assert runtool(home, "reconcile").code == 0
    repaired = RunQueue(home).get(run.id)
    assert repaired.status is Status.SUCCEEDED
    assert repaired.metrics == {"accuracy": 0.9, "n_test": 450}
