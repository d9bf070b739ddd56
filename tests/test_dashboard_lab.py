"""The dashboard inside JupyterLab, as a new user opens it: `Dashboard()` in a notebook cell.

One JupyterLab server per module (its own config, data and runtime folders, in its own
session) on a home with a succeeded, a failed and waiting runs; Debian's chromium at
1280 x 900 with the file browser open (JupyterLab's default). The tests run in file order
in one notebook: the layout (nothing scrolls sideways, columns line up, long values
truncated with the full text on hover, the detail opening under its row and closing with
one click), a run finishing while another cell sleeps, then re-runs of the dashboard's cell.

Screenshots go to each test's tmp_path; set RUNTOOL_DASHBOARD_SCREENSHOTS=docs/img to also
write the pictures of docs/dashboard.md.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from dashboard_fixtures import (
    SIDEWAYS_JS,
    chromium,
    jupyter_env,
    make_notebooks,
    require_chromium,
    screenshot,
    start,
    stop,
)
from helpers import ROLES, RUNTOOL, notebook, runtool, wait_for

from runtool.api import RunQueue
from runtool.serve import free_port

pytestmark = [pytest.mark.browser, pytest.mark.kernel]
WIDTH, HEIGHT = 1280, 900
LONG_LABEL = "a-rather-long-label-for-the-augmentation-sweep-" + "x" * 40


@dataclass
class Lab:
    url: str
    home: Path
    notebooks: dict[str, Path]
    ids: dict[str, int]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_chromium()
    base = tmp_path_factory.mktemp("dash-lab")
    notebooks = make_notebooks(base / "notebooks")
    home = base / "home"
    home.mkdir()
    (home / "runtool.toml").write_text(ROLES, encoding="utf-8")
    scored = notebook(base / "notebooks" / "scored.ipynb", parameters="c = 1.0\nrun_dir = ''\n", body=[
        "import json, os\njson.dump({'acc': 1 - 1 / (1 + c)}, open(os.path.join(run_dir, 'metrics.json'), 'w'))"])
    with RunQueue(home, user="alice") as q:
        ok = q.submit(notebooks["sleeper"], {"n": 7, "label": LONG_LABEL}, tags={"team": "vision"})
        bad = q.submit(notebooks["failing"], {"n": 3}, retries=0)
        sweep = q.sweep(scored, grid={"c": [1.0, 10.0]})
    assert runtool(home, "drain").code == 0
    with RunQueue(home, user="bob") as q:
        for n in range(3):
            q.submit(notebooks["sleeper"], {"n": 20 + n}, queue="hold")
    env = jupyter_env(base / "jupyter", "alice")
    config = base / "jupyter" / "config"
    settings = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no "Would you like to receive official Jupyter news?" toast over the screenshots
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8")
    env.update(JUPYTER_CONFIG_DIR=str(config), RUNTOOL_HOME=str(home),
               JUPYTERLAB_SETTINGS_DIR=str(config / "lab" / "user-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(config / "lab" / "workspaces"))
    root = base / "work"
    root.mkdir()
    port = free_port()
    server = start([str(Path(RUNTOOL[0]).with_name("jupyter")), "lab", "--no-browser", f"--port={port}",
                    "--ServerApp.token=", "--ServerApp.password=", "--allow-root",
                    f"--notebook-dir={root}", "--ServerApp.open_browser=False"],
                   env, base / "lab.log")
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url + "/api/status", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_for(answers, 60, what="JupyterLab to answer")
        yield Lab(url, home, notebooks, {"succeeded": ok.id, "failed": bad.id, "scored": sweep[1].id})
    finally:
        stop(server)


@pytest.fixture(scope="module")
def nb(lab, tmp_path_factory):
    """The notebook's page (not pytest-playwright's `page`: this one is JupyterLab's, kept open)."""
    with chromium(tmp_path_factory.mktemp("chromium-profile"), WIDTH, HEIGHT) as context:
        page = context.new_page()
        page.goto(lab.url + "/lab?reset")
        page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click(timeout=90_000)
        kernel_idle(page, 90_000)
        yield page


def kernel_idle(page, timeout: float = 60_000) -> None:
    page.locator("#jp-main-statusbar", has_text="Idle").wait_for(timeout=timeout)


def run_new_cell(page, code: str) -> None:
    """Type `code` into the notebook's last cell and run it (Shift+Enter adds a new last cell)."""
    page.locator(".jp-Notebook .jp-Cell").last.locator(".cm-content").click()
    page.keyboard.insert_text(code)  # no key events: the editor adds no closing brackets
    page.keyboard.press("Shift+Enter")


def rerun_cell(page, index: int) -> None:
    page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content").click()
    page.keyboard.press("Control+Enter")


def output_text(page, index: int) -> str:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea-output").inner_text()


def badge(page, run_id: int):
    return page.locator(f'.rt-cells[data-run="{run_id}"] .rt-badge')


