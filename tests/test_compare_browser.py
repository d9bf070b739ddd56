"""The Compare tab in a real browser: `runtool dashboard` (Voila) in Debian's chromium, over a
sweep of the real training notebook executed by `runtool drain`.

Screenshots go to the test's tmp_path; set RUNTOOL_COMPARE_SCREENSHOT=docs/img/compare.png to
also write the picture of docs/dashboard.md.
"""

from __future__ import annotations

import os
import re

import pytest
from dashboard_fixtures import CHROMIUM, CHROMIUM_ARGS, jupyter_env, require_chromium, run_processes, start, stop

from helpers import RUNTOOL, runtool, wait_for
from runtool.api import RunQueue
from runtool.config import NOTEBOOKS_DIR
from runtool.models import Status
from runtool.serve import free_port

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
    port = free_port()
    log = base / "dashboard.log"
    server = start([*RUNTOOL, "--home", str(home), "dashboard", "--port", str(port), "--no-browser"],
                   jupyter_env(base / "jupyter", "alice"), log)
    try:
        url = wait_for(lambda: re.search(r"at (http://\S+)", log.read_text()), 60, what="the dashboard URL").group(1)
        yield home, url, [r.id for r in sweep]
    finally:
        stop(server)
        left = run_processes(str(home / "runs"))
        for proc in left:
            proc.kill()
        assert not left, f"run processes left: {left}"


@pytest.fixture(scope="module")
def page(served, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    manager = sync_playwright().start()
    context = manager.chromium.launch_persistent_context(
        str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
        args=CHROMIUM_ARGS, viewport={"width": 1360, "height": 1000})
    context.route("https://**/*", lambda route: route.abort())
    context.set_default_timeout(30_000)
    opened = context.new_page()
    opened.goto(served[1])
    opened.locator(".rt-cells[data-run]").first.wait_for(timeout=60_000)
    yield opened
    context.close()
    manager.stop()


def test_compare_tab_plots_accuracy_against_c_and_opens_a_run(served, page, tmp_path):
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
    page.locator(".rt-compare").screenshot(path=str(tmp_path / "compare.png"))
    target = os.environ.get("RUNTOOL_COMPARE_SCREENSHOT")
    if target:
        page.screenshot(path=target, full_page=True)
    page.locator(".rt-compare button.rt-open", has_text=re.compile(rf"^\s*{ids[0]}\s*$")).click()
    page.locator(".rt-detail .rt-title", has_text=f"Run {ids[0]} ").wait_for()
