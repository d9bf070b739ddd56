"""Simulated machines for the several-machines tests: process sessions with their own
RUNTOOL_MACHINE (and, in test_netns.py, their own network and PID namespaces) sharing one
PostgreSQL database and one home, as machines share a database and a network folder.

A machine's processes are found by the RUNTOOL_MACHINE in their environment, which the
runner, the kernel and everything the kernel starts inherit: kill -9 of all of them is
"the machine died", SIGSTOP of all of them "the machine froze".
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import psutil

from helpers import PYTHON, notebook

MACHINE_PARAMETERS = """\
sleep = 1.0
marker = ""
grandchild = False
run_id = 0
run_dir = ""
"""
MACHINE_BODY = [
    "import json, os, subprocess, time\nt0 = time.time()\nmachine = os.environ.get('RUNTOOL_MACHINE', '')",
    "if grandchild:\n"
    "    child = subprocess.Popen(['sleep', '600'])\n"
    "    open(os.path.join(run_dir, 'grandchild.pid'), 'w').write(str(child.pid))\n"
    "open(os.path.join(run_dir, 'started'), 'w').write(machine)\n"
    "time.sleep(sleep)",
    "if marker:\n"
    "    with open(marker, 'a') as f:\n"
    "        f.write(json.dumps({'run_id': run_id, 'machine': machine, 'start': t0, 'end': time.time()}) + '\\n')\n"
    "with open(os.path.join(run_dir, 'result.json'), 'w') as f:\n"
    "    json.dump({'run_id': run_id, 'machine': machine, 'run_dir': run_dir}, f)",
]


def machine_notebook(path: Path) -> Path:
    return notebook(path, parameters=MACHINE_PARAMETERS, body=MACHINE_BODY)


def machine_name(prefix: str = "m") -> str:
    """Unique per test run: other test sessions on this box must never look like ours."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def processes_of(machine: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("RUNTOOL_MACHINE") == machine and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def signal_machine(machine: str, sig: int) -> int:
    """Send `sig` to every process of the machine; how many there were."""
    procs = processes_of(machine)
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass
    return len(procs)


def end_machine(machine: str) -> None:
    """Teardown: wake and kill whatever the machine still runs."""
    for _ in range(3):
        procs = processes_of(machine)
        if not procs:
            return
        for proc in procs:
            try:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)


class Machine:
    """One simulated machine: commands run in their own session as RUNTOOL_MACHINE=name."""

    def __init__(self, name: str, home: Path, logs: Path, prefix: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.home, self.logs = name, home, logs
        self.prefix = prefix or []  # e.g. ip netns exec + unshare
        self.env = dict(os.environ, RUNTOOL_MACHINE=name, **(env or {}))
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        index = len(self.procs)
        out = open(self.logs / f"{self.name}-{index}.out", "w")
        err = open(self.logs / f"{self.name}-{index}.err", "w")
        proc = subprocess.Popen([*self.prefix, PYTHON, "-m", "runtool", "--home", str(self.home), *args],
                                env=self.env, stdout=out, stderr=err, text=True, start_new_session=True)
        out.close()
        err.close()
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, PYTHON, "-m", "runtool", "--home", str(self.home), *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def log(self, index: int = 0) -> str:
        return (self.logs / f"{self.name}-{index}.err").read_text()

    def output(self, index: int = 0) -> str:
        return (self.logs / f"{self.name}-{index}.out").read_text()


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def netns_unavailable() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        return "needs root, ip and unshare"
    probe = f"rtprobe{uuid.uuid4().hex[:6]}"
    made = ip("netns", "add", probe)
    if made.returncode:
        return f"ip netns not permitted here: {made.stderr.strip()}"
    ip("netns", "del", probe)
    return None


class Net:
    """Namespaces and veth pairs made for one test, always removed."""

    def __init__(self, count: int = 2) -> None:
        self.tag = uuid.uuid4().hex[:5]
        used = ip("-o", "addr").stdout
        free = [n for n in range(1, 250) if f"10.231.{n}." not in used]
        self.subnets = random.sample(free, count)
        self.names: list[tuple[str, str, int]] = []  # (netns, host-side veth, subnet)

    def add(self, index: int) -> tuple[str, str, str]:
        """A namespace with a link to the host; returns (netns, host veth, host address)."""
        n = self.subnets[index]
        ns, host, inside = f"rt{self.tag}m{index}", f"vrt{self.tag}{index}", f"ert{self.tag}{index}"
        self.names.append((ns, host, n))
        for args in (("netns", "add", ns), ("link", "add", host, "type", "veth", "peer", "name", inside),
                     ("link", "set", inside, "netns", ns), ("addr", "add", f"10.231.{n}.1/24", "dev", host),
                     ("link", "set", host, "up"),
                     ("netns", "exec", ns, "ip", "addr", "add", f"10.231.{n}.2/24", "dev", inside),
                     ("netns", "exec", ns, "ip", "link", "set", inside, "up"),
                     ("netns", "exec", ns, "ip", "link", "set", "lo", "up")):
            done = ip(*args)
            assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"
        return ns, host, f"10.231.{n}.1"

    @staticmethod
    def prefix(ns: str) -> list[str]:
        """Run a command on the machine: in its network namespace and a PID namespace of its own."""
        return ["ip", "netns", "exec", ns, "unshare", "--pid", "--fork", "--mount-proc"]

    def remove(self) -> None:
        for ns, host, _ in self.names:
            ip("link", "del", host)
            ip("netns", "del", ns)


def folder_state(folder: Path) -> dict[str, str]:
    """Every file under a run folder with a digest of its content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
