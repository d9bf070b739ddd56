"""Warm start: a kernel started ahead serves exactly one run, like a fresh one would.

Each run of the probe notebook writes what it saw (kernel pid, its working directory, the
token in its environment and in a child's, the token its kernel was started under, any state
left by another run) into its run folder; the tests compare that with and without warm start.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from fault_checks import leftover_processes
from helpers import notebook, runtool, spawn, wait_for, write_config
from runtool import RunQueue, Status
from runtool.config import load_settings
from runtool.errors import ConfigError
from runtool.processes import TOKEN_VAR, run_token
from runtool.runner import KernelKey

PROBE_PARAMETERS = "n = 0\nrun_dir = ''\nsleep = 0.0\ngate = ''"
PROBE_BODY = [
    "import json, os, subprocess, sys, time\n"
    "seen = [name for name in ('leak',) if name in globals()] + (['module'] if 'rt_leak' in sys.modules else [])\n"
    "leak = n\nsys.modules['rt_leak'] = sys",
    "child_token = subprocess.check_output(['sh', '-c', 'echo \"$RUNTOOL_RUN_TOKEN\"'], text=True).strip()\n"
    "os.system(f'echo from-a-subprocess-{n}')\n"
    "environ = dict(item.split(b'=', 1) for item in open('/proc/self/environ', 'rb').read().split(b'\\0') if b'=' in item)\n"
    "start_token = environ.get(b'RUNTOOL_RUN_TOKEN', b'').decode()",
    "grandchild = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
    "open(os.path.join(run_dir, 'grandchild.pid'), 'w').write(str(grandchild.pid))\n"
    "with open(os.path.join(run_dir, 'probe.tmp'), 'w') as f:\n"
    "    json.dump({'n': n, 'pid': os.getpid(), 'cwd': os.getcwd(), 'seen': seen, 'start_token': start_token,\n"
    "               'token': os.environ.get('RUNTOOL_RUN_TOKEN'), 'child_token': child_token}, f)\n"
    "os.replace(os.path.join(run_dir, 'probe.tmp'), os.path.join(run_dir, 'probe.json'))  # whole or absent\n"
    "while gate and not os.path.exists(gate):  # held until the test opens the gate\n"
    "    time.sleep(0.02)\n"
    "time.sleep(sleep)",
]


def probe_notebook(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return notebook(folder / "probe.ipynb", parameters=PROBE_PARAMETERS, body=PROBE_BODY)


def probe(run) -> dict:
    return json.loads((Path(run.run_dir) / "probe.json").read_text())


def ahead_kernels(home: Path) -> list[psutil.Process]:
    """Processes started under a warm-start token of this home (kernels waiting for a run)."""
    prefix = str(home / "runs" / "ahead#")
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TOKEN_VAR, "").startswith(prefix) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def gone(pid: int | None) -> bool:
    try:
        return pid is None or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def carrying(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TOKEN_VAR) == token and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def finished(q: RunQueue, run_id: int):
    run = q.get(run_id)
    return run if run.status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED) else None


def check_like_a_fresh_kernel(q: RunQueue, run_id: int, folder: Path) -> dict:
    """The run succeeded in a kernel of its own, in its folder, every process carrying its token."""
    run = q.get(run_id)
    assert run.status is Status.SUCCEEDED, run.error
    seen = probe(run)
    token = run_token(run.run_dir, run.started_at)
    assert seen["seen"] == []
    assert seen["cwd"] == str(folder)
    assert seen["token"] == token and seen["child_token"] == token
    assert run.kernel_pid == seen["pid"]
    assert f"from-a-subprocess-{seen['n']}" in (Path(run.run_dir) / "stdout.log").read_text()
    return seen


def test_prestart_setting():
    assert load_settings(Path("/nonexistent")).prestart is True


def test_prestart_setting_must_be_a_boolean(tmp_path):
    write_config(tmp_path, "prestart = false\n")
    assert load_settings(tmp_path).prestart is False
    write_config(tmp_path, 'prestart = "no"\n')
    with pytest.raises(ConfigError, match="prestart"):
        load_settings(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("prestart", [True, False])
def test_every_run_gets_a_fresh_kernel_with_or_without_warm_start(home, tmp_path, prestart, no_leftovers):
    write_config(home, f"prestart = {'true' if prestart else 'false'}\n")
    a, b = probe_notebook(tmp_path / "a"), probe_notebook(tmp_path / "b")
    q = RunQueue(home)
    plan = [a, a, a, b, b]
    runs = [q.submit(nb, {"n": i}, retries=0) for i, nb in enumerate(plan)]
    result = runtool(home, "drain")
    assert result.code == 0, result.err
    seen = [check_like_a_fresh_kernel(q, run.id, nb.parent) for run, nb in zip(runs, plan)]
    assert len({s["pid"] for s in seen}) == len(runs)  # never a kernel for two runs
    started_ahead = [s["start_token"].startswith(str(home / "runs" / "ahead#")) for s in seen]
    if prestart:
        # the first run, and the first in another folder, start a kernel of their own
        assert started_ahead == [False, True, True, False, True]
    else:
        assert started_ahead == [False] * len(runs)
    for s, run in zip(seen, runs):
        if not started_ahead[runs.index(run)]:
            assert s["start_token"] == run_token(q.get(run.id).run_dir, q.get(run.id).started_at)
    assert leftover_processes(home) == []
    q.close()


@pytest.mark.slow
def test_a_kernel_that_dies_while_waiting_is_replaced(home, tmp_path, no_leftovers):
    nb = probe_notebook(tmp_path / "nb")
    q = RunQueue(home)
    worker = spawn(home, "worker", env={"RUNTOOL_USER": "alice"})
    try:
        first = q.submit(nb, {"n": 1}, retries=0)
        wait_for(lambda: finished(q, first.id), what="the first run")
        check_like_a_fresh_kernel(q, first.id, nb.parent)
        [waiting] = wait_for(lambda: ahead_kernels(home), what="a kernel started ahead")
        waiting.kill()
        [replacement] = wait_for(lambda: [p for p in ahead_kernels(home) if p.pid != waiting.pid],
                                 what="a replacement kernel")
        second = q.submit(nb, {"n": 2}, retries=0)
        wait_for(lambda: finished(q, second.id), what="the second run")
        assert check_like_a_fresh_kernel(q, second.id, nb.parent)["pid"] == replacement.pid
        # killed just before a run is claimed: the run still succeeds, in another kernel
        [waiting] = wait_for(lambda: ahead_kernels(home), what="a kernel started ahead")
        waiting.kill()
        third = q.submit(nb, {"n": 3}, retries=0)
        wait_for(lambda: finished(q, third.id), what="the third run")
        assert check_like_a_fresh_kernel(q, third.id, nb.parent)["pid"] != waiting.pid
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert ahead_kernels(home) == [] and leftover_processes(home) == []
    q.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_worker_leaves_no_kernel(home, tmp_path, how):
    nb = probe_notebook(tmp_path / "nb")
    q = RunQueue(home)
    worker = spawn(home, "worker")
    first = q.submit(nb, {"n": 1}, retries=0)
    wait_for(lambda: finished(q, first.id), what="the first run")
    waiting = wait_for(lambda: ahead_kernels(home), what="a kernel started ahead")
    if how == signal.SIGKILL:  # mid-run too: the run's kernel and the one waiting both go
        running = q.submit(nb, {"n": 2, "sleep": 60.0}, retries=0)
        wait_for(lambda: (Path(q.get(running.id).run_dir) / "probe.json").exists(), what="the run to start")
        waiting = waiting + ahead_kernels(home)
        kernel = psutil.Process(q.get(running.id).kernel_pid)
    worker.send_signal(how)
    worker.communicate(timeout=60)
    assert worker.returncode == (0 if how == signal.SIGTERM else -signal.SIGKILL)
    for proc in waiting:
        wait_for(lambda proc=proc: not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE,
                 timeout=10, what=f"kernel {proc.pid} to end")
    if how == signal.SIGKILL:
        wait_for(lambda: not kernel.is_running() or kernel.status() == psutil.STATUS_ZOMBIE, timeout=10,
                 what="the running kernel to end")
        assert runtool(home, "reconcile").code == 0  # ends the run's orphaned grandchild
    wait_for(lambda: ahead_kernels(home) == [] and leftover_processes(home) == [], timeout=10,
             what="no process of the home left")
    q.close()


@pytest.mark.slow
@pytest.mark.parametrize("end", ["force-cancel", "timeout"])
def test_a_run_in_a_kernel_started_ahead_is_ended_whole(home, tmp_path, end, no_leftovers):
    """Its kernel was started under another token; its grandchild, in a session of its own,
    carries the attempt's token, so cancel and timeout still end every process of the run."""
    nb = probe_notebook(tmp_path / "nb")
    q = RunQueue(home)
    worker = spawn(home, "worker")
    try:
        first = q.submit(nb, {"n": 1}, retries=0)
        wait_for(lambda: finished(q, first.id), what="the first run")
        wait_for(lambda: ahead_kernels(home), what="a kernel started ahead")
        timeout = "3s" if end == "timeout" else None
        run = q.submit(nb, {"n": 2, "sleep": 60.0}, retries=0, timeout=timeout)
        wait_for(lambda: (Path(q.get(run.id).run_dir) / "probe.json").exists(), what="the run to start")
        assert probe(q.get(run.id))["start_token"].startswith(str(home / "runs" / "ahead#"))
        if end == "force-cancel":
            result = runtool(home, "cancel", str(run.id), "--force")
            assert result.code == 0, result.err
        done = wait_for(lambda: finished(q, run.id), what="the run to end")
        assert done.status is (Status.CANCELLED if end == "force-cancel" else Status.FAILED)
        done_run = q.get(run.id)
        grandchild = int((Path(done_run.run_dir) / "grandchild.pid").read_text())
        token = run_token(done_run.run_dir, done_run.started_at)
        wait_for(lambda: gone(grandchild) and gone(done_run.kernel_pid) and gone(done_run.runner_pid)
                 and not carrying(token), timeout=15, what="the run's processes to end")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    assert ahead_kernels(home) == [] and leftover_processes(home) == []
    q.close()


