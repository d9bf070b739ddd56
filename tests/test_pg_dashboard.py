"""The dashboard unchanged on a PostgreSQL store: rows, labels, counts, actions, pause."""

from __future__ import annotations

import pytest
from dashboard_fixtures import HeldRun, make_notebooks, prepare_home
from helpers import text_of
from test_widgets import EXPECTED

from runtool import RunQueue, Status
from runtool.widgets import Dashboard

pytestmark = [pytest.mark.postgres, pytest.mark.kernel]


def test_the_dashboard_on_postgres(pg_server, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNTOOL_DATABASE_URL", pg_server.new_database())
    home = tmp_path / "home"
    runs = prepare_home(home, make_notebooks(tmp_path / "notebooks"))
    held = HeldRun(home, runs.processing)
    dashes = []
    try:
        alice = Dashboard(home, user="alice", refresh_interval=None)
        dashes.append(alice)
        rows = {row.id: row for row in alice.rows}
        assert [row.id for row in alice.rows] == sorted(rows, reverse=True)
        assert {label: rows[getattr(runs, label)].label for label in EXPECTED} == {label: label for label in EXPECTED}
        assert rows[runs.processing].progress == (2, 5)
        assert rows[runs.failed].error_line == "RuntimeError: boom 3"
        counts = text_of(alice.counts_text)
        assert all(f"{label} 1" in counts for label in EXPECTED)
        for user, column in (("alice", 0), ("bob", 1), ("carol", 2), ("dora", 3)):
            dash = Dashboard(home, user=user, refresh_interval=None)
            dashes.append(dash)
            for label, expected in EXPECTED.items():
                dash.select(getattr(runs, label))
                assert dash.detail.actions == expected[column], (user, label)
        alice._pause_target.value = "hold"
        alice._pause.click()
        assert "paused: hold (by alice)" in text_of(alice.counts_text)
        alice._resume.click()
        bob = dashes[2]
        bob.select(runs.waiting)
        bob.detail.press("cancel")
        with RunQueue(home) as q:
            assert q.get(runs.waiting).status is Status.CANCELLED
            assert q.get(runs.awaiting).status is Status.CANCELLED
        alice.set_filters(text="vision")
        assert [row.id for row in alice.rows] == [runs.succeeded]
    finally:
        for dash in dashes:
            dash.close()
        held.release()
