"""Several machines on one PostgreSQL queue (DESIGN.md section 12), each machine a process
session of its own with its own RUNTOOL_MACHINE: runs executed once, one at a time per
machine, machines in parallel; a frozen or killed machine's run taken over and finished by
another, the late attempt changing nothing; force-cancel from another machine."""

from __future__ import annotations

import json
import signal
import subprocess
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest

from helpers import PYTHON, ROLES, files_of, markers, wait_for, write_config
from machines import Machine, end_machine, folder_state, machine_name, machine_notebook, processes_of, signal_machine
from runtool import Run, RunQueue, Status
from runtool.processes import alive

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.kernel]
STALE_AFTER = 3


@pytest.fixture
def fleet(tmp_path: Path, pg_server, monkeypatch: pytest.MonkeyPatch):
    """A home whose runtool.toml selects a fresh database, stale_after = 3 s, retries at once;
    `make(n)` gives n machines; every process of theirs is ended at teardown."""
    url = pg_server.new_database()
    home = tmp_path / "home"
    write_config(home, f'stale_after = "{STALE_AFTER}s"\nretry_base_delay = "0s"\npoll = "0.5s"\n'
                       f'[store]\nurl = "{url}"\n{ROLES}')
    monkeypatch.setenv("RUNTOOL_LOCK_DIR", str(tmp_path / "locks"))  # local to this test
    logs = tmp_path / "logs"
    logs.mkdir()
    made: list[Machine] = []

    def make(n: int) -> list[Machine]:
        machines = [Machine(machine_name(f"m{i + 1}"), home, logs) for i in range(n)]
        made.extend(machines)
        return machines

    q = RunQueue(home, user="alice")
    yield q, make, tmp_path
    for machine in made:
        end_machine(machine.name)
    q.close()


class Running(NamedTuple):
    q: RunQueue
    m1: Machine
    m2: Machine
    worker: subprocess.Popen  # the first machine's worker
    run: Run  # as submitted
    first: Run  # as started on the first machine


@pytest.fixture
def running_on_m1(fleet):
    """`start(parameters, retries, *worker_args)`: two machines, a run submitted and executing
    on the first one's worker, inside its sleeping cell (the scenarios that freeze, kill or
    force-cancel that machine start so)."""
    q, make, tmp = fleet
    job = machine_notebook(tmp / "job.ipynb")
    m1, m2 = make(2)

    def start(parameters: dict, retries: int, *worker_args: str) -> Running:
        run = q.submit(job, parameters, retries=retries)
        worker = m1.start("worker", *worker_args)
        first = wait_for(lambda: running_on(q, run.id, m1.name, 1), timeout=120)
        return Running(q, m1, m2, worker, run, first)

    return start


def running_on(q: RunQueue, run_id: int, machine: str, attempt: int):
    """The run once its attempt on `machine` is inside its sleeping cell."""
    run = q.get(run_id)
    if run.status is Status.PROCESSING and run.machine == machine and run.attempt == attempt \
            and run.kernel_pid and (files_of(q, run) / "started").exists():
        return run
    return None


def test_three_machines_two_drains_each(fleet):
    q, make, tmp = fleet
    job = machine_notebook(tmp / "job.ipynb")
    marker = tmp / "marks.jsonl"
    ids = {q.submit(job, {"sleep": 1.0 + (i % 2), "marker": str(marker)}).id for i in range(12)}
    machines = make(3)
    drains = [m.start("drain") for m in machines for _ in range(2)]
    for d in drains:
        assert d.wait(timeout=300) == 0
    marks = markers(marker)
    executed = [m["run_id"] for m in marks]
    assert len(executed) == len(set(executed)), f"executed twice: {sorted(executed)}"
    assert set(executed) == ids, f"lost: {ids - set(executed)}"
    by_machine: dict[str, list[dict]] = {}
    for mark in marks:
        by_machine.setdefault(mark["machine"], []).append(mark)
        run = q.get(mark["run_id"], history=True)
        assert run.status is Status.SUCCEEDED and run.attempt == 1 and run.machine == mark["machine"]
        assert [h["status"] for h in run.history].count("processing") == 1
    assert set(by_machine) <= {m.name for m in machines}
    for mark_list in by_machine.values():  # never two at once on one machine
        ordered = sorted(mark_list, key=lambda m: m["start"])
        for before, after in zip(ordered, ordered[1:]):
            assert before["end"] <= after["start"], f"runs {before['run_id']} and {after['run_id']} overlapped"
    overlapping = [(a, b) for a, b in combinations(marks, 2)
                   if a["machine"] != b["machine"] and a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping, "machines never executed at the same time"
    said = [m.output(i) for m in machines for i in range(2)]
    assert sum(int(s.split("executed ")[1].split()[0]) for s in said if "executed " in s and "run(s)" in s) == 12
    for m in machines:
        assert processes_of(m.name) == []


def test_database_refuses_a_second_processing_run_on_one_machine(fleet):
    q, make, tmp = fleet
    job = machine_notebook(tmp / "job.ipynb")
    a, b = q.submit(job).id, q.submit(job).id
    url = q.store.url  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE runs SET status = 'processing', machine = 'gpu-01' WHERE id = %s", (a,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE runs SET status = 'processing', machine = 'gpu-01' WHERE id = %s", (b,))
        conn.execute("UPDATE runs SET status = 'processing', machine = 'gpu-02' WHERE id = %s", (b,))


