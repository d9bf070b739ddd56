"""The dashboard's widgets without a browser: the model of the page for each status and role.

A real home (real runs executed by `runtool drain`) is prepared once per module and copied
for each test; the dashboard is driven through its public methods and button clicks.
"""

from __future__ import annotations

import asyncio
import html
from pathlib import Path
import json
import re
import socket
import subprocess
import sys
import time

import hypothesis.strategies as st
import psutil
import pytest
from dashboard_fixtures import HeldRun, copy_home, make_notebooks, prepare_home
from helpers import runtool, text_of
from hypothesis import HealthCheck, given, settings
from traitlets import All

from runtool import dashview, serve
from runtool.api import RunQueue
from runtool.errors import RunNotFound, RuntoolError
from runtool.models import Claimant, Status
from runtool.params import Parameter
from runtool.submitform import changed_parameters, default_text, form_value, in_form_words
from runtool.dashrefresh import live_refreshers
from runtool.widgets import Dashboard
from runtool.widgets_detail import notebook_html


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    base = tmp_path_factory.mktemp("dash-template")
    notebooks = make_notebooks(base / "notebooks")
    runs = prepare_home(base / "home", notebooks)
    return base / "home", runs, notebooks


@pytest.fixture
def home(template, tmp_path):
    """A copy of the prepared home whose `processing` run is held by this process."""
    source, runs, _ = template
    target = copy_home(source, tmp_path / "home")
    held = HeldRun(target, runs.processing)
    yield target
    held.release()


@pytest.fixture
def runs(template):
    return template[1]


@pytest.fixture
def notebooks(template):
    return template[2]


@pytest.fixture
def open_dash(home):
    made = []

    def make(user="alice", **kwargs):
        dash = Dashboard(home, user=user, refresh_interval=None, **kwargs)
        made.append(dash)
        return dash

    yield make
    for dash in made:
        dash.close()


# -- rows and counts ---------------------------------------------------------------------

def test_rows_newest_first_with_labels_progress_and_errors(open_dash, runs):
    dash = open_dash("carol")
    rows = {row.id: row for row in dash.rows}
    assert [row.id for row in dash.rows] == sorted(rows, reverse=True)
    assert {rows[runs.succeeded].label, rows[runs.failed].label, rows[runs.retrying].label,
            rows[runs.cancelled].label, rows[runs.processing].label, rows[runs.waiting].label,
            rows[runs.scheduled].label, rows[runs.awaiting].label} == {
        "succeeded", "failed", "retrying", "cancelled", "processing", "waiting", "scheduled", "awaiting"}
    assert rows[runs.scheduled].label == "scheduled" and rows[runs.awaiting].label == "awaiting"
    assert rows[runs.retrying].label == "retrying" and rows[runs.waiting].label == "waiting"
    assert rows[runs.processing].progress == (2, 5)
    assert all(row.progress is None for row in dash.rows if row.id != runs.processing)
    assert rows[runs.failed].error_line == "RuntimeError: boom 3"  # the first line only
    assert rows[runs.retrying].error_line == "RuntimeError: boom 4"
    assert rows[runs.succeeded].error_line == ""
    assert rows[runs.succeeded].duration.endswith("s") and rows[runs.waiting].duration == ""
    assert rows[runs.succeeded].parameters == "n=7" and rows[runs.succeeded].submitted_by == "alice"
    cells = dashview.row_html(rows[runs.processing])
    assert '<progress value="2" max="5">' in cells and "2/5" in cells


def test_counts_at_the_top_and_paused_queues_marked(open_dash, home, runs):
    dash = open_dash("alice")
    counts = text_of(dash.counts_text)
    for name in ("waiting 1", "scheduled 1", "awaiting 1", "retrying 1", "processing 1",
                 "succeeded 1", "failed 1", "cancelled 1"):
        assert name in counts
    assert "paused" not in counts
    assert dash.admin_controls
    dash._pause_target.value = "hold"
    dash._pause.click()
    assert "paused: hold (by alice)" in text_of(dash.counts_text)
    rows = {row.id: row for row in dash.rows}
    assert rows[runs.waiting].label == "waiting (paused)"
    assert rows[runs.scheduled].label == "scheduled"  # another queue
    dash._resume.click()
    assert "paused" not in text_of(dash.counts_text)


