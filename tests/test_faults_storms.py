"""Fault campaign, crowds: overlapping cron drains and concurrent submitters while a worker
drains and the dashboard refreshes (reduced sizes; the full storms: scripts/fault_soak.py)."""

from __future__ import annotations

import pytest
from fault_checks import cron_storm, submit_storm
from helpers import runtool

from runtool import RunQueue
from runtool.lock import ExecutorLock


def test_an_extra_drain_leaves_before_importing_papermill(home, job):
    """A drain that finds the executor busy exits at once: it must not first spend 1-3 s
    of CPU importing papermill (ten of them a second would swamp a small machine)."""
    q = RunQueue(home)
    q.submit(job)
    held = ExecutorLock(q.lock.path)
    assert held.try_acquire("test worker")
    try:
        result = runtool(home, "drain", env={"PYTHONPROFILEIMPORTTIME": "1"})
    finally:
        held.release()
    assert result.code == 0
    assert result.out.startswith("runtool drain: another process is executing a run in ")
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.err.splitlines() if "import time:" in line]
    assert "runtool.api" in imported  # the profile did record imports
    assert not [m for m in imported if m.startswith("papermill")]


@pytest.mark.kernel
@pytest.mark.slow
def test_cron_storm(tmp_path):
    """Five drains started every second for 10 s over 8 short runs."""
    storm = cron_storm(tmp_path, seconds=10, per_second=5, runs=8)
    assert storm.problems == [], storm
    assert storm.exit_codes == {0: storm.drains + (1 if storm.left_after_storm else 0)}


@pytest.mark.kernel
@pytest.mark.slow
def test_submit_storm(tmp_path):
    """Four processes x 100 submissions while a worker drains and the dashboard refreshes."""
    storm = submit_storm(tmp_path, procs=4, each=100)
    assert storm.problems == [], storm
    assert storm.submitted == storm.stored == 400
    assert storm.refreshes > 0 and storm.executed > 0