def test_frozen_machine_is_taken_over_and_its_late_attempt_changes_nothing(running_on_m1):
    q, m1, m2, w1, run, first = running_on_m1({"sleep": 6.0}, 2)
    w2 = m2.start("worker")
    wait_for(lambda: any(w.machine == m2.name for w in q.store.workers()), timeout=120)
    assert signal_machine(m1.name, signal.SIGSTOP) >= 3  # worker, runner, kernel
    try:
        second = wait_for(lambda: running_on(q, run.id, m2.name, 2), timeout=120)
    finally:
        signal_machine(m1.name, signal.SIGCONT)
    # the old attempt's processes end (its worker finds the run no longer its own)
    wait_for(lambda: not alive(first.runner_pid, first.runner_ctime)
             and not alive(first.kernel_pid, first.kernel_ctime), timeout=60)
    done = wait_for(lambda: (r := q.get(run.id, history=True)).status is Status.SUCCEEDED and r, timeout=120)
    folder = Path(done.run_dir)
    state = folder_state(folder)
    wait_for(lambda: f"run {run.id}: " in m1.log() and ("recorded nothing" in m1.log() or "not recorded" in m1.log()),
             timeout=60)
    assert q.get(run.id, history=True).to_dict(with_history=True) == done.to_dict(with_history=True)
    assert folder_state(folder) == state
    assert json.loads((folder / "result.json").read_text())["machine"] == m2.name
    assert "started" in state and not list(folder.glob(".attempt-*"))
    history = [(h["status"], h["by"]) for h in done.history]
    assert history == [("waiting", "alice"), ("processing", first.worker), ("waiting", "reconcile"),
                       ("processing", second.worker), ("succeeded", second.worker)]
    assert f"no heartbeat from machine {m1.name}" in done.history[2]["reason"]
    assert done.machine == m2.name and done.attempt == 2
    for w in (w1, w2):
        w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=120) == 0
    assert processes_of(m1.name) == [] and processes_of(m2.name) == []


def test_machine_killed_mid_run_is_finished_by_another(running_on_m1):
    q, m1, m2, _, run, first = running_on_m1({"sleep": 4.0}, 1, "--queue", "default")
    w2 = m2.start("worker")
    fleet = json.loads(m2.run("workers", "--json").stdout)
    [seen] = [w for w in fleet if w["machine"] == m1.name]
    assert (seen["run_id"], seen["queues"], seen["kind"], seen["gone"]) == (run.id, ["default"], "worker", False)
    assert signal_machine(m1.name, signal.SIGKILL) >= 3
    wait_for(lambda: processes_of(m1.name) == [], timeout=30)
    done = wait_for(lambda: (r := q.get(run.id, history=True)).status is Status.SUCCEEDED and r, timeout=180)
    assert done.machine == m2.name and done.attempt == 2
    assert json.loads((Path(done.run_dir) / "result.json").read_text())["machine"] == m2.name
    assert [h["status"] for h in done.history] == ["waiting", "processing", "waiting", "processing", "succeeded"]
    assert done.history[1]["by"] == first.worker
    # the fleet view, from another machine: the killed worker is marked gone
    listing = m2.run("workers").stdout
    [line] = [line for line in listing.splitlines() if line.startswith(m1.name)]
    assert line.split()[-1] == "gone" and str(run.id) in line.split()
    w2.send_signal(signal.SIGTERM)
    assert w2.wait(timeout=120) == 0
    assert processes_of(m2.name) == []