def test_dashboard_fits_the_notebook_at_1280px_with_the_file_browser_open(lab, nb, tmp_path):
    page = nb
    run_new_cell(page, "from runtool.widgets import Dashboard\nDashboard()")
    page.locator(".rt-cells[data-run]").first.wait_for(timeout=60_000)
    kernel_idle(page)
    assert page.locator(".jp-FileBrowser").is_visible()  # the sidebar is open, as by default
    dash = page.locator(".rt-dash")
    width = dash.evaluate("el => el.getBoundingClientRect().width")
    assert width < 900, width  # the notebook's width with the sidebar open, not the window's
    assert dash.evaluate(SIDEWAYS_JS) == []
    output = page.locator(".jp-OutputArea-output").first
    assert output.evaluate(SIDEWAYS_JS) == []

    # header and rows line up, column by column; "submitted by" gave way first
    shown = ("cs => cs.filter(c => getComputedStyle(c).display !== 'none')"
             ".map(c => [Math.round(c.getBoundingClientRect().left), c.innerText])")
    head = page.locator(".rt-head .rt-c").evaluate_all(shown)
    row = page.locator(f'.rt-cells[data-run="{lab.ids["succeeded"]}"] .rt-c').evaluate_all(shown)
    assert [left for left, _ in head] == [left for left, _ in row]
    titles = [text for _, text in head]
    assert "submitted by" not in titles and {"status", "parameters", "duration"} <= set(titles), titles

    # a long value is cut with an ellipsis and whole on hover
    params = page.locator(f'.rt-cells[data-run="{lab.ids["succeeded"]}"] .rt-params')
    assert params.evaluate("el => el.scrollWidth > el.clientWidth")
    assert LONG_LABEL in params.get_attribute("title")
    screenshot(page, tmp_path, "dashboard-lab-1280.png")

    # the detail opens right under the clicked row, in sight, and one click closes it
    failed = lab.ids["failed"]
    page.locator("button.rt-open", has_text=re.compile(rf"^\s*{failed}\s*$")).click()
    title = page.locator(".rt-detail .rt-title", has_text=f"Run {failed} ")
    title.wait_for()
    row_box = page.locator(f'.rt-cells[data-run="{failed}"]').bounding_box()
    title_box = title.bounding_box()
    assert 0 <= title_box["y"] - (row_box["y"] + row_box["height"]) < 80, (row_box, title_box)
    assert title_box["y"] + title_box["height"] < HEIGHT  # in the window without scrolling
    page.locator(".rt-detail .rt-error", has_text="Traceback").wait_for()
    assert dash.evaluate(SIDEWAYS_JS) == []
    screenshot(page, tmp_path, "dashboard-lab-1280-detail.png")
    page.locator(".rt-detail button", has_text="Close").first.click()
    page.locator(".rt-detail").wait_for(state="hidden")


def test_a_run_finishing_while_another_cell_sleeps_shows_up(lab, nb, tmp_path):
    page = nb
    run_new_cell(page, "import time\ntime.sleep(40)")
    page.locator("#jp-main-statusbar", has_text="Busy").wait_for()
    busy_since = time.monotonic()
    with RunQueue(lab.home, user="alice") as q:
        run = q.submit(lab.notebooks["sleeper"], {"n": 41})
    badge(page, run.id).filter(has_text="waiting").wait_for(timeout=10_000)
    seen_waiting = time.monotonic()
    done = runtool(lab.home, "drain", "--queue", "default")
    assert done.code == 0, done.err
    finished = time.monotonic()
    badge(page, run.id).filter(has_text="succeeded").wait_for(timeout=10_000)
    shown = time.monotonic()
    print(f"\nwaiting run shown {seen_waiting - busy_since:.1f} s after the sleep began; "
          f"succeeded shown {shown - finished:.1f} s after drain returned")
    assert shown - busy_since < 38  # all while the other cell still sleeps
    assert page.locator("#jp-main-statusbar", has_text="Busy").is_visible()
    assert shown - finished < 5  # refreshes every 3 s
    assert "checked every 3 s" in page.locator(".rt-footer").first.inner_text()
    screenshot(page, tmp_path, "dashboard-lab-busy.png")
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("i")
    page.keyboard.press("i")  # interrupt the sleep
    kernel_idle(page)


def test_rerunning_the_cell_leaves_one_refresh(lab, nb):
    page = nb
    for _ in range(2):
        rerun_cell(page, 0)
        kernel_idle(page)
    page.locator(".rt-dash").first.wait_for()
    assert page.locator(".rt-dash").count() == 1
    run_new_cell(page, "from runtool.dashrefresh import live_refreshers\n"
                       "print('refreshers:', len(live_refreshers()))")
    kernel_idle(page)
    assert output_text(page, -2).strip() == "refreshers: 1"
    # the one left still refreshes
    with RunQueue(lab.home, user="alice") as q:
        run = q.submit(lab.notebooks["sleeper"], {"n": 42}, queue="hold")
    badge(page, run.id).wait_for(timeout=10_000)


def test_compare_points_open_their_run_in_jupyterlab(lab, nb, tmp_path):
    """The Compare plot's points are buttons laid over the SVG: they sit on their points and
    open their runs in JupyterLab's output area too (no script in the output)."""
    page, run_id = nb, lab.ids["scored"]
    dash = page.locator(".rt-dash").first
    dash.get_by_role("tab", name="Compare").click()
    dash.locator(".rt-cmp-kind select").select_option("scored")
    dash.locator(".rt-cmp-against select").select_option("c")
    dot = dash.locator(f'.rt-cmp-canvas button.rt-cmp-dot[title*="open run {run_id})"]')
    dot.wait_for()
    dot.scroll_into_view_if_needed()
    circle = dash.locator(f'.rt-cmp-point[data-run="{run_id}"] circle').bounding_box()
    box = dot.bounding_box()
    assert abs(box["x"] + box["width"] / 2 - (circle["x"] + circle["width"] / 2)) < 2
    assert abs(box["y"] + box["height"] / 2 - (circle["y"] + circle["height"] / 2)) < 2
    assert dash.evaluate(SIDEWAYS_JS) == []
    screenshot(page, tmp_path, "dashboard-lab-compare.png")
    dot.click()
    dash.locator(".rt-detail .rt-title", has_text=f"Run {run_id} ").wait_for()
