"""Several machines on one PostgreSQL queue under random faults (issue 12).

N machines (network namespaces joined to the host by veth pairs, each with its own PID
namespace, when root may make them; else process sessions, without cuts) each run a worker
and, now and then, a cron-like `drain`, over hundreds of short runs, while machines are
killed (-9, every process), frozen (SIGSTOP beyond stale_after, then SIGCONT) and cut off
(link down beyond stale_after, then up) at random. Then every fault is undone, workers
stopped, and the checks:

- lost: runs not succeeded at the end;
- doubled: runs recorded succeeded more than once, or whose run folder holds another
  attempt's result than the one recorded;
- overlaps per machine: two runs executing at once on one machine (from the notebooks' own
  start/end marks, fenced attempts included);
- concurrent attempts: two attempts of one run executing at once on two machines, outside the
  moment a frozen attempt's kernel resumes before its worker ends it (it writes only into its
  private folder);
- leftover processes: any process of any machine still alive after the workers stopped.

    .venv/bin/python scripts/machine_soak.py                         # 4 machines, 200 runs
    .venv/bin/python scripts/machine_soak.py --machines 3 --runs 300 --out /tmp/soak.json

Prints a Markdown summary; exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pg  # noqa: E402
from machines import (  # noqa: E402
    Machine,
    Net,
    end_machine,
    ip,
    machine_notebook,
    netns_unavailable,
    processes_of,
    signal_machine,
)

from runtool import RunQueue, Status  # noqa: E402


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=4)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--stale-after", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="runtool-machine-soak-"))
    why_not = netns_unavailable()
    net = Net(args.machines) if why_not is None else None
    server = None
    machines: list[Machine] = []
    try:
        hosts: list[tuple[str, str]] = []  # (netns, host-side veth)
        listen = "127.0.0.1"
        if net is not None:
            made = [net.add(i) for i in range(args.machines)]
            hosts = [(ns, host) for ns, host, _ in made]
            listen = ",".join(["127.0.0.1", *(a for _, _, a in made)])
        else:
            log(f"no network namespaces ({why_not}): machines are process sessions, no cuts")
        server = pg.start(listen=listen, hba=("host all all 10.231.0.0/16 trust",))
        url = server.new_database()
        home = root / "home"
        home.mkdir()
        (home / "runtool.toml").write_text(
            f'stale_after = "{args.stale_after}s"\nretry_base_delay = "0s"\npoll = "0.5s"\n[store]\nurl = "{url}"\n')
        logs = root / "logs"
        logs.mkdir()
        port, db = url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1], url.rsplit("/", 1)[1]
        for i in range(args.machines):
            name = f"s{i + 1}-{net.tag if net else rng.randrange(10**6)}"
            if net is not None:
                ns, _, address = net.names[i][0], net.names[i][1], f"10.231.{net.names[i][2]}.1"
                machines.append(Machine(name, home, logs, prefix=Net.prefix(ns),
                                        env={"RUNTOOL_DATABASE_URL": f"postgresql://postgres@{address}:{port}/{db}",
                                             "RUNTOOL_LOCK_DIR": str(root / "locks")}))
            else:
                machines.append(Machine(name, home, logs, env={"RUNTOOL_LOCK_DIR": str(root / "locks")}))
        q = RunQueue(home, user="soak")
        job = machine_notebook(root / "job.ipynb")
        marker = root / "marks.jsonl"
        ids = [q.submit(job, {"sleep": round(rng.uniform(0.2, 0.8), 2), "marker": str(marker)}, retries=50).id
               for _ in range(args.runs)]
        log(f"{args.runs} runs on {args.machines} machines ({'netns' if net else 'sessions'}), home {home}")
        result = soak(q, machines, hosts, ids, rng, args.stale_after, args.timeout, marker)
    finally:
        for machine in machines:
            end_machine(machine.name)
        if net is not None:
            net.remove()
        if server is not None:
            server.stop()
    print(summary(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    failed = result["lost"] or result["doubled"] or result["overlaps"] or result["concurrent"] or result["leftover"]
    return 1 if failed else 0


def soak(q: RunQueue, machines: list[Machine], hosts: list[tuple[str, str]], ids: list[int],
         rng: random.Random, stale_after: float, timeout: float, marker: Path) -> dict:
    faults: dict[str, int] = {"kill": 0, "freeze": 0, "cut": 0, "drain": 0}
    frozen: dict[str, list[tuple[float, float]]] = {m.name: [] for m in machines}
    undo: dict[str, tuple[float, str]] = {}  # machine -> (when, what to undo)
    for m in machines:
        m.start("worker")
    began = time.time()
    next_fault = began + 3.0
    while time.time() - began < timeout:
        now = time.time()
        for i, m in enumerate(machines):
            if m.name in undo and undo[m.name][0] <= now:
                what = undo.pop(m.name)[1]
                if what == "thaw":
                    signal_machine(m.name, signal.SIGCONT)
                    frozen[m.name][-1] = (frozen[m.name][-1][0], time.time())
                elif what == "link":
                    ip("link", "set", hosts[i][1], "up")
                elif what == "restart":
                    m.start("worker")
        if now >= next_fault:
            next_fault = now + rng.uniform(1.5, 4.0)
            free = [i for i, m in enumerate(machines) if m.name not in undo]
            if free:
                i = rng.choice(free)
                m = machines[i]
                kinds = ["kill", "freeze", "drain", "drain"] + (["cut"] if hosts else [])
                kind = rng.choice(kinds)
                faults[kind] += 1
                if kind == "kill":
                    signal_machine(m.name, signal.SIGKILL)
                    undo[m.name] = (now + rng.uniform(0.5, 2.0), "restart")
                elif kind == "freeze":
                    signal_machine(m.name, signal.SIGSTOP)
                    frozen[m.name].append((now, float("inf")))
                    undo[m.name] = (now + stale_after * rng.uniform(1.3, 2.5), "thaw")
                elif kind == "cut":
                    ip("link", "set", hosts[i][1], "down")
                    undo[m.name] = (now + stale_after * rng.uniform(1.3, 2.5), "link")
                else:
                    m.start("drain")
        done = q.count(status="succeeded")
        if done == len(ids):
            break
        time.sleep(0.2)
    took = time.time() - began
    log(f"finished looking after {took:.0f} s; undoing faults and stopping workers")
    for i, m in enumerate(machines):
        signal_machine(m.name, signal.SIGCONT)
        if hosts:
            ip("link", "set", hosts[i][1], "up")
    for m in machines:  # SIGTERM to the Python processes (not the unshare around them)
        for proc in processes_of(m.name):
            if proc.name().startswith("python") and "worker" in proc.cmdline():
                proc.send_signal(signal.SIGTERM)
    deadline = time.time() + 120
    while time.time() < deadline and any(processes_of(m.name) for m in machines):
        time.sleep(0.5)
    leftover = {m.name: [p.pid for p in processes_of(m.name)] for m in machines}
    return check(q, ids, marker, frozen, faults, took, leftover)


def check(q: RunQueue, ids: list[int], marker: Path, frozen: dict[str, list[tuple[float, float]]],
          faults: dict[str, int], took: float, leftover: dict[str, list[int]]) -> dict:
    marks = [json.loads(line) for line in marker.read_text().splitlines() if line.strip()] if marker.exists() else []
    lost, doubled, attempts = [], [], 0
    for run_id in ids:
        run = q.get(run_id, history=True)
        attempts += run.attempt
        if run.status is not Status.SUCCEEDED:
            lost.append(run_id)
            continue
        result = json.loads((Path(run.run_dir) / "result.json").read_text())
        mine = Path(result["run_dir"]).name == Path(run.attempt_dir).name
        if [h["status"] for h in run.history].count("succeeded") != 1 or not mine:
            doubled.append(run_id)
    overlaps = []
    by_machine: dict[str, list[dict]] = {}
    for mark in marks:
        by_machine.setdefault(mark["machine"], []).append(mark)
    for machine, items in by_machine.items():
        items.sort(key=lambda m: m["start"])
        for a, b in zip(items, items[1:]):
            if a["end"] > b["start"]:
                overlaps.append((machine, a["run_id"], b["run_id"]))
    concurrent = []
    by_run: dict[int, list[dict]] = {}
    for mark in marks:
        by_run.setdefault(mark["run_id"], []).append(mark)
    for run_id, items in by_run.items():
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                start, end = max(a["start"], b["start"]), min(a["end"], b["end"])
                if start >= end:
                    continue
                # allowed only while one of the two was frozen, or the moment after its thaw
                if not any(f0 <= start and end <= f1 + 1.0 for m in (a, b) for f0, f1 in frozen.get(m["machine"], [])):
                    concurrent.append((run_id, a["machine"], b["machine"]))
    late = sum(len(items) - 1 for items in by_run.values())
    return {"runs": len(ids), "machines": len(by_machine), "seconds": round(took, 1), "faults": faults,
            "attempts": attempts, "marks": len(marks), "late_completions": late, "lost": lost,
            "doubled": doubled, "overlaps": overlaps, "concurrent": concurrent,
            "leftover": {k: v for k, v in leftover.items() if v}}


def summary(r: dict) -> str:
    return "\n".join([
        "| runs | machines | faults (kill / freeze / cut / extra drains) | attempts | lost | doubled |"
        " overlaps per machine | concurrent attempts | leftover processes | time |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['runs']} | {r['machines']} | {r['faults']['kill']} / {r['faults']['freeze']} / {r['faults']['cut']}"
        f" / {r['faults']['drain']} | {r['attempts']} | {len(r['lost'])} | {len(r['doubled'])} | {len(r['overlaps'])}"
        f" | {len(r['concurrent'])} | {sum(len(v) for v in r['leftover'].values())} | {r['seconds']:.0f} s |",
        "",
        f"Runs completed by more than one attempt (a frozen or cut-off attempt that finished its"
        f" notebook before it was fenced, its files kept private and discarded): {r['late_completions']}.",
    ])


if __name__ == "__main__":
    sys.exit(main())
