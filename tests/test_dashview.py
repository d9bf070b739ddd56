"""The dashboard's view model (dashview) and the command line's text views (format): plain
functions of a run record, tested on records built here. No home, kernel or widgets."""

from __future__ import annotations

import re

import pytest
from helpers import text_of

from runtool import dashview
from runtool import format as fmt
from runtool.models import Run, Status

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def make_run(**fields) -> Run:
    """A run record as the store would return it: waiting, never started, unless told."""
    values = dict(
        id=7, notebook="/nb/detection.ipynb", kind="detection", queue="default", priority=0,
        status=Status.WAITING, parameters={"threshold": 0.5}, tags={}, attempt=0, max_attempts=4,
        timeout_s=None, kernel="python3", output_copy=None, created_at=NOW - 600, not_before=None,
        started_at=None, finished_at=None, heartbeat_at=None, after=[], after_on=None, ready=True,
        submitted_by="alice", worker=None, worker_pid=None, worker_ctime=None, runner_pid=None,
        runner_ctime=None, kernel_pid=None, kernel_ctime=None, progress_done=None, progress_total=None,
        error=None, run_dir="/home/runs/7",
    )
    values.update(fields)
    return Run(**values)


FAILED = make_run(status=Status.FAILED, attempt=4, started_at=NOW - 300, finished_at=NOW - 210,
                  error={"type": "ValueError", "message": "bad input\nsecond line", "cell": 4,
                         "traceback": "\x1b[31mTraceback\x1b[0m ... <boom>"})
LABELS = {  # what a waiting run reads as, by its fields
    "waiting": make_run(),
    "scheduled": make_run(not_before=NOW + 60),
    "awaiting": make_run(ready=False, after=[3], after_on="success"),
    "retrying": make_run(attempt=1, not_before=NOW + 60, error={"type": "ValueError", "message": "x"}),
    "processing": make_run(status=Status.PROCESSING, attempt=1, started_at=NOW - 75, progress_done=2,
                           progress_total=5),
    "succeeded": make_run(status=Status.SUCCEEDED, attempt=1, started_at=NOW - 100, finished_at=NOW - 10),
    "failed": FAILED,
    "cancelled": make_run(status=Status.CANCELLED),
}


@pytest.mark.parametrize("label", sorted(LABELS))
def test_row_labels(label):
    assert dashview.row_view(LABELS[label], NOW, {}).label == label
    assert fmt.label(LABELS[label], NOW, {}) == label


def test_a_retrying_run_that_is_due_still_reads_retrying():
    assert make_run(attempt=1, not_before=NOW - 1).label(NOW) == "retrying"


def test_paused_queues_mark_waiting_runs_only():
    waiting, processing = LABELS["waiting"], LABELS["processing"]
    assert dashview.row_view(waiting, NOW, {"default": "alice"}).label == "waiting (paused)"
    assert dashview.row_view(waiting, NOW, {"default": "alice"}).style == "waiting"
    assert dashview.row_view(waiting, NOW, {"*": "alice"}).label == "waiting (paused)"
    assert dashview.row_view(waiting, NOW, {"other": "alice"}).label == "waiting"
    assert dashview.row_view(processing, NOW, {"*": "alice"}).label == "processing"


def test_row_view_fields():
    row = dashview.row_view(LABELS["processing"], NOW, {})
    assert (row.id, row.kind, row.parameters, row.progress, row.duration) == (7, "detection", "threshold=0.5",
                                                                               (2, 5), "1m15s")
    assert row.parameters_full == '{"threshold": 0.5}' and row.created == "2027-01-15 07:50:00"
    failed = dashview.row_view(FAILED, NOW, {})
    assert (failed.progress, failed.duration, failed.error_line) == (None, "1m30s", "ValueError: bad input")
    assert dashview.row_view(LABELS["retrying"], NOW, {}).error_line == "ValueError: x"
    # a cancelled run keeps no error line, even with an error recorded
    assert dashview.row_view(make_run(status=Status.CANCELLED, error={"type": "E", "message": "m"}),
                             NOW, {}).error_line == ""


@pytest.mark.parametrize("error, line", [
    (None, ""), ({"type": "ValueError", "message": "\nfirst\nsecond"}, "ValueError: first"),
    ({"type": "Timeout", "message": ""}, "Timeout"), ({"message": "m"}, "Error: m"),
    ({"type": "E", "message": "x" * 500}, "E: " + "x" * 297),
])
def test_error_line(error, line):
    assert dashview.error_line(make_run(error=error)) == line


