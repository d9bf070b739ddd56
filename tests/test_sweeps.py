"""Sweeps (`--grid`, `RunQueue.sweep`) and fan-in (`--after` repeated): a report after a sweep."""

from __future__ import annotations

import json

import pytest

from helpers import notebook, runtool
from runtool import InvalidInput, RunQueue, Status
from runtool.worker import Limits, Worker

pytestmark = pytest.mark.both_stores

def drain(q: RunQueue) -> tuple[int, str]:
    return Worker(q, [], limits=Limits()).drain()


def test_grid_submits_one_run_per_combination_tagged_with_the_sweep(home, job):
    result = runtool(home, "submit", str(job), "--grid", "n=1,2,3", "--grid", "x=0.5,1", "-p", "label", "s",
                     "--tag", "who=me")
    assert (result.code, result.err) == (0, "")
    ids = [int(line) for line in result.out.split()]
    assert ids == [1, 2, 3, 4, 5, 6]
    runs = [RunQueue(home).get(i) for i in ids]
    assert [(r.parameters["n"], r.parameters["x"]) for r in runs] == [
        (1, 0.5), (1, 1.0), (2, 0.5), (2, 1.0), (3, 0.5), (3, 1.0)]
    assert all(r.parameters["label"] == "s" and r.tags == {"who": "me", "sweep": "1"} for r in runs)
    assert all(isinstance(r.parameters["x"], float) for r in runs)  # typed as -p types them
    as_json = json.loads(runtool(home, "submit", str(job), "--grid", "n=7,8", "--json").out)
    assert [(r["id"], r["tags"]["sweep"]) for r in as_json] == [(7, "7"), (8, "7")]


@pytest.mark.parametrize("grid, message", [
    (["n=1,abc"], "bad value 'abc' for parameter 'n': expected int (declared as n = 1)"),
    (["n="], "bad --grid 'n=': expected NAME=V1,V2,..."),
    (["n"], "bad --grid 'n': expected NAME=V1,V2,..."),
    (["n=1,,2"], "bad --grid 'n=1,,2': expected NAME=V1,V2,..."),
    (["n=1", "n=2"], "bad --grid 'n=2': n is already in another --grid"),
    (["nope=1,2"], "unknown parameter 'nope' for job.ipynb"),
    (["run_id=1,2"], "parameter 'run_id' is filled in by runtool"),
])
def test_bad_grid_is_one_line_exit_2_and_nothing_stored(home, job, grid, message):
    args = [a for option in grid for a in ("--grid", option)]
    result = runtool(home, "submit", str(job), *args)
    assert result.code == 2 and result.out == ""
    assert result.err.startswith(f"runtool: {message}") and result.err.count("\n") == 1, result.err
    assert RunQueue(home).count() == 0


def test_grid_and_p_of_the_same_name_is_refused(home, job):
    result = runtool(home, "submit", str(job), "--grid", "n=1,2", "-p", "n", "3")
    assert (result.code, result.err) == (2, "runtool: parameter 'n' given both as a parameter and in --grid\n")


def test_api_sweep_validates_every_run_before_storing_any(q, job):
    runs = q.sweep(job, grid={"n": [1, 2], "flag": [True, False]}, parameters={"label": "b"}, queue="q1")
    assert [(r.parameters["n"], r.parameters["flag"]) for r in runs] == [(1, True), (1, False), (2, True), (2, False)]
    assert {r.tags["sweep"] for r in runs} == {str(runs[0].id)} and {r.queue for r in runs} == {"q1"}
    before = q.count()
    for grid in ({"n": [1, "x"]}, {"n": []}, {"n": "12"}, {}, {"n": list(range(2000))}):
        with pytest.raises(InvalidInput):
            q.sweep(job, grid=grid)
    with pytest.raises(InvalidInput, match="OUTPUT cannot be given with --grid"):
        q.sweep(job, grid={"n": [1]}, output=str(job.parent / "out.ipynb"))
    assert q.count() == before


@pytest.mark.kernel
def test_report_after_a_whole_sweep_waits_for_every_parent(home, job, tmp_path, no_leftovers):
    q = RunQueue(home)
    runs = q.sweep(job, grid={"n": [1, 2, 3]})
    report_nb = notebook(tmp_path / "report.ipynb", parameters="parent_run_dirs = []\nrun_dir = ''\n",
                         body=["import json, os\n"
                               "ns = [json.load(open(os.path.join(d, 'result.json')))['n'] for d in parent_run_dirs]\n"
                               "json.dump({'total': sum(ns)}, open(os.path.join(run_dir, 'metrics.json'), 'w'))"])
    args = [a for r in runs for a in ("--after", str(r.id))]
    result = runtool(home, "submit", str(report_nb), *args, "--on", "finish")
    assert result.code == 0, result.err
    report = q.get(int(result.out))
    assert report.after == [r.id for r in runs] and report.label(0) == "awaiting"
    shown = runtool(home, "show", str(report.id)).out
    assert f"after       runs {runs[0].id}, {runs[1].id}, {runs[2].id} (on finish)" in shown
    drain(q)
    done = q.get(report.id)
    assert done.status is Status.SUCCEEDED, done.error
    assert done.metrics == {"total": 6}


@pytest.mark.kernel
def test_fan_in_is_cancelled_when_one_parent_fails_on_success(q, job, no_leftovers):
    good = q.submit(job)
    bad = q.submit(job, {"fail": True}, retries=0)
    child = q.submit(job, after=[good.id, bad.id])
    drain(q)
    cancelled = q.get(child.id, history=True)
    assert cancelled.status is Status.CANCELLED
    assert f"parent run {bad.id} ended failed" in cancelled.history[-1]["reason"]


def test_bad_after_is_refused(home, job):
    result = runtool(home, "submit", str(job), "--after", "1", "--after", "x")
    assert result.code == 2 and "--after" in result.err
    result = runtool(home, "submit", str(job), "--after", "99")
    assert (result.code, result.err) == (2, "runtool: bad --after 99: no such run\n")
    result = runtool(home, "submit", str(job), "--grid", "n=1,2", "--after", "99")
    assert (result.code, result.err) == (2, "runtool: bad --after 99: no such run\n")
    assert RunQueue(home).count() == 0
