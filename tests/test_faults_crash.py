"""Fault campaign, crashes: the worker killed with SIGKILL at random moments and at each
crash point, then `reconcile` and a new `drain` (the long version: scripts/fault_soak.py)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from fault_checks import MODES, TRIAL_CONFIG, kill_trial, reap, trial_notebook, wait_for
from helpers import PYTHON, notebook, runtool, spawn, write_config

from runtool import RunQueue, Status

pytestmark = [pytest.mark.slow, pytest.mark.kernel]


@pytest.mark.parametrize("mode", MODES)
def test_kill_trial(tmp_path, mode):
    """One trial per way of dying; the soak runs the same trial 50+ times at random."""
    trial = kill_trial(tmp_path, mode, random.Random(f"suite-{mode}"), runs=2)
    assert trial.killed, trial
    assert trial.problems == [], trial


def test_reconcile_ignores_the_output_of_an_earlier_attempt(home, tmp_path):
    """A worker that dies right after claiming a retried run leaves the previous attempt's
    output.ipynb in the run folder; that is no evidence about the attempt that died."""
    write_config(home, TRIAL_CONFIG)
    nb = trial_notebook(tmp_path)
    q = RunQueue(home)
    run = q.submit(nb, {"fail": True, "grandchild": False}, retries=2)
    assert runtool(home, "drain", "--max-runs", "1").code == 0  # attempt 1 fails: waiting
    assert q.get(run.id).status is Status.WAITING
    result = runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "claimed"})
    assert result.code == -signal.SIGKILL
    q.reconcile()
    repaired = q.get(run.id)
    # attempt 2 never ran a cell: it failed as WorkerDied and attempt 3 is still to come
    assert (repaired.status, repaired.attempt) == (Status.WAITING, 2)
    assert repaired.error["type"] == "WorkerDied"


def test_reconcile_never_calls_an_attempt_that_did_not_run_succeeded(home, job):
    """Finished notebook, worker killed before recording, run force-cancelled, then retried:
    a worker dying right after claiming the retry must not turn it into `succeeded`."""
    q = RunQueue(home)
    run = q.submit(job)
    assert runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "executed"}).code == -signal.SIGKILL
    q.cancel(run.id, force=True)  # the owner is admin
    q.retry(run.id)
    assert runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "claimed"}).code == -signal.SIGKILL
    q.reconcile()
    repaired = q.get(run.id, history=True)
    assert repaired.status is Status.WAITING, repaired.history[-1]
    assert repaired.error["type"] == "WorkerDied"


@pytest.mark.parametrize("fail", [False, True])
def test_kill_right_after_the_outcome_is_recorded_leaves_its_files(home, tmp_path, fail):
    """error.txt (failure) and the OUTPUT copy are written before the outcome is committed,
    so a worker killed right after the commit leaves a complete run behind."""
    nb = notebook(tmp_path / "job.ipynb")
    copy = tmp_path / "copy.ipynb"
    q = RunQueue(home)
    run = q.submit(nb, {"fail": fail}, retries=0, output=copy)
    result = runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "recorded"})
    assert result.code == -signal.SIGKILL
    done = q.get(run.id)
    assert done.status is (Status.FAILED if fail else Status.SUCCEEDED)
    assert copy.is_file()
    assert (tmp_path / "home" / "runs" / str(run.id) / "error.txt").is_file() is fail


HELD_PARAMETERS = 'hold = ""\nrun_dir = ""\n'
HELD_BODY = [
    "import os, subprocess, time\nchild = subprocess.Popen(['sleep', '300'])\n"
    "open(os.path.join(run_dir, 'grandchild.pid'), 'a').write(f'{child.pid}\\n')",
    "while os.path.exists(hold):\n    time.sleep(0.05)",
    "raise ValueError('done holding')",
]


def test_a_late_reconcile_never_ends_a_later_attempt(home, tmp_path):
    """A reconcile that read a run as processing, then was held up while that attempt's
    worker finished it and left and another worker started the next attempt, found the first
    worker gone and ended every process carrying the run's token: the live next attempt's
    kernel and children (DeadKernelError), and the attempts after it. The hold-up is made
    real with strace delaying the reconcile's first look at the first worker."""
    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    write_config(home, TRIAL_CONFIG)
    hold = tmp_path / "hold"
    nb = notebook(tmp_path / "held.ipynb", parameters=HELD_PARAMETERS, body=HELD_BODY)
    q = RunQueue(home)
    run = q.submit(nb, {"hold": str(hold)}, retries=1)
    pids = Path(run.run_dir) / "grandchild.pid"
    hold.touch()
    first = spawn(home, "worker", "--poll", "0.2s")
    procs = [first]
    try:
        wait_for(lambda: pids.exists() and pids.read_text().strip(), timeout=120)
        late = subprocess.Popen(
            ["strace", "-f", "-o", os.devnull, "-P", f"/proc/{first.pid}/stat", "-e", "trace=openat",
             "-e", "inject=openat:delay_enter=12000000:when=1", PYTHON, "-m", "runtool", "--home", str(home),
             "reconcile"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(late)
        time.sleep(3)  # it has read the run as processing; its look at the worker is held up
        if late.poll() is not None:
            pytest.skip(f"strace cannot delay syscalls here: {late.communicate()[1].strip()[:200]}")
        first.send_signal(signal.SIGTERM)  # finish this attempt, then leave
        hold.unlink()
        first.communicate(timeout=60)
        hold.touch()
        procs.append(spawn(home, "worker", "--poll", "0.2s"))
        wait_for(lambda: len(pids.read_text().split()) == 2, timeout=120)
        if late.poll() is not None:
            pytest.skip("the machine was too slow to stage the race")
        second = psutil.Process(int(pids.read_text().split()[1]))
        assert late.wait(timeout=120) == 0
        assert second.is_running() and second.status() != psutil.STATUS_ZOMBIE, "the late reconcile ended attempt 2"
        hold.unlink()
        wait_for(lambda: q.get(run.id).status is Status.FAILED, timeout=120)
        failed = q.get(run.id, history=True)
        assert (failed.attempt, failed.error["type"]) == (2, "ValueError"), failed.history
    finally:
        hold.unlink(missing_ok=True)
        procs[-1].send_signal(signal.SIGTERM)
        reap(procs)
        q.close()