def test_viewers_and_operators_get_no_queue_controls(open_dash, home):
    assert not open_dash("carol").admin_controls
    bob = open_dash("bob")
    assert not bob.admin_controls
    with pytest.raises(RuntoolError, match="may not pause"):
        bob.queue.pause()


# -- actions per status and role ---------------------------------------------------------

EXPECTED = {  # label -> actions an admin / operator / viewer / analyst (delete:sleeper) gets
    "succeeded": (("delete",), ("delete",), (), ("delete",)),
    "failed": (("delete", "retry"), ("delete", "retry"), (), ()),
    "retrying": (("cancel", "delete"), ("cancel", "delete"), (), ()),
    "cancelled": (("delete", "retry"), ("delete", "retry"), (), ("delete",)),
    "processing": (("force-cancel",), (), (), ()),
    "waiting": (("cancel", "delete"), ("cancel", "delete"), (), ("delete",)),
    "scheduled": (("cancel", "delete"), ("cancel", "delete"), (), ("delete",)),
    "awaiting": (("cancel", "delete"), ("cancel", "delete"), (), ("delete",)),
}


@pytest.mark.parametrize("user,column", [("alice", 0), ("bob", 1), ("carol", 2), ("dora", 3)],
                         ids=["admin", "operator", "viewer", "custom-role"])
def test_actions_offered_by_status_and_role(open_dash, runs, user, column):
    dash = open_dash(user)
    for label, expected in EXPECTED.items():
        dash.select(getattr(runs, label))
        assert dash.detail.actions == expected[column], (user, label)


def test_cancel_a_waiting_run(open_dash, home, runs):
    dash = open_dash("bob")
    dash.select(runs.waiting)
    dash.detail.press("cancel")
    with RunQueue(home) as q:
        assert q.get(runs.waiting).status is Status.CANCELLED
        # its continuation (awaiting run) is cancelled with it, by the library
        assert q.get(runs.awaiting).status is Status.CANCELLED
    assert "cancelled" in text_of(dash.detail.message)
    assert {row.id: row.label for row in dash.rows}[runs.waiting] == "cancelled"
    assert dash.detail.actions == ("delete", "retry")


def test_delete_needs_a_confirming_click(open_dash, home, runs):
    dash = open_dash("bob")
    dash.select(runs.succeeded)
    run_dir = home / "runs" / str(runs.succeeded)
    assert run_dir.is_dir()
    dash.detail.press("delete")
    assert dash.detail.confirming == "delete"
    with RunQueue(home) as q:
        assert q.get(runs.succeeded).status is Status.SUCCEEDED  # nothing happened yet
    dash.detail.press("back")
    assert dash.detail.confirming is None
    dash.detail.press("delete")
    dash.detail.press("confirm")
    with RunQueue(home) as q, pytest.raises(RunNotFound):
        q.get(runs.succeeded)
    assert not run_dir.exists()
    assert runs.succeeded not in [row.id for row in dash.rows]
    assert "deleted" in text_of(dash.detail.message)


def test_refused_action_shows_the_library_message(open_dash, home, runs):
    dash = open_dash("bob")
    dash.select(runs.waiting)
    assert "cancel" in dash.detail.actions
    with RunQueue(home, user="alice") as other:  # someone else acts first
        other.cancel(runs.waiting)
        with pytest.raises(RuntoolError) as refused:
            other.cancel(runs.waiting)
    dash.detail.press("cancel")
    assert text_of(dash.detail.message) == str(refused.value)
    assert "cancel" not in dash.detail.actions  # redrawn from the new status