#: status label -> actions when every permission is held
ALL_ACTIONS = {
    "waiting": ("cancel", "delete"), "scheduled": ("cancel", "delete"), "awaiting": ("cancel", "delete"),
    "retrying": ("cancel", "delete"), "processing": ("force-cancel",), "succeeded": ("delete",),
    "failed": ("delete", "retry"), "cancelled": ("delete", "retry"),
}


@pytest.mark.parametrize("label", sorted(ALL_ACTIONS))
def test_actions_follow_status_and_permissions(label):
    run = LABELS[label]
    assert dashview.actions_for(run, lambda perm, kind: True) == ALL_ACTIONS[label]
    assert dashview.actions_for(run, lambda perm, kind: False) == ()
    asked = []
    dashview.actions_for(run, lambda perm, kind: asked.append((perm, kind)) or True)
    assert all(kind == "detection" for perm, kind in asked if perm == "delete")  # delete asks per kind
    only_delete_other = dashview.actions_for(run, lambda perm, kind: perm == "delete" and kind == "other")
    assert "delete" not in only_delete_other


def test_counts_html():
    html = dashview.counts_html({"waiting": 1200, "failed": 2}, {})
    shown = re.findall(r'data-status="(\w+)">\w+ <b>([\d,]+)</b>', html)
    assert shown == [("waiting", "1,200"), ("scheduled", "0"), ("processing", "0"), ("succeeded", "0"),
                     ("failed", "2"), ("cancelled", "0")]  # awaiting and retrying only when there are any
    assert "retrying" in dashview.counts_html({"retrying": 1}, {})
    assert "rt-paused" not in html
    paused = dashview.counts_html({}, {"gpu": "bob", "cpu": "alice<script>"})
    assert text_of(paused).endswith("paused: cpu (by alice<script>), gpu (by bob)")
    assert "<script>" not in paused
    assert dashview.paused_text({"*": "alice", "gpu": "bob"}) == "every queue paused by alice"


def test_row_html_escapes_and_shows_progress():
    run = make_run(kind="a<b", parameters={"s": "<img>"}, submitted_by="o'hara", status=Status.PROCESSING,
                   started_at=NOW - 5, progress_done=None, progress_total=8)
    html = dashview.row_html(dashview.row_view(run, NOW, {}))
    assert "<img>" not in html and "a&lt;b" in html and "o&#x27;hara" in html
    assert '<progress value="0" max="8"></progress>' in html and "0/8" in html
    assert 'data-run="7"' in html and "rt-errline" not in html
    failed = dashview.row_html(dashview.row_view(FAILED, NOW, {}))
    assert '<div class="rt-errline" title="ValueError: bad input">ValueError: bad input</div>' in failed


@pytest.mark.parametrize("offset, shown, total, text", [
    (0, 0, 0, "no runs match"), (0, 3, 8, "1–3 of 8"), (50, 50, 50_000, "51–100 of 50,000"),
])
def test_pager_text(offset, shown, total, text):
    assert dashview.pager_text(offset, shown, total) == text


def test_detail_html():
    assert text_of(dashview.title_html(FAILED, NOW, {})) == "Run 7 · detection failed"
    info = text_of(dashview.info_html(make_run(after=[3], after_on="finish", timeout_s=90.0, tags={"t": "v"})))
    assert "after run 3 (on finish)" in info
    assert "after runs 3, 4 (on success)" in text_of(dashview.info_html(make_run(after=[3, 4], after_on="success"))) and "attempt 0 of 4 · timeout 1m30s" in info
    assert 'tags {"t": "v"}' in info and 'parameters {"threshold": 0.5}' in info
    assert "tags none" in text_of(dashview.info_html(make_run()))
    error = dashview.error_html(FAILED.error)
    assert text_of(error).startswith("ValueError in cell 4: bad input second line")
    assert "\x1b" not in error and "&lt;boom&gt;" in error
    assert dashview.error_html(None) == ""
    history = dashview.history_html([{"at": "2026-11-28T17:30:00.123+00:00", "status": "waiting", "by": "a&b",
                                      "reason": None}])
    assert text_of(history) == "at (UTC) status by reason 2026-11-28 17:30:00 waiting a&b"
    assert dashview.message_html("") == "" and "rt-msg-error" in dashview.message_html("no", "error")


