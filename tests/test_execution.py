"""Executing runs for real (papermill, a real kernel): outcomes, retries, order, continuations."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers import markers, notebook, runtool, wait_for, write_config
from runtool import RunQueue, Status
from runtool.worker import Limits, Worker

pytestmark = pytest.mark.both_stores


def drain(q: RunQueue, queues: list[str] | None = None, **limits) -> tuple[int, str]:
    return Worker(q, queues or [], limits=Limits(**limits)).drain()


def due(q: RunQueue, run_id: int) -> None:
    """Wait until the run's not_before has passed (it is then runnable)."""
    wait_for(lambda: (q.get(run_id).not_before or 0) <= time.time(), timeout=30, every=0.02,
             what=f"run {run_id} to be due")


@pytest.mark.kernel
def test_success_writes_output_logs_progress_and_runtime_parameters(q, job, tmp_path, no_leftovers):
    copy = tmp_path / "copy.ipynb"
    run = q.submit(job, {"n": 7, "label": "seven"}, output=copy)
    assert drain(q) == (0, "executed 1 run(s)")
    done = q.get(run.id, history=True)
    assert done.status is Status.SUCCEEDED
    assert done.attempt == 1 and done.error is None
    assert done.progress_done == done.progress_total == 7  # injected cell + parameters + 5
    folder = Path(done.run_dir)
    result = json.loads((folder / "result.json").read_text())
    assert result["n"] == 7 and result["label"] == "seven"
    assert result["run_id"] == run.id
    if q.store.shared:  # the attempt's private folder, whose files moved into the run folder
        assert result["run_dir"].startswith(f"{folder}/.attempt-1-") and not Path(result["run_dir"]).exists()
    else:
        assert result["run_dir"] == str(folder)
    assert result["cwd"] == str(job.parent)  # the notebook's folder
    assert "done 7" in (folder / "stdout.log").read_text()
    output = json.loads((folder / "output.ipynb").read_text())
    assert output["metadata"]["papermill"]["parameters"]["n"] == 7
    assert json.loads(copy.read_text())["metadata"]["papermill"]["parameters"]["n"] == 7
    assert not (folder / "error.txt").exists()
    assert [h["status"] for h in done.history] == ["waiting", "processing", "succeeded"]
    assert done.started_at <= done.heartbeat_at <= done.finished_at


@pytest.mark.kernel
def test_failure_records_error_and_error_txt(q, job, no_leftovers):
    run = q.submit(job, {"fail": True, "n": 3}, retries=0)
    drain(q)
    failed = q.get(run.id, history=True)
    assert failed.status is Status.FAILED
    assert failed.error["type"] == "ValueError"
    assert failed.error["message"] == "asked to fail (n=3)"
    assert failed.error["cell"] == 5
    assert "raise ValueError" in failed.error["traceback"]
    text = (Path(failed.run_dir) / "error.txt").read_text()
    assert text.startswith("ValueError: asked to fail (n=3)\n(cell 5)")
    assert failed.history[-1]["error"]["type"] == "ValueError"


@pytest.mark.kernel
def test_retries_back_off_exponentially_then_fail(home, job, no_leftovers):
    write_config(home, 'retry_base_delay = "0.3s"\n')
    q = RunQueue(home)
    run = q.submit(job, {"fail": True}, retries=2)
    began = time.time()
    drain(q)
    ended = time.time()
    first = q.get(run.id)
    assert (first.status, first.attempt, first.label(time.time())) == (Status.WAITING, 1, "retrying")
    # the failure is recorded during the drain: due base_delay * 2**0 after that moment
    assert began + 0.3 <= first.not_before <= ended + 0.3
    assert first.finished_at is None  # a retrying run has not finished
    if time.time() < first.not_before:  # (a drain slower than the backoff cannot check this)
        assert drain(q) == (0, "executed 0 run(s)")  # not runnable before the backoff
    due(q, run.id)
    began = time.time()
    assert drain(q) == (0, "executed 1 run(s)")
    ended = time.time()
    second = q.get(run.id)
    assert (second.status, second.attempt) == (Status.WAITING, 2)
    assert began + 0.6 <= second.not_before <= ended + 0.6  # base_delay * 2**1
    due(q, run.id)
    assert drain(q) == (0, "executed 1 run(s)")
    final = q.get(run.id, history=True)
    assert (final.status, final.attempt) == (Status.FAILED, 3)
    reasons = [h["reason"] for h in final.history if h["status"] == "waiting"][1:]
    assert "retry 1 of 2 in 0.3 s" in reasons[0] and "retry 2 of 2 in 0.6 s" in reasons[1]
    # retry resets attempts, keeps id and history
    again = q.retry(run.id)
    assert (again.id, again.status, again.attempt, again.error) == (run.id, Status.WAITING, 0, None)
    assert len(q.get(run.id, history=True).history) == len(final.history) + 1


@pytest.mark.kernel
def test_delayed_runs_wait_until_due(q, job):
    began = time.time()
    run = q.submit(job, delay="1s")
    assert began + 1 <= q.get(run.id).not_before <= time.time() + 1
    assert q.get(run.id).label(time.time()) == "scheduled"
    assert drain(q) == (0, "executed 0 run(s)")
    due(q, run.id)
    assert q.get(run.id).label(time.time()) == "waiting"
    assert drain(q) == (0, "executed 1 run(s)")
    assert q.get(run.id).status is Status.SUCCEEDED