def test_retry_a_failed_run(open_dash, home, runs):
    dash = open_dash("bob")
    dash.select(runs.failed)
    dash.detail.press("retry")
    with RunQueue(home) as q:
        run = q.get(runs.failed)
    assert run.status is Status.WAITING and run.attempt == 0
    assert {row.id: row.label for row in dash.rows}[runs.failed] == "waiting"


def test_force_cancel_warns_then_ends_the_run(open_dash, home, runs):
    dash = open_dash("alice")
    dash.select(runs.processing)
    dash.detail.press("force-cancel")
    assert dash.detail.confirming == "force-cancel"
    assert "ends every process of this run" in dash.detail._warning.value
    with RunQueue(home) as q:
        assert q.get(runs.processing).status is Status.PROCESSING
    dash.detail.press("confirm")
    with RunQueue(home) as q:
        run = q.get(runs.processing, history=True)
    assert run.status is Status.CANCELLED
    assert run.history[-1]["reason"].startswith("force-cancelled by alice")


# -- the detail pane ---------------------------------------------------------------------

def test_detail_shows_parameters_history_error_logs_files_and_images(open_dash, runs):
    dash = open_dash("alice")
    dash.select(runs.failed)
    detail = dash.detail
    assert "RuntimeError in cell 4: boom 3" in text_of(detail._error.value)
    assert "Traceback" in detail._error.value and "\x1b[" not in detail._error.value
    history = text_of(detail._history.value)
    assert "submitted" in history and "attempt 1 of 1" in history
    assert "about to fail" in detail._logs.value
    assert "output.ipynb" in detail._files.value and "error.txt" in detail._files.value
    assert 'href="data:application/x-ipynb+json;base64,' in detail._files.value  # no Voila: inline
    dash.select(runs.succeeded)
    assert '"n": 7' in html.unescape(detail._info.value) and "vision" in detail._info.value
    shown = [img for img, box in zip(detail._images, detail._gallery.children) if box.layout.display != "none"]
    assert len(shown) == 1 and bytes(shown[0].value).startswith(b"\x89PNG") and shown[0].format == "png"
    detail._open_output.click()
    assert "<iframe" in detail._viewer.value and "srcdoc=" in detail._viewer.value


