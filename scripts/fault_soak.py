"""The fault campaign's long soaks (issue 7): many kill -9 trials, the 60 s cron storm, the
8 x 500 submit storm and submit durability, with the checks of tests/fault_checks.py.

    .venv/bin/python scripts/fault_soak.py                  # everything, full sizes (~25 min)
    .venv/bin/python scripts/fault_soak.py --only kill --trials 100
    .venv/bin/python scripts/fault_soak.py --only cron,submit --out /tmp/soak.json

Prints a Markdown summary (pasted into docs/reliability.md) and writes every trial's
details as JSON to --out. Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fault_checks import (
    CRASH_POINTS,
    cron_storm,
    integrity,
    kill_trial,
    run_python,
    submit_storm,
    summary,
)

from runtool import RunQueue

SUBMIT_THEN_DIE = """
import os, signal, sys
from runtool import RunQueue
q = RunQueue(sys.argv[1])
run = q.submit(sys.argv[2], {"n": int(sys.argv[3])})
print(run.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def soak_kill(root: Path, trials: int, seed: int, runs: int) -> dict:
    """Half the trials kill at a random moment (from the worker's start, or from its first
    claim, in turn), the rest cycle through the fixed points."""
    rng = random.Random(seed)
    fixed = ["claiming", *CRASH_POINTS]
    results = []
    for i in range(trials):
        mode = ("random", "random-run")[(i // 2) % 2] if i % 2 == 0 else fixed[(i // 2) % len(fixed)]
        folder = root / f"kill-{i}"
        trial = kill_trial(folder, mode, rng, runs=runs)
        results.append(asdict(trial))
        log(f"kill trial {i + 1}/{trials} {mode:9} killed in {trial.killed_in or '-':32} "
            f"{len(trial.problems)} problem(s) {trial.seconds:.1f} s")
        for problem in trial.problems:
            log(f"    {problem}")
        shutil.rmtree(folder, ignore_errors=True)
    return {"trials": results}


def soak_durability(root: Path, count: int) -> dict:
    home = root / "durable" / "home"
    job = root / "durable" / "job.ipynb"
    job.parent.mkdir(parents=True)
    from helpers import notebook

    notebook(job)
    RunQueue(home).close()
    answered, died = [], 0
    began = time.monotonic()
    for i in range(count):
        result = run_python(SUBMIT_THEN_DIE, str(home), str(job), str(i))
        died += result.returncode == -signal.SIGKILL
        if result.stdout.strip():
            answered.append(int(result.stdout))
    with RunQueue(home) as q:
        stored = {r.id: r.parameters["n"] for r in q.list(limit=count + 10)}
    missing = [i for i in answered if i not in stored]
    return {"submits": count, "killed": died, "answered": len(answered), "found": len(stored),
            "missing": missing, "integrity": integrity(home), "seconds": round(time.monotonic() - began, 1)}


def markdown(report: dict) -> str:
    lines = []
    if "kill" in report:
        trials = report["kill"]["trials"]
        by_mode = collections.defaultdict(list)
        for t in trials:
            by_mode[t["mode"]].append(t)
        lines += ["### kill -9 trials", "",
                  "| how the worker died | trials | killed | runs | executions | repaired by reconcile | runs ended | problems | s/trial |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for mode, group in by_mode.items():
            ends = collections.Counter(s for t in group for s in t["statuses"].values())
            lines.append(
                f"| {mode} | {len(group)} | {sum(t['killed'] for t in group)} | "
                f"{sum(len(t['statuses']) for t in group)} | {sum(t['executions'] for t in group)} | "
                f"{sum(t['repaired'] for t in group)} | "
                + ", ".join(f"{n} {s}" for s, n in sorted(ends.items()))
                + f" | {sum(len(t['problems']) for t in group)} | "
                f"{sum(t['seconds'] for t in group) / len(group):.1f} |")
        where = collections.Counter(
            "in a cell" if " cell " in t["killed_in"] else
            "after the last cell" if "after its last" in t["killed_in"] else
            "a run just claimed, before its first cell" if t["killed_in"].endswith(" starting") else
            "the worker starting or idle" if t["killed_in"] == "idle or starting" else t["killed_in"]
            for t in trials if t["mode"].startswith("random"))
        lines += ["", "Random kills landed: " + ", ".join(f"{n} {w}" for w, n in where.most_common()) + "."]
    if "cron" in report:
        c = report["cron"]
        extra = summary(c["extra_seconds"])
        cpu = summary(c["cpu_seconds"])
        work = summary(c["working_seconds"])
        lines += ["", "### cron storm", "",
                  (f"{c['per_second']} drains started every second for {c['seconds']} s over {c['runs']} runs "
                  f"({c['wall']} s in all): {c['drains']} drains, exit codes {c['exit_codes']}; "
                  f"{len(c['working_seconds'])} drain(s) executed runs ({', '.join(f'{n}x {k}' for k, n in c['executed_by'].items())}), "
                  f"{len(c['extra_seconds'])} found another executing or nothing runnable and left; "
                  f"runs not done when the storm ended: {c['left_after_storm']}; problems: {len(c['problems'])}."),
                  "",
                  f"Time an extra drain took from start to exit: median {extra.get('median', 0):.2f} s, "
                  f"p95 {extra.get('p95', 0):.2f} s, max {extra.get('max', 0):.2f} s"
                  + (f"; working drains: median {work.get('median', 0):.1f} s, max {work.get('max', 0):.1f} s." if work else ".")
                  + f" CPU per drain process (user + system): median {cpu.get('median', 0):.2f} s, "
                  f"p95 {cpu.get('p95', 0):.2f} s; started {c['drains']} of "
                  f"{int(c['seconds'] * c['per_second'])} planned (the harness spawns on time only while the machine keeps up)."]
    if "submit" in report:
        s = report["submit"]
        t = s["submit_seconds"]
        r = s["refresh_seconds"]
        lines += ["", "### submit storm", "",
                  (f"{s['procs']} processes x {s['each']} submissions while a worker drained and a dashboard "
                  f"refreshed in a loop ({s['wall']} s): {s['submitted']} submitted, {s['stored']} stored, "
                  f"{s['executed']} executed by the worker meanwhile, {s['refreshes']} dashboard refreshes; "
                  f"problems: {len(s['problems'])}."), "",
                  (f"`submit` (Python API, one process each, fsync'ed commits): median {t['median'] * 1000:.1f} ms, "
                  f"p95 {t['p95'] * 1000:.1f} ms, **p99 {t['p99'] * 1000:.1f} ms**, max {t['max'] * 1000:.0f} ms. "
                  f"Dashboard refresh meanwhile: median {r.get('median', 0) * 1000:.0f} ms, "
                  f"p99 {r.get('p99', 0) * 1000:.0f} ms.")]
    if "durability" in report:
        d = report["durability"]
        lines += ["", "### submit durability", "",
                  (f"{d['submits']} processes each submitted one run, printed its id and killed themselves with "
                  f"SIGKILL ({d['killed']} killed): {d['answered']} ids printed, {d['found']} runs found afterwards, "
                  f"missing {len(d['missing'])}; integrity_check {d['integrity']} ({d['seconds']} s).")]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="kill,cron,submit,durability",
                        help="comma-separated parts: kill, cron, submit, durability")
    parser.add_argument("--trials", type=int, default=60, help="kill -9 trials (default 60)")
    parser.add_argument("--runs-per-trial", type=int, default=3)
    parser.add_argument("--cron-seconds", type=float, default=60)
    parser.add_argument("--cron-per-second", type=int, default=10)
    parser.add_argument("--cron-runs", type=int, default=30)
    parser.add_argument("--submit-procs", type=int, default=8)
    parser.add_argument("--submit-each", type=int, default=500)
    parser.add_argument("--durability", type=int, default=200, help="submit-then-kill -9 processes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "fault_soak.json"))
    args = parser.parse_args()
    parts = set(args.only.split(","))
    root = Path(tempfile.mkdtemp(prefix="fault-soak-"))
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "seed": args.seed}
    began = time.monotonic()
    try:
        if "kill" in parts:
            report["kill"] = soak_kill(root, args.trials, args.seed, args.runs_per_trial)
        if "cron" in parts:
            log("cron storm ...")
            report["cron"] = asdict(cron_storm(root / "cron", args.cron_seconds, args.cron_per_second, args.cron_runs))
            log(f"cron storm: {len(report['cron']['problems'])} problem(s)")
        if "submit" in parts:
            log("submit storm ...")
            report["submit"] = asdict(submit_storm(root / "submit", args.submit_procs, args.submit_each))
            log(f"submit storm: {len(report['submit']['problems'])} problem(s)")
        if "durability" in parts:
            log("submit durability ...")
            report["durability"] = soak_durability(root, args.durability)
    finally:
        report["seconds"] = round(time.monotonic() - began, 1)
        Path(args.out).write_text(json.dumps(report, indent=1))
        shutil.rmtree(root, ignore_errors=True)
    print(markdown(report))
    print(f"\n(total {report['seconds']:.0f} s; details in {args.out})")
    problems = [p for t in report.get("kill", {}).get("trials", []) for p in t["problems"]]
    problems += report.get("cron", {}).get("problems", []) + report.get("submit", {}).get("problems", [])
    problems += [f"missing {m}" for m in report.get("durability", {}).get("missing", [])]
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