@pytest.mark.kernel
def test_priority_then_age_and_queue_order(q, job, tmp_path):
    marker = str(tmp_path / "order.jsonl")
    for n, prio, queue in [(1, "low", "a"), (2, "normal", "a"), (3, "high", "a"), (4, 5, "a"),
                           (5, "normal", "b"), (6, "low", "b")]:
        q.submit(job, {"n": n, "marker": marker}, priority=prio, queue=queue)
    drain(q, queues=["b"], max_runs=1)
    drain(q)
    assert [m["n"] for m in markers(Path(marker))] == [5, 3, 4, 2, 1, 6]
    # with the queue order given: b entirely first, then a, each by priority then age
    for n in range(1, 7):
        q.submit(job, {"n": n, "marker": marker}, queue="ab"[n % 2], priority=n)
    Path(marker).unlink()
    drain(q, queues=["b", "a"])
    assert [m["n"] for m in markers(Path(marker))] == [5, 3, 1, 6, 4, 2]


@pytest.mark.kernel
def test_paused_queue_keeps_accepting_but_is_not_claimed(q, job):
    q.pause("a")
    held = q.submit(job, queue="a")
    other = q.submit(job, queue="b")
    drain(q)
    assert q.get(held.id).status is Status.WAITING
    assert q.get(other.id).status is Status.SUCCEEDED
    q.resume("a")
    q.pause()
    assert drain(q) == (0, "executed 0 run(s)")
    q.resume()
    drain(q)
    assert q.get(held.id).status is Status.SUCCEEDED


@pytest.mark.kernel
@pytest.mark.parametrize("parent_fails, on, child_runs", [
    (False, "success", True), (False, "failure", False), (False, "finish", True),
    (True, "success", False), (True, "failure", True), (True, "finish", True),
])
def test_continuations(q, job, parent_fails, on, child_runs):
    parent = q.submit(job, {"fail": parent_fails}, retries=0)
    child = q.submit(job, {"n": 2}, after=parent.id, on=on)
    assert q.get(child.id).label(time.time()) == "awaiting"
    drain(q)
    result = q.get(child.id, history=True)
    if child_runs:
        assert result.status is Status.SUCCEEDED
        data = json.loads((Path(result.run_dir) / "result.json").read_text())
        assert data["parent_run_id"] == parent.id
        assert data["parent_run_dir"] == q.get(parent.id).run_dir
    else:
        assert result.status is Status.CANCELLED
        assert result.attempt == 0
        parent_status = "failed" if parent_fails else "succeeded"
        assert result.history[-1]["reason"] == (
            f"parent run {parent.id} ended {parent_status}; this run continues it only on {on}")


def test_continuation_of_cancelled_or_deleted_parent_is_cancelled(q, job):
    parent = q.submit(job)
    child = q.submit(job, after=parent.id, on="finish")
    grandchild = q.submit(job, after=child.id)
    q.cancel(parent.id)
    assert q.get(child.id).status is Status.CANCELLED
    assert q.get(grandchild.id).status is Status.CANCELLED
    parent2 = q.submit(job)
    child2 = q.submit(job, after=parent2.id)
    q.delete(parent2.id)
    assert "was deleted" in q.get(child2.id, history=True).history[-1]["reason"]
    # submitting after an already-finished parent resolves at once
    late = q.submit(job, after=parent.id, on="success")
    assert q.get(late.id).status is Status.CANCELLED


@pytest.mark.kernel
def test_timeout_ends_the_run_and_its_processes(q, tmp_path, no_leftovers):
    slow = notebook(tmp_path / "slow.ipynb", parameters="run_dir = ''", body=[
        "import subprocess, time\nchild = subprocess.Popen(['sleep', '300'])",
        "time.sleep(300)"])
    run = q.submit(slow, timeout="2s", retries=0)
    began = time.monotonic()
    drain(q)
    elapsed = time.monotonic() - began
    failed = q.get(run.id)
    assert failed.status is Status.FAILED
    assert failed.error["type"] == "Timeout"
    assert failed.error["message"] == "run exceeded its timeout of 2 s"
    assert elapsed < 15


@pytest.mark.kernel
def test_kernel_option_and_notebook_changed_after_submit(q, tmp_path):
    nb = notebook(tmp_path / "nk.ipynb", kernel=None)
    run = q.submit(nb, kernel="python3")
    nb.unlink()
    drain(q)
    failed = q.get(run.id)
    assert failed.status is Status.WAITING and failed.attempt == 1  # retried later
    assert "not found" in failed.error["message"]


@pytest.mark.kernel
def test_drain_and_list_and_show_and_logs_from_the_command_line(home, job):
    assert runtool(home, "submit", str(job), "-p", "n", "4").out == "1\n"
    result = runtool(home, "drain")
    assert result.code == 0 and result.out == "runtool drain: executed 1 run(s)\n"
    assert "run 1: claimed" in result.err and "run 1: succeeded in" in result.err
    listing = runtool(home, "list").out.splitlines()
    assert listing[0].split() == ["ID", "STATUS", "KIND", "QUEUE", "CREATED", "DURATION", "CELLS", "BY", "MACHINE", "PARAMETERS"]
    assert listing[1].split()[:4] == ["1", "succeeded", "job", "default"]
    shown = json.loads(runtool(home, "show", "1", "--json").out)
    assert [h["status"] for h in shown["history"]] == ["waiting", "processing", "succeeded"]
    text = runtool(home, "show", "1").out
    assert "run 1: succeeded" in text and "output.ipynb" in text
    logs = runtool(home, "logs", "1")
    assert logs.code == 0 and "done 4" in logs.out
    follow = runtool(home, "logs", "1", "--follow")
    assert "stdout: done 4" in follow.out
    assert runtool(home, "list", "--status", "failed").out == "no runs\n"
    assert json.loads(runtool(home, "list", "--json", "--limit", "1").out)[0]["id"] == 1
    assert runtool(home, "logs", "9").code == 1