def test_output_notebook_is_rendered_self_contained(runs, home):
    """No script, style or font from a CDN: many lab machines have no internet."""
    with RunQueue(home) as q:
        page = notebook_html(Path(q.get(runs.succeeded).output_path))
    assert "<script" not in page.lower()
    assert not re.search(r"""<(link|img|iframe|source|video|audio)\b[^>]*(src|href)=["']?(https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", page, re.I)
    assert "default-src 'none'" in page  # and the page may fetch nothing, should anything remain


def test_close_closes_every_widget(home):
    dash = Dashboard(home, user="alice", refresh_interval=None)
    parts = list(_tree(dash))
    dash.close()
    assert all(part.comm is None for part in parts)


def test_detail_links_into_voila_when_served(home, runs, monkeypatch):
    monkeypatch.setenv("RUNTOOL_DASHBOARD_ROOT", str(home))
    monkeypatch.setenv("RUNTOOL_DASHBOARD_FILES", "/voila/files/")
    dash = Dashboard(home, user="alice", refresh_interval=None)
    try:
        dash.select(runs.succeeded)
        links = dash.detail._files.value
        assert f'href="/voila/files/runs/{runs.succeeded}/output.ipynb"' in links
        assert f'download="run-{runs.succeeded}-output.ipynb"' in links
    finally:
        dash.close()


def test_deleted_elsewhere_closes_gracefully(open_dash, home, runs):
    dash = open_dash("bob")
    dash.select(runs.cancelled)
    with RunQueue(home, user="bob") as other:
        other.delete(runs.cancelled)
    dash.refresh()
    assert dash.detail.actions == ()
    assert "not found" in text_of(dash.detail.message)


# -- filters, search, paging -------------------------------------------------------------

def test_filters_search_and_paging(open_dash, runs):
    dash = open_dash("carol", page_size=3)
    assert len(dash.rows) == 3 and text_of(dash.page_text) == "1–3 of 8"
    dash.table._older.click()
    assert text_of(dash.page_text) == "4–6 of 8"
    dash.set_filters(status="failed")
    assert [row.id for row in dash.rows] == [runs.failed]
    dash.set_filters(kind="failing")
    assert [row.id for row in dash.rows] == [runs.retrying, runs.failed]
    dash.set_filters(queue="hold")
    assert [row.id for row in dash.rows] == [runs.awaiting, runs.waiting]
    dash.set_filters(text="vision")  # a tag
    assert [row.id for row in dash.rows] == [runs.succeeded]
    dash.set_filters(text='"n": 10')  # parameters
    assert [row.id for row in dash.rows] == [runs.scheduled]
    dash.set_filters(text="failing.ipynb")  # the notebook
    assert {row.id for row in dash.rows} == {runs.failed, runs.retrying}
    dash.set_filters(text="no such thing")
    assert dash.rows == [] and text_of(dash.page_text) == "no runs match"
    dash.set_filters(text="failing*")  # a prefix: the notebook failing.ipynb
    assert {row.id for row in dash.rows} == {runs.failed, runs.retrying}
    # the controls do the same as set_filters
    dash.set_filters()
    dash._status.value = "cancelled"
    assert [row.id for row in dash.rows] == [runs.cancelled]
    assert {value for _, value in dash._kind.options} == {"", "sleeper", "failing"}


def test_refresh_redraws_only_rows_that_changed(open_dash, home, runs):
    dash = open_dash("carol")
    sent = []
    for row in dash.table._rows:
        row.cells.observe(lambda change, row=row: sent.append(row.view.id), "value")
    dash._counts.observe(lambda change: sent.append("counts"), "value")
    dash.refresh()
    dash.refresh()
    assert set(sent) <= {runs.processing}  # only its running duration moves
    sent.clear()
    with RunQueue(home, user="bob") as other:
        other.cancel(runs.scheduled)
    dash.refresh()
    assert set(sent) - {runs.processing} == {runs.scheduled, "counts"}


def _tree(widget):
    yield widget
    layout = getattr(widget, "layout", None)
    if layout is not None:
        yield layout
    for child in getattr(widget, "children", ()):
        yield from _tree(child)


def test_a_quiet_dashboard_sends_nothing(open_dash, runs):
    """No change, no message: an idle kernel whose page is gone can then be culled by Voila."""
    dash = open_dash("bob")
    dash.set_filters(status="succeeded")
    dash.select(runs.succeeded)
    dash.refresh()
    changes = []
    for widget in _tree(dash):
        widget.observe(lambda change: changes.append((change["owner"], change["name"])), names=All)
    dash.refresh()
    dash.refresh()
    assert changes == []


def test_reconciles_stale_runs_when_opened(template, tmp_path):
    source, runs, _ = template
    home = copy_home(source, tmp_path / "home")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    ctime = psutil.Process(dead.pid).create_time()
    dead.wait()
    with RunQueue(home, user="alice") as q:  # a worker that died while executing it
        claimed = q.store.claim(["long"], Claimant(f"gone:{dead.pid}", dead.pid, ctime, "test"))
        assert claimed is not None and claimed.id == runs.processing
    dash = Dashboard(home, user="carol", refresh_interval=None)
    try:
        row = {r.id: r for r in dash.rows}[runs.processing]
        assert row.label == "retrying"
        assert "reconciled" in text_of(dash.message) and f"run {runs.processing}" in dash.message
    finally:
        dash.close()


def test_refreshes_itself_from_an_asyncio_task(home, runs):
    async def scenario():
        dash = Dashboard(home, user="carol", refresh_interval=0.05)
        try:
            assert dash._refresher is not None and dash._refresher.mode == "asyncio"
            with RunQueue(home, user="bob") as other:
                other.cancel(runs.waiting)
            for _ in range(100):
                await asyncio.sleep(0.02)
                if {r.id: r.label for r in dash.rows}[runs.waiting] == "cancelled":
                    break
            assert {r.id: r.label for r in dash.rows}[runs.waiting] == "cancelled"
            assert "every 0.05 s" in dash._footer.value
        finally:
            task = dash._refresher._task
            dash.close()
        await asyncio.sleep(0)
        assert task.cancelled() or task.done()

    asyncio.run(scenario())


def _labels(dash):
    return {r.id: r.label for r in dash.rows}


def test_refresh_thread_goes_on_while_the_main_thread_is_busy(home, runs):
    """As in a notebook whose kernel runs another cell: only the thread can see the change."""
    dash = Dashboard(home, user="carol", refresh_interval=0.05, refresh_mode="thread")
    try:
        assert dash.refreshing and len(live_refreshers()) == 1
        with RunQueue(home, user="bob") as other:
            other.cancel(runs.waiting)
        deadline = time.monotonic() + 5
        while _labels(dash)[runs.waiting] != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.02)  # the main thread never calls refresh() here
        assert _labels(dash)[runs.waiting] == "cancelled"
        assert "every 0.05 s" in dash._footer.value
        for _ in range(20):  # clicks on the main thread interleave with the thread's refreshes
            dash.set_filters(status="cancelled")
            dash.set_filters()
    finally:
        thread = dash._refresher._thread
        dash.close()
    thread.join(2)
    assert not thread.is_alive() and not live_refreshers()


def test_a_newer_dashboard_of_the_home_stops_the_older_ones_refresh(home, tmp_path):
    first = Dashboard(home, user="carol", refresh_interval=0.05, refresh_mode="thread")
    second = Dashboard(home, user="carol", refresh_interval=0.05, refresh_mode="thread")
    third = Dashboard(home, user="carol", refresh_interval=0.05, refresh_mode="thread")
    elsewhere = Dashboard(tmp_path / "other", user="carol", refresh_interval=0.05, refresh_mode="thread")
    try:
        threads = [d._refresher._thread for d in (third, elsewhere)]
        time.sleep(0.2)
        assert not first.refreshing and not second.refreshing and third.refreshing and elsewhere.refreshing
        assert sorted(t.ident for t in live_refreshers()) == sorted(t.ident for t in threads)
        assert "a newer dashboard of this home opened" in first._footer.value
        first.refresh()  # the Refresh button still works
    finally:
        for dash in (first, second, third, elsewhere):
            dash.close()
    for thread in threads:
        thread.join(2)
    assert not live_refreshers()


def test_no_view_left_stops_the_refresh_and_a_new_view_restarts_it(home):
    dash = Dashboard(home, user="carol", refresh_interval=0.05, refresh_mode="thread")
    try:
        dash._view_count = 1  # as the front end reports it
        dash._view_count = 0  # the output was cleared (a re-run, Clear Outputs)
        assert not dash.refreshing and "no view shows this dashboard" in dash._footer.value
        dash._view_count = 1
        assert dash.refreshing
    finally:
        dash.close()


# -- the Submit form ---------------------------------------------------------------------

def test_form_generated_from_the_parameters_cell(open_dash, home, notebooks):
    dash = open_dash("bob")
    assert str(notebooks["sleeper"]) in dash.form._notebook.options  # from recent runs
    dash.form.fill(notebook=str(notebooks["sleeper"]))
    assert dash.form.parameter_names == ["n", "sleep", "label", "flag", "sizes"]  # run_dir is runtool's
    fields = dash.form._inputs
    assert fields["n"].value == "1" and fields["sleep"].value == "0.0" and fields["label"].value == "x"
    assert fields["flag"].value is False and json.loads(fields["sizes"].value) == [1, 2]
    dash.form.fill(n="12", label="hello", flag=True, sizes="[3, 4]", queue="hold", priority="high",
                   delay="5m")
    dash.form.submit()
    assert "submitted run" in text_of(dash.form.message)
    newest = dash.rows[0]
    with RunQueue(home) as q:
        run = q.get(newest.id)
    assert run.parameters == {"n": 12, "label": "hello", "flag": True, "sizes": [3, 4]}
    assert (run.queue, run.priority, run.submitted_by) == ("hold", 10, "bob")
    assert newest.label == "scheduled"


@pytest.mark.parametrize("field,text,cli_args", [
    ("n", "abc", ["-p", "n", "abc"]),
    ("sleep", "soon", ["-p", "sleep", "soon"]),
    ("delay", "soon", ["--in", "soon"]),
    ("after", "999", ["--after", "999"]),
    ("queue", "Bad Queue", ["--queue", "Bad Queue"]),
])
def test_form_refuses_bad_values_with_the_cli_message(open_dash, home, notebooks, field, text, cli_args):
    dash = open_dash("bob")
    dash.form.fill(notebook=str(notebooks["sleeper"]), **{field: text})
    before = len(RunQueue(home).list(limit=100))
    dash.form.submit()
    done = runtool(home, "submit", str(notebooks["sleeper"]), *cli_args, user="bob")
    assert done.code == 2  # each is invalid input
    # the same message, naming the form's fields where the command line names its options
    assert text_of(dash.form.message) == in_form_words(done.err.strip().removeprefix("runtool: "))
    assert "--" not in text_of(dash.form.message)
    assert len(RunQueue(home).list(limit=100)) == before


def test_form_errors_name_the_fields_not_the_options(open_dash, notebooks):
    dash = open_dash("bob")
    dash.form.fill(notebook=str(notebooks["sleeper"]), after="abc")
    dash.form.submit()
    assert text_of(dash.form.message) == 'bad "After run" \'abc\': expected a run id'


def test_form_for_a_bad_notebook_and_for_viewers(open_dash, tmp_path, notebooks):
    dash = open_dash("bob")
    dash.form.fill(notebook=str(tmp_path / "missing.ipynb"))
    assert "not found" in text_of(dash.form._about.value)
    dash.form.submit()
    assert "pick a notebook first" in text_of(dash.form.message)
    viewer = open_dash("carol")
    assert viewer.form._submit.disabled
    viewer.form.fill(notebook=str(notebooks["sleeper"]))
    viewer.form._submit.disabled = False  # even a forced click is refused by the library
    viewer.form.submit()
    assert "may not submit runs" in text_of(viewer.form.message)


def test_continuation_from_the_form(open_dash, home, notebooks, runs):
    dash = open_dash("bob")
    dash.form.fill(notebook=str(notebooks["sleeper"]), after=str(runs.waiting), on="finish")
    dash.form.submit()
    assert dash.rows[0].label == "awaiting"


# -- plain helpers -----------------------------------------------------------------------

values = {
    "int": st.integers(-10**6, 10**6),
    "float": st.floats(allow_nan=False, allow_infinity=False, width=32),
    "str": st.text(max_size=20),
    "bool": st.booleans(),
    "list": st.lists(st.integers(), max_size=4),
    "dict": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
}


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(sorted(values)).flatmap(lambda t: st.tuples(st.just(t), values[t])))
def test_a_default_typed_back_gives_the_default(pair):
    type_name, default = pair
    param = Parameter("p", type_name, default)
    if type_name == "bool":
        assert form_value(param, default) is default
        return
    assert form_value(param, default_text(param)) == default


def test_only_changed_fields_are_sent(notebooks):
    from runtool.params import read_notebook

    info = read_notebook(notebooks["sleeper"])
    fields = {"n": "1", "sleep": "0.0", "label": "x", "flag": False, "sizes": "[1, 2]"}
    assert changed_parameters(info, fields) == {}
    assert changed_parameters(info, {**fields, "n": "2", "flag": True}) == {"n": 2, "flag": True}


def test_actions_for_mirrors_permissions(home, runs):
    with RunQueue(home, user="bob") as q:
        run = q.get(runs.failed)
        assert dashview.actions_for(run, q.can) == ("delete", "retry")
        assert dashview.actions_for(run, lambda perm, kind: False) == ()


def test_error_line_is_the_first_line(home, runs):
    with RunQueue(home) as q:
        run = q.get(runs.failed)
    run.error = {"type": "ValueError", "message": "\nfirst\nsecond"}
    assert dashview.error_line(run) == "ValueError: first"
    run.error = None
    assert dashview.error_line(run) == ""


# -- serving -----------------------------------------------------------------------------

def test_dashboard_notebook_is_the_packaged_one(tmp_path):
    repo = serve.repository_notebook()
    assert repo is not None
    code = [c for c in json.loads(repo.read_text())["cells"] if c["cell_type"] == "code"]
    assert ["".join(c["source"]) for c in code] == [serve.DASHBOARD_CODE]
    staged = serve.stage_notebook(tmp_path)
    assert staged == tmp_path / "dashboard.ipynb" and staged.read_text() == repo.read_text()


def test_voila_command_culls_kernels_and_serves_only_run_files(tmp_path):
    command = serve.voila_command(tmp_path / "dashboard.ipynb", tmp_path, "127.0.0.1", 9999)
    assert "--MappingKernelManager.cull_interval=10" in command
    assert "--MappingKernelManager.cull_idle_timeout=30" in command
    assert "--port=9999" in command and "--Voila.ip=127.0.0.1" in command
    assert f"--Voila.root_dir={tmp_path}" in command
    allowed = re.compile(serve.FILE_ALLOWLIST)
    denied = re.compile(serve.FILE_DENYLIST)
    assert allowed.fullmatch("runs/12/output.ipynb") and allowed.fullmatch("runs/12/preview.png")
    for path in ("runtool.db", "runtool.toml", "runs/12/sub/x.png", "dashboard.ipynb", "runs/x/a"):
        assert not allowed.fullmatch(path), path
    assert denied.fullmatch("runs/3/.secret")


def test_loopback_hosts():
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1") and serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("example.org")
    assert serve.page_url("0.0.0.0", 8866) == "http://127.0.0.1:8866/"


def test_serve_refuses_a_port_in_use(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve.serve_dashboard(tmp_path, port=port, open_browser=False) == 1
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err


def test_open_dashboard_says_in_one_line_why_it_cannot_open(tmp_path):
    from runtool.widgets import Dashboard, open_dashboard

    home = tmp_path / "badhome"
    home.mkdir()
    (home / "runtool.toml").write_text("colour = 1\n")
    page = open_dashboard(home)
    assert not isinstance(page, Dashboard)
    assert page.value.count("\n") == 0
    assert "runtool: " in page.value and "colour: unknown setting" in page.value
    (home / "runtool.toml").write_text("retries = 1\n")
    page = open_dashboard(home, refresh_interval=None)
    assert isinstance(page, Dashboard)
    page.close()


def test_the_pager_says_when_counting_stopped():
    assert dashview.pager_text(0, 20, 345) == "1–20 of 345"
    assert dashview.pager_text(20, 20, 10_020, more=True) == "21–40 of 10,020+"
    assert dashview.pager_text(0, 0, 0) == "no runs match"


def test_run_logs_carry_no_kernel_transport_warning(template):
    """The detail pane shows stderr.log: ipykernel's TCP warning was in every run's (issue 15)."""
    home, runs, _ = template
    for run_id in (runs.succeeded, runs.failed):
        log = (home / "runs" / str(run_id) / "stderr.log").read_text()
        assert "without encryption" not in log
