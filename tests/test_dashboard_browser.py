"""The dashboard in a real browser: `runtool dashboard` (Voila) driven in Debian's chromium.

One home per module: a succeeded and a failed run executed by `runtool drain`, waiting runs
on a queue no worker serves, and a 60 s run kept processing by a real `runtool worker`.
Two dashboards serve it, as alice (admin) and as bob (operator). The tests run in file
order: the last one force-cancels the processing run, then submits a short run from the
form and watches the worker finish it without reloading the page.

Screenshots go to each test's tmp_path; set RUNTOOL_DASHBOARD_SCREENSHOT=docs/dashboard.png
to also write the README's picture.
"""

from __future__ import annotations

import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from dashboard_fixtures import (
    SIDEWAYS_JS,
    chromium,
    jupyter_env,
    make_notebooks,
    no_run_processes_left,
    require_chromium,
    run_processes,
    screenshot,
    serve_dashboard,
    start,
    stop,
)
from helpers import ROLES, RUNTOOL, runtool, wait_for

from runtool.api import RunQueue
from runtool.errors import RunNotFound
from runtool.models import Status

pytestmark = [pytest.mark.browser, pytest.mark.kernel]
RENDER_TIMEOUT_MS = 60_000


@dataclass
class Served:
    home: Path
    notebooks: dict[str, Path]
    urls: dict[str, str]  # user -> page URL
    ids: dict[str, int]  # what the run shows -> run id


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_chromium()
    base = tmp_path_factory.mktemp("dash-browser")
    notebooks = make_notebooks(base / "notebooks")
    home = base / "home"
    home.mkdir()
    (home / "runtool.toml").write_text(ROLES, encoding="utf-8")
    with RunQueue(home, user="alice") as q:
        ok = q.submit(notebooks["sleeper"], {"n": 7}, tags={"team": "vision"})
        bad = q.submit(notebooks["failing"], {"n": 3}, retries=0)
    drained = runtool(home, "drain")
    assert drained.code == 0, drained.err
    with RunQueue(home, user="bob") as q:
        to_cancel = q.submit(notebooks["sleeper"], {"n": 21}, queue="hold")
        to_delete = q.submit(notebooks["sleeper"], {"n": 22}, queue="hold")
        long = q.submit(notebooks["sleeper"], {"n": 8, "sleep": 60.0})
    procs = []
    try:
        worker = start([*RUNTOOL, "--home", str(home), "worker", "--queue", "default", "--poll", "0.2"],
                       jupyter_env(base / "worker", "worker"), base / "worker.log")
        procs.append((worker, 2))

        def long_is_running():
            with RunQueue(home) as q:
                run = q.get(long.id)
            return run.status is Status.PROCESSING and run.progress_total

        wait_for(long_is_running, 60, what="the long run to be processing")
        urls = {}
        for user in ("alice", "bob"):
            server, urls[user] = serve_dashboard(home, base, user)
            procs.append((server, 1))
        yield Served(home, notebooks, urls, {
            "succeeded": ok.id, "failed": bad.id, "to_cancel": to_cancel.id,
            "to_delete": to_delete.id, "processing": long.id})
    finally:
        for proc, signals in reversed(procs):
            stop(proc, signals=signals)
        no_run_processes_left(home)


