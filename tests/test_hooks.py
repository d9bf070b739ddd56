"""The on_finish hook: once per finished run, with the run in its environment; a failing or
hanging hook is logged and ended, and never affects the run or the worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from helpers import notebook, runtool, wait_for, write_config
from runtool import RunQueue, Status
from runtool.worker import Limits, Worker

WRITE_METRICS = ("import json, os\n"
                 "json.dump({'score': 0.75}, open(os.path.join(run_dir, 'metrics.json'), 'w'))")


def drain(q: RunQueue) -> tuple[int, str]:
    return Worker(q, [], limits=Limits()).drain()


def hook_config(home: Path, command: str, timeout: str = "30s") -> None:
    write_config(home, f'retry_base_delay = "1h"\n[hooks]\non_finish = {json.dumps(command)}\ntimeout = "{timeout}"\n')


@pytest.mark.kernel
def test_hook_runs_once_per_finished_run_with_the_run_in_its_environment(home, tmp_path, no_leftovers):
    seen = tmp_path / "seen.jsonl"
    hook_config(home, "python3 -c 'import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
                      f"if k.startswith(\"RUNTOOL_\")}}))' >> {seen}")
    nb = notebook(tmp_path / "scored.ipynb", parameters="fail = False\nrun_dir = ''\n",
                  body=[WRITE_METRICS, "if fail:\n    raise ValueError('no')"])
    q = RunQueue(home)
    ok = q.submit(nb)
    bad = q.submit(nb, {"fail": True}, retries=0)
    retrying = q.submit(nb, {"fail": True}, retries=1)  # waits an hour for its retry: not finished
    drain(q)
    lines = wait_for(lambda: seen.exists() and len(seen.read_text().splitlines()) == 2 and seen.read_text(),
                     what="two hook calls")
    calls = {int(c["RUNTOOL_RUN_ID"]): c for c in map(json.loads, lines.splitlines())}
    assert calls[ok.id]["RUNTOOL_STATUS"] == "succeeded"
    assert calls[ok.id]["RUNTOOL_KIND"] == "scored"
    assert calls[ok.id]["RUNTOOL_RUN_DIR"] == q.get(ok.id).run_dir
    assert json.loads(calls[ok.id]["RUNTOOL_METRICS"]) == {"score": 0.75}
    assert calls[ok.id]["RUNTOOL_ERROR"] == ""
    assert calls[bad.id]["RUNTOOL_STATUS"] == "failed"
    assert calls[bad.id]["RUNTOOL_ERROR"] == "ValueError: no"
    assert q.get(retrying.id).status is Status.WAITING and retrying.id not in calls
    assert "[runtool] exited with 0" in (Path(q.get(ok.id).run_dir) / "hook.log").read_text()


@pytest.mark.kernel
def test_a_failing_hook_is_logged_and_changes_nothing(home, job, no_leftovers):
    hook_config(home, "echo about to fail; exit 3")
    q = RunQueue(home)
    first, second = q.submit(job), q.submit(job)
    assert drain(q) == (0, "executed 2 run(s)")
    assert {q.get(first.id).status, q.get(second.id).status} == {Status.SUCCEEDED}
    log = Path(q.get(first.id).run_dir) / "hook.log"
    assert wait_for(lambda: log.exists() and "[runtool] exited with 3" in log.read_text(), what="hook log")
    assert log.read_text().startswith("about to fail\n")


@pytest.mark.kernel
def test_a_hanging_hook_is_ended_after_its_timeout_without_holding_up_the_worker(home, job, tmp_path,
                                                                                 no_leftovers):
    hook_config(home, f"echo $$ > {tmp_path}/hook.$RUNTOOL_RUN_ID.pid; exec sleep 300", timeout="2s")
    q = RunQueue(home)
    first, second = q.submit(job), q.submit(job)
    assert drain(q) == (0, "executed 2 run(s)")  # both runs, while the first hook still hangs
    assert q.get(second.id).status is Status.SUCCEEDED
    log = Path(q.get(first.id).run_dir) / "hook.log"
    assert wait_for(lambda: log.exists() and "timed out after 2 s and was ended" in log.read_text(),
                    what="the hook's timeout")
    pid = int((tmp_path / f"hook.{first.id}.pid").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    second_log = Path(q.get(second.id).run_dir) / "hook.log"
    wait_for(lambda: second_log.exists() and "timed out" in second_log.read_text(), what="the second hook's timeout")


@pytest.mark.kernel
def test_hook_through_the_cli_drain(home, job, tmp_path):
    marker = tmp_path / "marker"
    hook_config(home, f'echo "$RUNTOOL_RUN_ID $RUNTOOL_STATUS" > {marker}')
    run = RunQueue(home).submit(job)
    result = runtool(home, "drain")
    assert result.code == 0
    assert wait_for(lambda: marker.exists() and marker.read_text(), what="hook") == f"{run.id} succeeded\n"


@pytest.mark.parametrize("table, message", [
    ("[hooks]\non_finish = 3\n", "hooks.on_finish: expected a shell command"),
    ("[hooks]\non_finish = 'x'\ntimeout = 'soon'\n", "hooks.timeout:"),
    ("[hooks]\non_start = 'x'\n", "hooks.on_start: unknown setting"),
    ("hooks = 'x'\n", "hooks: expected a table"),
])
def test_bad_hooks_table_is_one_line(home, table, message):
    write_config(home, table)
    result = runtool(home, "list")
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err


@pytest.mark.kernel
def test_a_hanging_hook_holds_neither_the_executor_lock_nor_the_drains_output(home, job, tmp_path):
    hook_config(home, "exec sleep 300", timeout="3s")
    RunQueue(home).submit(job)

    def drain_process(name: str) -> str:
        out = tmp_path / f"{name}.out"
        with open(out, "w") as handle:
            proc = subprocess.Popen([sys.executable, "-m", "runtool", "--home", str(home), "drain"],
                                    stdout=handle, stderr=subprocess.STDOUT)
        assert proc.wait(timeout=120) == 0
        return out.read_text()

    assert "executed 1 run(s)" in drain_process("first")
    second = RunQueue(home).submit(job)  # while the first run's hook still sleeps
    assert "executed 1 run(s)" in drain_process("second")
    assert RunQueue(home).get(second.id).status is Status.SUCCEEDED
    for run in RunQueue(home).list():
        log = Path(run.run_dir) / "hook.log"
        wait_for(lambda log=log: log.exists() and "timed out after 3 s" in log.read_text(), what="hook timeout")
    # the drain's stderr is the worker log: the timeout was reported there too
    with subprocess.Popen([sys.executable, "-m", "runtool", "--home", str(home), "list"],
                          stdout=subprocess.PIPE, text=True) as listing:
        assert listing.communicate(timeout=60)[0].count("succeeded") == 2


@pytest.mark.kernel
def test_hook_of_a_run_that_could_not_start(home, tmp_path, no_leftovers):
    marker = tmp_path / "marker"
    hook_config(home, f'echo "$RUNTOOL_RUN_ID $RUNTOOL_STATUS $(pwd)" > {marker}')
    gone = notebook(tmp_path / "gone.ipynb", parameters="n = 1\n", body=["print(n)"])
    q = RunQueue(home)
    run = q.submit(gone, retries=0)
    gone.unlink()
    drain(q)
    assert q.get(run.id).status is Status.FAILED
    said = wait_for(lambda: marker.exists() and marker.read_text(), what="hook")
    assert said == f"{run.id} failed {q.get(run.id).run_dir}\n"  # the folder holds its error.txt
