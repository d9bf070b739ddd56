"""The runs table's metric columns, without a browser or a kernel: a home whose runs were
recorded through the store as a worker records them (metrics with the finishing change)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtool import dashview, lifecycle
from runtool.api import RunQueue
from runtool.models import Change, Claimant, NewRun, Status
from runtool.widgets import Dashboard

ME = Claimant("test:1", os.getpid(), 0.0, "m1")
#: accuracy per run, oldest first; None: the run recorded other metrics only
ACCURACY = [0.5, None, 0.9, 0.1, 0.7, 0.3, None]


def record(q: RunQueue, kind: str, metrics: dict[str, float] | None, n: int) -> int:
    new = NewRun(notebook=f"/nb/{kind}.ipynb", kind=kind, queue="default", priority=0,
                 parameters={"n": n}, tags={}, max_attempts=1)
    run_id = lifecycle.submit(q.store, new, "alice").id
    if metrics is not None:
        assert q.store.claim([], ME) is not None
        lifecycle.change(q.store, run_id, [Status.PROCESSING],
                         Change(Status.SUCCEEDED, "w", "ok", metrics=metrics), "record")
    return run_id


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, list[int]]:
    home = tmp_path / "home"
    with RunQueue(home, user="alice") as q:
        ids = [record(q, "train", {"loss": 1.0 - i / 10} if acc is None else {"accuracy": acc, "loss": 1 - acc}, i)
               for i, acc in enumerate(ACCURACY)]
        record(q, "export", {"size": 3.0}, 99)
        ids.append(record(q, "train", None, 100))  # waiting: no metrics yet
    return home, ids


@pytest.fixture
def dash(home):
    made = Dashboard(home[0], user="alice", refresh_interval=None, page_size=3)
    yield made
    made.close()


def shown_ids(dash: Dashboard) -> list[int]:
    return [row.id for row in dash.rows]


def test_one_kind_shows_its_metrics_as_columns(dash, home):
    assert dash.metric_columns == []  # any kind: no metric columns
    dash.set_filters(kind="train")
    assert dash.metric_columns == ["loss", "accuracy"]  # as the newest finished runs recorded them
    newest = dash.rows[1]
    assert newest.metrics == (("0.4", "0.4"), ("", ""))  # the newest finished run has no accuracy
    assert [b.description for b in dash.table._metric_head.children] == ["loss", "accuracy"]
    assert "rt-with-metrics" in dash.table._dom_classes
    dash.set_filters(kind="export")
    assert dash.metric_columns == ["size"]
    dash.set_filters()
    assert dash.metric_columns == [] and "rt-with-metrics" not in dash.table._dom_classes


def test_a_header_click_sorts_in_the_store_and_pages(dash, home):
    _, ids = home
    dash.set_filters(kind="train")
    by_accuracy = [ids[i] for i in (2, 4, 0, 5, 3)] + [ids[7], ids[6], ids[1]]  # no accuracy: last, newest first
    accuracy = next(b for b, name in dash.table._sort_buttons.items() if name == "accuracy")
    accuracy.click()
    assert dash.sort == ("accuracy", True) and accuracy.description == "▼ accuracy"
    assert shown_ids(dash) == by_accuracy[:3]
    dash.table._older.click()
    assert shown_ids(dash) == by_accuracy[3:6] and dash.page_text == "4–6 of 8"
    dash.table._older.click()
    assert shown_ids(dash) == by_accuracy[6:]
    accuracy.click()  # again: lowest first, from the first page
    assert dash.sort == ("accuracy", False) and accuracy.description == "▲ accuracy"
    assert shown_ids(dash) == [ids[3], ids[5], ids[0]]
    dash.sort_by("loss")
    assert accuracy.description == "accuracy" and shown_ids(dash)[:1] == [ids[3]]  # highest loss first
    dash.set_filters(kind="export")
    assert dash.sort is None  # export has no loss: newest first again


def test_row_html_has_the_metric_cells_with_full_values_on_hover():
    row = dashview.RowView(1, "k", "", "{}", "succeeded", "succeeded", None, "a", "", "", "",
                           "", metrics=(("0.333333", "0.3333333333"), ("", "")))
    html = dashview.row_html(row)
    assert '<span class="rt-mcells"><span class="rt-c rt-metric" title="0.3333333333">0.333333</span>' in html
    assert dashview.sort_label("acc", ("acc", True)) == "▼ acc" and dashview.sort_label("acc", ("x", True)) == "acc"


def test_compare_plot_points_are_buttons_that_open_their_run(dash, home):
    import re

    from runtool.widgets_compare import HEIGHT, TIME, WIDTH

    _, ids = home
    dash.set_filters(kind="train")
    dash.show_tab("Compare")
    dash.compare.choose(metric="accuracy", against=TIME)
    svg = dash.compare.plot_html
    circles = {int(run): (float(x), float(y)) for run, x, y in re.findall(
        r'data-run="(\d+)"><title>[^<]*</title><circle cx="([\d.]+)" cy="([\d.]+)"', svg)}
    canvas = dash.compare._plot
    assert sorted(canvas._run_of.values()) == sorted(circles) == sorted(ids[i] for i in (0, 2, 3, 4, 5))
    # each button sits on its point, in percent of the plot: within the rounding of the SVG's
    # coordinates (0.1 px) and of the percentages (0.01 %), far less than a point's 5 px radius
    for button, run_id in canvas._run_of.items():
        x, y = circles[run_id]
        assert abs(float(button.layout.left.rstrip("%")) - x / WIDTH * 100) < 0.05
        assert abs(float(button.layout.top.rstrip("%")) - y / HEIGHT * 100) < 0.05
        assert f"open run {run_id}" in button.tooltip
    dash.compare.open_point(ids[4])
    assert dash.detail.run_id == ids[4] and dash._tabs.selected_index == 0
    dash.show_tab("Compare")
    dash.compare.choose(metric="loss")  # seven points: the pool grows; fewer again: the rest hide
    assert len([b for b in canvas._buttons if b.layout.display != "none"]) == 7
    dash.compare.choose(metric="accuracy")
    assert len([b for b in canvas._buttons if b.layout.display != "none"]) == 5


def test_a_sorted_page_is_read_again_only_when_runs_changed(dash, home):
    import psutil

    from runtool.lock import ExecutorLock

    path, ids = home
    lock = ExecutorLock(path / "executor.lock")  # held, as a worker executing a run holds it
    assert lock.try_acquire("test")
    try:
        me = psutil.Process()
        with RunQueue(path, user="alice") as q:
            run = q.store.claim([], Claimant(f"test:{me.pid}", me.pid, me.create_time(), "m1"))
            assert run is not None and run.id == ids[7]
            dash.set_filters(kind="train", status="processing")
            dash.sort_by("accuracy")
            assert [(r.id, r.progress) for r in dash.rows] == [(run.id, None)]
            # its progress shows on the sorted page though no count changed
            q.store.heartbeat(run.id, run.attempt, (2, 5))
            dash.refresh()
            assert [(r.id, r.progress) for r in dash.rows] == [(run.id, (2, 5))]
            dash.set_filters(kind="train")
            assert dash.sort == ("accuracy", True) and shown_ids(dash)[0] == ids[2]
            best = record(q, "train", {"accuracy": 0.99}, 50)  # new and finished: counts and newest id move
            dash.refresh()
            assert shown_ids(dash)[0] == best
    finally:
        lock.release()