@pytest.fixture(scope="module")
def browser_context(served, tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def pages(served, browser_context):
    """One open page per user, kept for the whole module (no reloads between tests)."""
    opened = {}
    for user, url in served.urls.items():
        page = browser_context.new_page()
        page.goto(url)
        page.locator(".rt-cells[data-run]").first.wait_for(timeout=RENDER_TIMEOUT_MS)
        opened[user] = page
    return opened


def badge(page, run_id: int):
    return page.locator(f'.rt-cells[data-run="{run_id}"] .rt-badge')


def open_run(page, run_id: int) -> None:
    """Click the run's row button until its detail shows (rows move when a refresh lands)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    button = page.locator("button.rt-open:visible", has_text=re.compile(rf"^\s*{run_id}\s*$"))
    title = page.locator(".rt-detail .rt-title", has_text=f"Run {run_id} ")
    for _ in range(5):
        try:
            button.click(timeout=5_000)
            title.wait_for(timeout=5_000)
            return
        except PlaywrightTimeout:
            continue
    title.wait_for(timeout=1)


def visible_actions(page, expected: list[str]) -> list[str]:
    """The action buttons shown, once they equal `expected` or after 5 s.

    The title of a run is drawn after its buttons, so once open_run saw it, an empty list
    is final; the wait only absorbs a slow page."""
    deadline = time.monotonic() + 5
    while True:
        shown = [t.strip() for t in page.locator(".rt-detail button.rt-action:visible").all_inner_texts()]
        if shown == expected or time.monotonic() > deadline:
            return shown
        page.wait_for_timeout(100)


def shoot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)


def test_page_shows_runs_with_their_labels(served, pages, tmp_path):
    page = pages["alice"]
    ids = served.ids
    expected = {"succeeded": "succeeded", "failed": "failed", "to_cancel": "waiting",
                "to_delete": "waiting", "processing": "processing"}
    for what, label in expected.items():
        assert badge(page, ids[what]).inner_text().strip() == label, what
    assert "RuntimeError: boom 3" in page.locator(f'.rt-cells[data-run="{ids["failed"]}"] + .rt-errline').inner_text()
    processing = page.locator(f'.rt-cells[data-run="{ids["processing"]}"]')
    assert processing.locator("progress").count() == 1
    assert re.fullmatch(r"\d+/\d+", processing.locator(".rt-cellcount").inner_text().strip())
    counts = page.locator(".rt-counts").inner_text()
    assert re.search(r"processing\s*1", counts) and re.search(r"failed\s*1", counts)
    assert re.search(r"waiting\s*2", counts)
    open_run(page, ids["failed"])
    page.locator(".rt-detail .rt-error", has_text="Traceback").wait_for()
    shoot(page, tmp_path / "dashboard-alice.png")
    target = os.environ.get("RUNTOOL_DASHBOARD_SCREENSHOT")
    if target:
        shoot(page, Path(target))


def test_fits_from_800px_with_the_detail_beside_or_under_its_row(served, pages, tmp_path):
    """Voila on a laptop (1366 px): the detail beside the table; at 800 px: under the run's row.
    Nothing scrolls sideways at either width."""
    page, run_id = pages["alice"], served.ids["failed"]
    try:
        page.set_viewport_size({"width": 1366, "height": 900})
        open_run(page, run_id)
        page.locator(".rt-detail .rt-error", has_text="Traceback").wait_for()
        page.wait_for_timeout(300)
        detail = page.locator(".rt-detail").bounding_box()
        row = page.locator(f'.rt-cells[data-run="{run_id}"]').bounding_box()
        assert detail["x"] >= row["x"] + row["width"], (detail, row)  # beside
        head = page.locator(".rt-head").bounding_box()
        assert detail["y"] <= head["y"] + 10 and detail["y"] + 40 < 900  # level with the table's top
        assert page.locator(".rt-dash").evaluate(SIDEWAYS_JS) == []
        screenshot(page, tmp_path, "dashboard-voila-1366.png")
        page.set_viewport_size({"width": 800, "height": 900})
        page.wait_for_timeout(300)
        detail = page.locator(".rt-detail").bounding_box()
        row = page.locator(f'.rt-cells[data-run="{run_id}"]').bounding_box()
        assert 0 <= detail["y"] - (row["y"] + row["height"]) < 60, (detail, row)  # under its row
        assert page.locator(".rt-dash").evaluate(SIDEWAYS_JS) == []
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        screenshot(page, tmp_path, "dashboard-voila-800.png")
        page.locator(".rt-detail button", has_text="Close").first.click()
        page.locator(".rt-detail").wait_for(state="hidden")
    finally:
        page.set_viewport_size({"width": 1360, "height": 1000})


def test_processing_run_offers_no_cancel_or_delete(served, pages, tmp_path):
    run_id = served.ids["processing"]
    open_run(pages["alice"], run_id)
    assert visible_actions(pages["alice"], ["Force cancel"]) == ["Force cancel"]
    open_run(pages["bob"], run_id)
    assert visible_actions(pages["bob"], []) == []  # an operator: no Force cancel either
    open_run(pages["bob"], served.ids["failed"])
    assert visible_actions(pages["bob"], ["Delete", "Retry"]) == ["Delete", "Retry"]
    shoot(pages["bob"], tmp_path / "dashboard-bob.png")


def test_cancel_a_waiting_run_from_the_page(served, pages):
    page, run_id = pages["bob"], served.ids["to_cancel"]
    open_run(page, run_id)
    assert visible_actions(page, ["Cancel", "Delete"]) == ["Cancel", "Delete"]
    page.locator(".rt-detail .rt-action-cancel").click()
    badge(page, run_id).filter(has_text="cancelled").wait_for()
    with RunQueue(served.home) as q:
        assert q.get(run_id).status is Status.CANCELLED
    assert page.locator(".rt-detail .rt-msg-ok", has_text=f"run {run_id}: cancelled").is_visible()


def test_delete_needs_the_confirm_click(served, pages, tmp_path):
    page, run_id = pages["bob"], served.ids["to_delete"]
    open_run(page, run_id)
    page.locator(".rt-detail .rt-action-delete").click()
    confirm = page.locator(".rt-detail .rt-confirm", has_text="Confirm delete")
    confirm.wait_for()
    assert page.locator(".rt-detail .rt-warning").is_visible()
    page.wait_for_timeout(500)
    with RunQueue(served.home) as q:
        assert q.get(run_id).status is Status.WAITING  # the first click changed nothing
    shoot(page, tmp_path / "confirm-delete.png")
    confirm.click()
    page.locator(f'.rt-cells[data-run="{run_id}"]').wait_for(state="detached")
    with RunQueue(served.home) as q, pytest.raises(RunNotFound):
        q.get(run_id)


def test_run_files_and_images(served, pages):
    page, run_id = pages["alice"], served.ids["succeeded"]
    page.locator(f'.rt-cells[data-run="{served.ids["to_delete"]}"]').wait_for(state="detached")
    open_run(page, run_id)
    image = page.locator(".rt-detail img").first
    image.wait_for()
    assert image.evaluate("img => img.naturalWidth") == 48
    link = page.locator(".rt-detail .rt-files a", has_text="output.ipynb")
    href = link.get_attribute("href")
    assert href == f"/voila/files/runs/{run_id}/output.ipynb"
    base = served.urls["alice"].rstrip("/")
    with urllib.request.urlopen(base + href) as answer:
        assert b'"cells"' in answer.read()
    page.locator(".rt-detail button", has_text="Open output notebook").click()
    page.frame_locator("iframe.rt-viewer").locator("text=sleeping").first.wait_for()
    page.locator(".rt-detail button", has_text="Close output notebook").click()
    page.locator("iframe.rt-viewer").wait_for(state="detached")
    for forbidden in ("/voila/files/runtool.db", "/voila/files/runtool.toml", "/voila/files/dashboard.ipynb"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + forbidden)
        assert refused.value.code == 403, forbidden


def test_force_cancel_then_submit_and_watch_it_finish(served, pages, tmp_path):
    page, long_id = pages["alice"], served.ids["processing"]
    open_run(page, long_id)
    page.locator(".rt-detail .rt-action-force-cancel").click()
    warning = page.locator(".rt-detail .rt-warning")
    warning.wait_for()
    assert "ends every process of this run" in warning.inner_text()
    page.locator(".rt-detail .rt-confirm", has_text="End every process").click()
    badge(page, long_id).filter(has_text="cancelled").wait_for()
    with RunQueue(served.home) as q:
        assert q.get(long_id).status is Status.CANCELLED
    wait_for(lambda: not run_processes(str(served.home / "runs" / str(long_id))), 15,
             what="the force-cancelled run's processes to end")

    page.get_by_role("tab", name="Submit").click()
    page.locator(".rt-notebook input").fill(str(served.notebooks["sleeper"]))
    field = page.locator(".rt-param-n input")
    field.wait_for()
    field.fill("31")
    page.locator(".rt-param-sleep input").fill("abc")
    page.locator("button.rt-submit").click()
    refused = page.locator(".rt-msg-error", has_text="bad value 'abc' for parameter 'sleep'")
    refused.wait_for()
    page.locator(".rt-param-sleep input").fill("0.5")
    page.locator("button.rt-submit").click()
    message = page.locator(".rt-msg-ok", has_text="submitted run")
    message.wait_for()
    run_id = int(re.search(r"submitted run (\d+)", message.inner_text()).group(1))
    with RunQueue(served.home) as q:
        run = q.get(run_id)
    assert run.parameters == {"n": 31, "sleep": 0.5} and run.submitted_by == "alice"
    shoot(page, tmp_path / "submitted.png")

    page.get_by_role("tab", name="Runs").click()
    started = time.monotonic()
    badge(page, run_id).filter(has_text="succeeded").wait_for(timeout=60_000)  # no reload
    with RunQueue(served.home) as q:
        assert q.get(run_id).status is Status.SUCCEEDED
    shoot(page, tmp_path / "finished.png")
    assert time.monotonic() - started < 60
    footer = page.locator(".rt-footer").inner_text()
    took = int(re.search(r"refresh took (\d+) ms", footer).group(1))
    assert took < 100, footer


REPO_NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.skipif(not os.environ.get("RUNTOOL_DASHBOARD_SCREENSHOT"),
                    reason="set RUNTOOL_DASHBOARD_SCREENSHOT=docs/dashboard.png to take the README picture")
def test_readme_screenshot(browser_context, tmp_path):
    """The README's picture: the real training and detection notebooks, one of each label."""
    home, training, detection = tmp_path / "home", REPO_NOTEBOOKS / "training.ipynb", REPO_NOTEBOOKS / "detection.ipynb"
    home.mkdir()
    (home / "runtool.toml").write_text(ROLES, encoding="utf-8")
    with RunQueue(home, user="alice") as q:
        trained = q.submit(training, {"C": 10.0}, tags={"project": "digits"})
        shown = q.submit(detection, {"n_scenes": 8}, after=trained.id, tags={"project": "digits"})
        q.submit(detection, {"score_threshold": 1.5}, after=trained.id, retries=0)
    assert runtool(home, "drain").code == 0
    with RunQueue(home, user="bob") as q:
        long = q.submit(detection, {"n_scenes": 3000, "scene_seed": 7}, after=trained.id)
        q.submit(training, {"C": 3.0, "seed": 1}, delay="2h", tags={"project": "digits"})
        waiting = q.submit(training, {"gamma": 0.002}, queue="gpu")
        q.submit(detection, {"nms_iou": 0.5}, after=waiting.id, queue="gpu")
    env = jupyter_env(tmp_path / "jupyter", "alice")
    worker = start([*RUNTOOL, "--home", str(home), "worker", "--queue", "default"], env, tmp_path / "worker.log")
    server = None
    try:
        wait_for(lambda: RunQueue(home).get(long.id).progress_done, 120, what="a processing run")
        server, url = serve_dashboard(home, tmp_path, "alice")
        page = browser_context.new_page()
        page.set_viewport_size({"width": 1360, "height": 1800})
        page.goto(url)
        page.locator(".rt-cells[data-run]").first.wait_for(timeout=RENDER_TIMEOUT_MS)
        open_run(page, shown.id)
        page.locator(".rt-detail img").first.wait_for()
        page.wait_for_timeout(1000)
        shoot(page, Path(os.environ["RUNTOOL_DASHBOARD_SCREENSHOT"]))
        page.close()
    finally:
        if server is not None:
            stop(server)
        stop(worker, signals=2)


if __name__ == "__main__":  # pragma: no cover - `python tests/test_dashboard_browser.py` runs this file
    sys.exit(pytest.main([__file__, "-v"]))
