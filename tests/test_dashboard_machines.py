"""The dashboard's Force cancel of a run executing on another machine (PostgreSQL store):
the page does not wait for that machine (up to stale_after); the refresh shows the outcome.

The other machine is played by this test: a claim in its name, its heartbeats, and, when it
answers, the cancel its worker would record once the run's processes are gone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import ROLES, notebook, text_of, wait_for, write_config
from runtool import RunQueue, Status, lifecycle
from runtool.models import Change, Claimant
from runtool.widgets import Dashboard

pytestmark = pytest.mark.postgres
STALE_AFTER = 3.0
OTHER = Claimant("gpu-x:4242", 4242, 1.0, "gpu-x")


@pytest.fixture
def remote_run(tmp_path: Path, pg_server, monkeypatch: pytest.MonkeyPatch):
    """A dashboard on machine gpu-a (alice, admin) showing a run that executes on gpu-x."""
    home = tmp_path / "home"
    write_config(home, f'stale_after = "{STALE_AFTER:g}s"\n[store]\nurl = "{pg_server.new_database()}"\n{ROLES}')
    monkeypatch.setenv("RUNTOOL_MACHINE", "gpu-a")
    q = RunQueue(home, user="alice")
    run_id = q.submit(notebook(tmp_path / "job.ipynb"), retries=0).id
    run = q.store.claim([], OTHER)
    assert run is not None and run.id == run_id
    dash = Dashboard(home, user="alice", refresh_interval=None)
    dash.select(run_id)
    assert dash.detail.actions == ("force-cancel",)
    yield q, dash, run
    dash.close()
    q.close()


def _confirm_force_cancel(dash: Dashboard) -> float:
    dash.detail.press("force-cancel")
    started = time.monotonic()
    dash.detail.press("confirm")
    return time.monotonic() - started


def test_force_cancel_of_another_machines_run_returns_at_once_and_the_refresh_shows_it_done(remote_run):
    q, dash, run = remote_run
    assert _confirm_force_cancel(dash) < STALE_AFTER / 3
    assert text_of(dash.detail.message) == \
        f"run {run.id}: cancel requested, waiting for machine gpu-x to end it (up to {STALE_AFTER:g} s)"
    assert dash.detail.actions == ()  # asked once: no second request meanwhile
    # gpu-x's worker hears of it with its next heartbeat, ends the tree and records the cancel
    asked = wait_for(lambda: q.store.heartbeat(run.id, run.attempt, None, OTHER.name).cancel, timeout=10)
    by, why = asked
    lifecycle.change(q.store, run.id, [Status.PROCESSING], Change(Status.CANCELLED, by, f"{why}; process tree ended"),
                     "force-cancel", attempt=run.attempt)
    wait_for(lambda: (dash.refresh(), "force-cancelled" in text_of(dash.detail.message))[1], timeout=10)
    assert text_of(dash.detail.message) == f"run {run.id}: force-cancelled"
    assert q.get(run.id).status is Status.CANCELLED
    assert dash.detail.actions == ("delete", "retry")


def test_force_cancel_of_a_silent_machine_is_recorded_after_stale_after_without_blocking(remote_run):
    q, dash, run = remote_run
    assert _confirm_force_cancel(dash) < STALE_AFTER / 3
    deadline = time.monotonic() + 30
    while q.get(run.id).status is Status.PROCESSING and time.monotonic() < deadline:
        q.store.heartbeat(run.id, run.attempt, None, OTHER.name)  # alive, but it never acts
        dash.refresh()  # the page keeps refreshing meanwhile
        assert "cancel requested" in text_of(dash.detail.message) or q.get(run.id).status is Status.CANCELLED
        time.sleep(0.2)
    wait_for(lambda: (dash.refresh(), "force-cancelled" in text_of(dash.detail.message))[1], timeout=10)
    cancelled = q.get(run.id, history=True)
    assert cancelled.status is Status.CANCELLED
    assert cancelled.history[-1]["reason"] == \
        f"force-cancelled by alice; machine gpu-x did not confirm within {STALE_AFTER:g} s"


def test_the_request_stays_shown_when_the_run_is_opened_again(remote_run):
    q, dash, run = remote_run
    _confirm_force_cancel(dash)
    dash.select(None)
    dash.select(run.id)
    assert "cancel requested, waiting for machine gpu-x" in text_of(dash.detail.message)
    assert dash.detail.actions == ()
    asked = wait_for(lambda: q.store.heartbeat(run.id, run.attempt, None, OTHER.name).cancel, timeout=10)
    lifecycle.change(q.store, run.id, [Status.PROCESSING], Change(Status.CANCELLED, asked[0], asked[1]),
                     "force-cancel", attempt=run.attempt)
    wait_for(lambda: (dash.refresh(), "force-cancelled" in text_of(dash.detail.message))[1], timeout=10)
    dash.refresh()  # the outcome, once shown, stays until another action or run replaces it
    assert text_of(dash.detail.message) == f"run {run.id}: force-cancelled"