def exactly(count: int, found: list) -> list | None:
    return found if len(found) == count else None


def started(q: RunQueue, run_id: int) -> bool:
    return (Path(q.get(run_id).run_dir) / "probe.json").exists()


def test_a_runner_started_ahead_reads_its_run_up_to_the_newline():
    """Another process holding a copy of the pipe (a runner or hook forked later) keeps its
    end from coming: the run is read up to the newline. Closed without one: discarded."""
    from runtool import warmstart

    read_end, write_end = os.pipe()
    copy = os.dup(write_end)
    try:
        os.write(write_end, json.dumps({"notebook": "nb.ipynb", "parameters": {"n": 1}}).encode() + b"\n")
        os.close(write_end)
        assert warmstart._read_assignment(read_end) == {"notebook": "nb.ipynb", "parameters": {"n": 1}}
    finally:
        os.close(copy)
    read_end, write_end = os.pipe()
    os.close(write_end)
    assert warmstart._read_assignment(read_end) is None


def test_a_runner_forked_later_closes_the_pipes_to_the_others():
    from runtool import runner

    read_end, write_end = os.pipe()
    runner.hold(write_end)  # as the pipe a runner started ahead gets its run on

    def main(report_fd: int) -> int:
        try:
            os.fstat(write_end)
        except OSError:
            return 0
        return 3

    child = runner.fork(main)
    try:
        _, status = os.waitpid(child.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        child.close()
        child.assign = write_end
        runner.close_assign(child)
        os.close(read_end)


def test_kernel_key_is_the_kernel_and_the_folder():
    assert KernelKey("python3", "/nb") == ("python3", "/nb")


@pytest.mark.slow
def test_in_a_backlog_two_kernels_are_started_while_a_run_executes(home, tmp_path, no_leftovers):
    """While runs wait, the next two runs' kernels start as soon as a run is claimed; one
    killed while waiting is passed over; every run still gets a kernel of its own, and once
    the queue is empty one kernel waits."""
    nb = probe_notebook(tmp_path / "nb")
    gate = tmp_path / "gate"
    q = RunQueue(home)
    worker = spawn(home, "worker")
    try:
        first = q.submit(nb, {"n": 0, "gate": str(gate)}, retries=0)
        rest = [q.submit(nb, {"n": i}, retries=0) for i in range(1, 4)]
        wait_for(lambda: started(q, first.id), what="the first run to start")
        waiting = wait_for(lambda: exactly(2, ahead_kernels(home)),
                           what="two kernels started ahead")
        assert q.get(first.id).status is Status.PROCESSING  # started while it executes
        assert all(q.get(run.id).status is Status.WAITING for run in rest)
        victim = waiting[0]
        victim.kill()
        gate.touch()
        for run in rest:
            wait_for(lambda run=run: finished(q, run.id), what=f"run {run.id}")
        seen = [check_like_a_fresh_kernel(q, run.id, nb.parent) for run in [first, *rest]]
        pids = [s["pid"] for s in seen]
        assert len(set(pids)) == len(pids) and victim.pid not in pids
        assert {p.pid for p in waiting} - {victim.pid} <= set(pids)  # the other one served a run
        assert all(s["start_token"].startswith(str(home / "runs" / "ahead#")) for s in seen[1:])
        assert len(wait_for(lambda: exactly(1, ahead_kernels(home)),
                            what="one kernel waiting")) == 1
    finally:
        gate.touch()
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert ahead_kernels(home) == [] and leftover_processes(home) == []
    q.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_worker_stopped_or_killed_with_two_kernels_waiting_leaves_none(home, tmp_path, how):
    nb = probe_notebook(tmp_path / "nb")
    gate = tmp_path / "gate"
    q = RunQueue(home)
    worker = spawn(home, "worker")
    try:
        first = q.submit(nb, {"n": 0, "gate": str(gate)}, retries=0)
        rest = [q.submit(nb, {"n": i}, retries=0) for i in (1, 2)]
        wait_for(lambda: started(q, first.id), what="the first run to start")
        waiting = wait_for(lambda: exactly(2, ahead_kernels(home)),
                           what="two kernels started ahead")
        kernel = psutil.Process(q.get(first.id).kernel_pid)
        worker.send_signal(how)
        if how == signal.SIGTERM:  # the first signal: the run finishes, no other starts
            gate.touch()
        worker.communicate(timeout=60)
    finally:
        gate.touch()
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=60)
    assert worker.returncode == (0 if how == signal.SIGTERM else -signal.SIGKILL)
    for proc in [*waiting, kernel]:
        wait_for(lambda proc=proc: not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE,
                 timeout=10, what=f"kernel {proc.pid} to end")
    if how == signal.SIGTERM:
        assert q.get(first.id).status is Status.SUCCEEDED
    else:
        assert runtool(home, "reconcile").code == 0  # ends the run's orphaned grandchild
    assert all(q.get(run.id).status is Status.WAITING for run in rest)
    wait_for(lambda: ahead_kernels(home) == [] and leftover_processes(home) == [], timeout=10,
             what="no process of the home left")
    q.close()
