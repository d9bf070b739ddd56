"""Metrics in a real browser: `runtool dashboard` (Voila) in Debian's chromium, over a sweep of
the real training notebook executed by `runtool drain`: the runs table's sortable metric
columns, and the Compare tab's plot whose points open their runs.

Screenshots go to the test's tmp_path; set RUNTOOL_DASHBOARD_SCREENSHOTS=docs/img to also
write the pictures of docs/dashboard.md (RUNTOOL_COMPARE_SCREENSHOT=docs/img/compare.png: the
whole page with the Compare tab).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dashboard_fixtures import (
    SIDEWAYS_JS,
    chromium,
    no_run_processes_left,
    require_chromium,
    screenshot,
    serve_dashboard,
    stop,
)

from helpers import runtool, wait_for
from runtool.api import RunQueue
from runtool.config import NOTEBOOKS_DIR
from runtool.models import Status

pytestmark = [pytest.mark.browser, pytest.mark.kernel]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_chromium()
    base = tmp_path_factory.mktemp("compare-browser")
    home = base / "home"
    with RunQueue(home, user="alice") as q:
        sweep = q.sweep(NOTEBOOKS_DIR / "training.ipynb", grid={"C": [0.1, 1.0, 10.0, 100.0]},
                        parameters={"gamma": 0.001}, tags={"project": "digits"})
        q.submit(NOTEBOOKS_DIR / "detection.ipynb", {"n_scenes": 2}, after=[r.id for r in sweep])
    drained = runtool(home, "drain", timeout=600)
    assert drained.code == 0, drained.err
    with RunQueue(home) as q:
        assert all(q.get(r.id).status is Status.SUCCEEDED for r in sweep)
    server, url = serve_dashboard(home, base, "alice")
    try:
        yield home, url, [r.id for r in sweep]
    finally:
        stop(server)
        no_run_processes_left(home)


@pytest.fixture(scope="module")
def page(served, tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        opened = context.new_page()
        opened.goto(served[1])
        opened.locator(".rt-cells[data-run]").first.wait_for(timeout=60_000)
        yield opened


def table_ids(page) -> list[int]:
    """Run ids of the runs table, top to bottom, as the page shows them."""
    return [int(i) for i in page.locator(".rt-runs .rt-cells[data-run]").evaluate_all(
        "cells => cells.map(c => c.dataset.run)")]


def expected_order(home: Path, ids: list[int], metric: str, descending: bool) -> list[int]:
    """The order the store promises: by the metric, equal values newest first."""
    with RunQueue(home) as q:
        value = {i: q.get(i).metrics[metric] for i in ids}
    return sorted(ids, key=lambda i: (-value[i] if descending else value[i], -i))


def test_one_kind_shows_sortable_metric_columns(served, page, tmp_path):
    home, _, ids = served
    page.locator(".rt-filter-kind select").select_option("training")
    head = page.locator(".rt-mhead button.rt-msort")
    head.first.wait_for()
    names = [t.strip() for t in head.all_inner_texts()]
    assert "accuracy" in names and "fit_seconds" in names, names
    wait_for(lambda: sorted(table_ids(page)) == sorted(ids), 15, what="the training runs only")
    cell = page.locator(f'.rt-runs .rt-cells[data-run="{ids[0]}"] .rt-metric').nth(names.index("accuracy"))
    with RunQueue(home) as q:
        assert cell.get_attribute("title") == repr(q.get(ids[0]).metrics["accuracy"])
    page.locator(".rt-mhead button.rt-msort", has_text="accuracy").click()
    page.locator(".rt-mhead button.rt-msort", has_text="▼ accuracy").wait_for()
    highest = expected_order(home, ids, "accuracy", descending=True)
    wait_for(lambda: table_ids(page) == highest, 15, what="highest accuracy first")
    page.locator(".rt-mhead button.rt-msort", has_text="accuracy").click()
    page.locator(".rt-mhead button.rt-msort", has_text="▲ accuracy").wait_for()
    lowest = expected_order(home, ids, "accuracy", descending=False)
    wait_for(lambda: table_ids(page) == lowest, 15, what="lowest accuracy first")
    assert lowest != highest
    page.locator(".rt-mhead button.rt-msort", has_text="fit_seconds").click()
    wait_for(lambda: table_ids(page) == expected_order(home, ids, "fit_seconds", True), 15, what="by fit_seconds")
    page.locator(".rt-mhead button.rt-msort", has_text="accuracy").click()
    wait_for(lambda: table_ids(page) == highest, 15, what="highest accuracy first again")
    try:
        for width in (1366, 800):
            page.set_viewport_size({"width": width, "height": 800})
            page.wait_for_timeout(400)
            assert page.locator(".rt-dash").evaluate(SIDEWAYS_JS) == []
            assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
            heads = [b.bounding_box() for b in head.all()]
            cells = [c.bounding_box() for c in page.locator(f'.rt-runs .rt-cells[data-run="{ids[0]}"] .rt-metric').all()]
            assert [round(h["x"]) for h in heads] == [round(c["x"]) for c in cells]  # the columns line up
            shown = ("cs => cs.filter(c => getComputedStyle(c).display !== 'none')"
                     ".map(c => Math.round(c.getBoundingClientRect().left))")
            head_cells = page.locator(".rt-head .rt-c").evaluate_all(shown)
            assert head_cells == page.locator(f'.rt-runs .rt-cells[data-run="{ids[0]}"] .rt-c:not(.rt-metric)'
                                              ).evaluate_all(shown)
            screenshot(page, tmp_path, f"metrics-voila-{width}.png")
    finally:
        page.set_viewport_size({"width": 1360, "height": 1000})


def test_compare_tab_plots_accuracy_against_c_and_its_points_open_runs(served, page, tmp_path):
    _, _, ids = served
    page.get_by_role("tab", name="Compare").click()
    page.locator(".rt-cmp-kind select").select_option("training")
    page.locator(".rt-cmp-metric select").select_option("accuracy")
    page.locator(".rt-cmp-against select").select_option("C")
    plot = page.locator(".rt-cmp-plot")
    wait_for(lambda: plot.count() and "C (log scale)" in plot.text_content(), 30, what="the plot against C")
    points = page.locator(".rt-cmp-plot .rt-cmp-point")
    assert sorted(int(p.get_attribute("data-run")) for p in points.all()) == sorted(ids)
    page.locator(".rt-compare button.rt-cmp-sort", has_text="accuracy").click()
    page.locator(".rt-compare button.rt-cmp-sort", has_text="accuracy ▼").wait_for()
    shown = [int(t) for t in page.locator(".rt-compare button.rt-open:visible").all_inner_texts()]
    with RunQueue(served[0]) as q:
        accuracies = [q.get(i).metrics["accuracy"] for i in shown]
    assert sorted(shown) == sorted(ids) and accuracies == sorted(accuracies, reverse=True)
    # every point has a button right over its circle
    dots = page.locator(".rt-cmp-canvas button.rt-cmp-dot:visible")
    wait_for(lambda: dots.count() == len(ids), 15, what="a button over each point")
    for run_id in ids:
        circle = page.locator(f'.rt-cmp-point[data-run="{run_id}"] circle').bounding_box()
        dot = page.locator(f'.rt-cmp-canvas button.rt-cmp-dot[title*="open run {run_id})"]').bounding_box()
        centre = (circle["x"] + circle["width"] / 2, circle["y"] + circle["height"] / 2)
        assert abs(dot["x"] + dot["width"] / 2 - centre[0]) < 2 and abs(dot["y"] + dot["height"] / 2 - centre[1]) < 2
    page.locator(".rt-compare").screenshot(path=str(tmp_path / "compare.png"))
    target = os.environ.get("RUNTOOL_COMPARE_SCREENSHOT")
    if target:
        page.screenshot(path=target, full_page=True)
    for width in (1366, 800):  # the plot scales with the page; its buttons stay on their points
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(400)
        assert page.locator(".rt-dash").evaluate(SIDEWAYS_JS) == []
        screenshot(page, tmp_path, f"compare-voila-{width}.png")
    page.set_viewport_size({"width": 1360, "height": 1000})
    page.wait_for_timeout(300)
    # the plot's point of a run (not the table's row) opens it in the Runs tab
    page.locator(f'.rt-cmp-canvas button.rt-cmp-dot[title*="open run {ids[2]})"]').click()
    page.locator(".rt-detail .rt-title", has_text=f"Run {ids[2]} ").wait_for()
    assert page.get_by_role("tab", name="Runs").get_attribute("aria-selected") == "true"
    page.get_by_role("tab", name="Compare").click()
    page.locator(".rt-compare button.rt-open", has_text=re.compile(rf"^\s*{ids[0]}\s*$")).click()
    page.locator(".rt-detail .rt-title", has_text=f"Run {ids[0]} ").wait_for()
