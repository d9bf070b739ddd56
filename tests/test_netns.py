"""Machines in network namespaces (shared/recipes/machines-in-netns.md): each machine is a
netns joined to the host by a veth pair, with its own PID namespace, reaching PostgreSQL on
the host over TCP, so that cutting a machine's link is a real network cut."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

import pg
from helpers import wait_for, write_config
from machines import Machine, Net, end_machine, folder_state, ip, machine_notebook, netns_unavailable, processes_of
from runtool import RunQueue, Status
from runtool.processes import TOKEN_VAR, run_token

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.kernel]
STALE_AFTER = 4


@pytest.fixture
def netns_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    why = netns_unavailable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"machines in network namespaces: {why}")
        pytest.skip(f"{why}; test_machines.py covers the same with process sessions")
    net = Net()
    server = None
    machines: list[Machine] = []
    try:
        addresses = [net.add(i) for i in range(2)]
        listen = ",".join(["127.0.0.1", *(a for _, _, a in addresses)])
        server = pg.start(listen=listen, hba=("host all all 10.231.0.0/16 trust",))
        url = server.new_database()
        port = psycopg_port(url)
        home = tmp_path / "home"
        write_config(home, f'stale_after = "{STALE_AFTER}s"\nretry_base_delay = "0s"\npoll = "0.5s"\n'
                           f'[store]\nurl = "{url}"\n')
        monkeypatch.setenv("RUNTOOL_LOCK_DIR", str(tmp_path / "locks"))
        logs = tmp_path / "logs"
        logs.mkdir()
        for i, (ns, _, address) in enumerate(addresses):
            name = f"n{i + 1}-{net.tag}"
            machines.append(Machine(
                name, home, logs, prefix=Net.prefix(ns),
                env={"RUNTOOL_DATABASE_URL": f"postgresql://postgres@{address}:{port}/{url.rsplit('/', 1)[1]}"}))
        q = RunQueue(home, user="alice")
        yield q, machines, [host for _, host, _ in net.names]
        q.close()
    finally:
        for machine in machines:
            end_machine(machine.name)
        net.remove()
        if server is not None:
            server.stop()


def psycopg_port(url: str) -> str:
    return url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]


def attempt_processes(machine: str, run) -> list:
    token = run_token(run.run_dir, run.started_at)
    found = []
    for proc in processes_of(machine):
        try:
            if proc.environ().get(TOKEN_VAR) == token:
                found.append(proc)
        except psutil.Error:  # gone meanwhile
            continue
    return found


def worker_process(machine: str) -> psutil.Process:
    """The machine's (idle) worker: the Python process, not the unshare around it."""
    return next(p for p in processes_of(machine) if p.name().startswith("python") and "worker" in p.cmdline())


def test_network_cut_mid_run_then_restored(netns_fleet):
    q, (m1, m2), (link1, _) = netns_fleet
    job = machine_notebook(Path(q.home).parent / "job.ipynb")
    run = q.submit(job, {"sleep": 8.0}, retries=2)
    w1 = m1.start("worker")

    def on(machine: Machine, attempt: int):
        current = q.get(run.id)
        if current.status is Status.PROCESSING and current.machine == machine.name and current.attempt == attempt \
                and (Path(current.attempt_dir) / "started").exists():
            return current
        return None

    first = wait_for(lambda: on(m1, 1), timeout=180)
    assert attempt_processes(m1.name, first)  # runner, kernel (found by the attempt's token)
    w2 = m2.start("worker")
    wait_for(lambda: any(w.machine == m2.name for w in q.store.workers()), timeout=180)
    assert ip("link", "set", link1, "down").returncode == 0
    try:
        # cut off, the worker ends its attempt itself (before another machine may take it) ...
        wait_for(lambda: not attempt_processes(m1.name, first), timeout=60)
        # ... and another machine takes the run over and finishes it
        wait_for(lambda: on(m2, 2), timeout=120)
        done = wait_for(lambda: (r := q.get(run.id, history=True)).status is Status.SUCCEEDED and r, timeout=120)
        state = folder_state(Path(done.run_dir))
    finally:
        assert ip("link", "set", link1, "up").returncode == 0
    # back on the network, the first worker records nothing over the winner
    wait_for(lambda: f"run {run.id}: " in m1.log() and "not recorded" in m1.log(), timeout=180)
    assert q.get(run.id, history=True).to_dict(with_history=True) == done.to_dict(with_history=True)
    assert folder_state(Path(done.run_dir)) == state
    assert json.loads((Path(done.run_dir) / "result.json").read_text())["machine"] == m2.name
    assert [(h["status"], h["by"]) for h in done.history] == [
        ("waiting", "alice"), ("processing", first.worker), ("waiting", "reconcile"),
        ("processing", done.worker), ("succeeded", done.worker)]
    assert f"no heartbeat from machine {m1.name}" in done.history[2]["reason"]
    assert "lease lost" in m1.log()
    for machine, proc in ((m1, w1), (m2, w2)):
        worker_process(machine.name).send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, machine.log()
    assert processes_of(m1.name) == [] and processes_of(m2.name) == []