def test_force_cancel_from_another_machine_ends_the_whole_tree(running_on_m1):
    q, m1, m2, w1, run, started = running_on_m1({"sleep": 600.0, "grandchild": True}, 0)
    grandchild = int((files_of(q, started) / "grandchild.pid").read_text())
    result = _cancel_as(m2, run.id, "alice")
    assert (result.returncode, result.stdout) == (0, f"run {run.id}: cancelled\n"), result.stderr
    # every process of the run is gone when the command returns
    assert not alive(started.runner_pid, started.runner_ctime)
    assert not alive(started.kernel_pid, started.kernel_ctime)
    assert not any(p.pid == grandchild for p in processes_of(m1.name))
    cancelled = q.get(run.id, history=True)
    assert cancelled.status is Status.CANCELLED
    assert cancelled.history[-1]["by"] == "alice"
    assert cancelled.history[-1]["reason"] == \
        f"force-cancelled by alice: wrong data; process tree ended on machine {m1.name}"
    w1.send_signal(signal.SIGTERM)
    assert w1.wait(timeout=120) == 0
    assert processes_of(m1.name) == []


def test_force_cancel_of_a_frozen_machine_gives_up_after_stale_after(running_on_m1):
    q, m1, m2, w1, run, started = running_on_m1({"sleep": 600.0}, 0)
    signal_machine(m1.name, signal.SIGSTOP)
    try:
        result = _cancel_as(m2, run.id, "alice")
    finally:
        signal_machine(m1.name, signal.SIGCONT)
    assert (result.returncode, result.stdout) == (0, f"run {run.id}: cancelled\n"), result.stderr
    cancelled = q.get(run.id, history=True)
    assert cancelled.history[-1]["reason"] == \
        f"force-cancelled by alice: wrong data; machine {m1.name} did not confirm within {STALE_AFTER} s"
    # back from its freeze, the worker finds the run no longer its own and ends its tree
    wait_for(lambda: not alive(started.runner_pid, started.runner_ctime)
             and not alive(started.kernel_pid, started.kernel_ctime), timeout=60)
    w1.send_signal(signal.SIGTERM)
    assert w1.wait(timeout=120) == 0
    assert q.get(run.id, history=True).to_dict(with_history=True) == cancelled.to_dict(with_history=True)
    assert processes_of(m1.name) == []


def _cancel_as(machine: Machine, run_id: int, user: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "runtool", "--home", str(machine.home), "cancel", str(run_id), "--force",
                           "--reason", "wrong data"], env=dict(machine.env, RUNTOOL_USER=user),
                          capture_output=True, text=True, timeout=180)


def test_a_busy_worker_still_takes_dead_machines_runs_out_of_processing(fleet):
    """Every worker looks for stale runs every stale_after, executing or not: a dead machine's
    run goes back to waiting though the only other machine is busy, and runs there next."""
    q, make, tmp = fleet
    job = machine_notebook(tmp / "job.ipynb")
    m1, m2 = make(2)
    long = q.submit(job, {"sleep": 600.0}, retries=0)
    w1 = m1.start("worker")
    wait_for(lambda: running_on(q, long.id, m1.name, 1), timeout=120)
    short = q.submit(job, {"sleep": 1.0}, retries=1)
    m2.start("worker")
    wait_for(lambda: running_on(q, short.id, m2.name, 1), timeout=120)
    signal_machine(m2.name, signal.SIGKILL)
    back = wait_for(lambda: (r := q.get(short.id, history=True)).status is Status.WAITING and r, timeout=120)
    assert back.history[-1]["by"] == "reconcile" and f"no heartbeat from machine {m2.name}" in back.history[-1]["reason"]
    assert q.get(long.id).status is Status.PROCESSING  # m1 was busy all along
    assert _cancel_as(m2, long.id, "alice").returncode == 0
    done = wait_for(lambda: (r := q.get(short.id)).status is Status.SUCCEEDED and r, timeout=120)
    assert done.machine == m1.name and done.attempt == 2
    w1.send_signal(signal.SIGTERM)
    assert w1.wait(timeout=120) == 0
    assert processes_of(m1.name) == [] and processes_of(m2.name) == []