def test_files_logs_and_images(tmp_path):
    run = make_run(status=Status.SUCCEEDED, run_dir=str(tmp_path), started_at=NOW - 2, finished_at=NOW)
    assert text_of(dashview.files_html(run, None)) == "no files yet"
    (tmp_path / "output.ipynb").write_text("{}")
    (tmp_path / "stdout.log").write_text("".join(f"line {i}\n" for i in range(100)) + "\x1b[1mbold\x1b[0m\n")
    for name in ("b.png", "a.JPG", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "b.png")
    assert [p.name for p in dashview.image_files(tmp_path)] == ["a.JPG", "b.png"]  # no links
    assert dashview.image_files(tmp_path / "missing") == []
    served = dashview.files_html(run, "/voila/files/")
    assert '<a href="/voila/files/runs/7/output.ipynb" download="run-7-output.ipynb"' in served
    assert "link.png" not in served
    inline = dashview.files_html(run, None)
    assert 'href="data:application/x-ipynb+json;base64,e30="' in inline  # "{}"
    assert "data:" not in dashview.files_html(make_run(run_dir=str(tmp_path)), None)  # unfinished: no inline
    tail = dashview.tail(tmp_path / "stdout.log", lines=3)
    assert tail == "line 98\nline 99\nbold"
    assert dashview.tail(tmp_path / "missing.log") == ""
    logs = dashview.logs_html([tmp_path / "stdout.log", tmp_path / "stderr.log"])
    assert "(empty)" in logs and "line 99" in logs and "line 59" not in logs  # the last 40 lines


# -- format: the command line's views -------------------------------------------------------

@pytest.mark.parametrize("value, text", [
    (None, ""), (0, "0.0s"), (2.44, "2.4s"), (59.9, "59.9s"), (60, "1m00s"), (125, "2m05s"),
    (3599, "59m59s"), (3600, "1h00m"), (90061, "25h01m"),
])
def test_seconds(value, text):
    assert fmt.seconds(value) == text


def test_short_params_and_when():
    assert fmt.short_params({"a": 1, "b": "x"}) == 'a=1, b="x"'
    assert fmt.short_params({"text": "é" * 60}, limit=20) == 'text="' + "é" * 13 + "…"
    assert len(fmt.short_params({"text": "x" * 60})) == 40
    assert fmt.when(None) == "" and fmt.when(0) == "1970-01-01 00:00:00"


def test_table():
    assert fmt.table([], NOW, {}) == "no runs"
    lines = fmt.table([LABELS["processing"], FAILED], NOW, {}).splitlines()
    assert lines[0].split() == ["ID", "STATUS", "KIND", "QUEUE", "CREATED", "DURATION", "CELLS", "BY", "MACHINE", "PARAMETERS"]
    assert lines[1].split() == ["7", "processing", "detection", "default", "2027-01-15", "07:50:00", "2/5",
                                "alice", "threshold=0.5"]
    assert lines[2].split() == ["7", "failed", "detection", "default", "2027-01-15", "07:50:00", "1m30s",
                                "alice", "threshold=0.5"]
    assert all(line == line.rstrip() for line in lines)
    assert len({line.index("detection") for line in lines[1:]}) == 1  # columns line up


def test_details(tmp_path):
    (tmp_path / "output.ipynb").write_text("{}")
    run = make_run(status=Status.FAILED, run_dir=str(tmp_path), error=FAILED.error, tags={"k": "v"},
                   after=[3], after_on="success", attempt=2, timeout_s=60.0,
                   history=[{"at": "2027-01-15T07:50:00+00:00", "status": "waiting", "by": "alice", "reason": ""}])
    text = fmt.details(run, NOW, {})
    assert text.splitlines()[0] == "run 7: failed"
    for line in ("  tags        {\"k\": \"v\"}", "  attempt     2 of 4    timeout 1m00s", "  after       run 3 (on success)",
                 "  error       ValueError: bad input\nsecond line (cell 4)", "history:",
                 "  2027-01-15 07:50:00  waiting    by alice", f"files in {tmp_path}:\n  output.ipynb"):
        assert line in text
    assert fmt.details(make_run(run_dir=str(tmp_path / "none")), NOW, {}).endswith("  (none yet)")
