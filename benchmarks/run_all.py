"""Run the whole benchmark suite and write docs/benchmarks.md with its plots (`make bench`).

    .venv/bin/python benchmarks/run_all.py            # full: about 10 minutes
    .venv/bin/python benchmarks/run_all.py --quick    # smoke run, about 2 minutes; results and
                                                      # page go to benchmarks/results/quick/
    .venv/bin/python benchmarks/run_all.py --only store scale

Each benchmark runs as its own process (so that one's imports or memory do not colour the
next), one after another; their stdout is shown, their stderr (kernel chatter) is kept in
benchmarks/results/<name>.stderr.log.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import report

HERE = Path(__file__).resolve().parent
#: Order matters a little: store builds the 50,000-run fixture that scale reuses.
BENCHES = ("store", "scale", "worker", "throughput", "million", "warm", "pg", "machines")


def main() -> int:
    parser = argparse.ArgumentParser(description="run the benchmark suite and write its report")
    parser.add_argument("--quick", action="store_true", help="smoke run with small sizes (results and page in benchmarks/results/quick/)")
    parser.add_argument("--only", nargs="+", choices=BENCHES, help="run only these; the report uses saved results for the rest")
    parser.add_argument("--out", help="where to write the page (default docs/benchmarks.md; --quick: benchmarks/results/quick/benchmarks.md)")
    args = parser.parse_args()
    chosen = args.only or list(BENCHES)
    if args.quick:
        common.RESULTS = common.RESULTS / "quick"
        os.environ["RUNTOOL_BENCH_RESULTS"] = str(common.RESULTS)
    out = Path(args.out) if args.out else (
        common.RESULTS / "benchmarks.md" if args.quick else common.ROOT / "docs" / "benchmarks.md")
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.only:
        for name in BENCHES:  # a full run must not mix in results of an earlier run
            (common.RESULTS / f"{name}.json").unlink(missing_ok=True)
    fixtures = Path(tempfile.mkdtemp(prefix="rtbench-fixtures-", dir=common.FAST_SCRATCH))
    env = dict(os.environ, RUNTOOL_BENCH_FIXTURES=str(fixtures), PYTHONWARNINGS="ignore")
    durations: dict[str, float] = {}
    started = time.perf_counter()
    failed = []
    try:
        for name in chosen:
            t0 = time.perf_counter()
            cmd = [sys.executable, str(HERE / f"bench_{name}.py")] + (["--quick"] if args.quick else [])
            with open(common.RESULTS / f"{name}.stderr.log", "wb") as err:
                proc = subprocess.Popen(cmd, env=env, stderr=err, cwd=str(common.ROOT))
                try:
                    code = proc.wait()
                except KeyboardInterrupt:
                    proc.terminate()
                    proc.wait()
                    raise
            durations[name] = time.perf_counter() - t0
            if code != 0:
                failed.append(name)
                print(f"bench_{name}.py failed (exit {code}); see {common.RESULTS / (name + '.stderr.log')}",
                      file=sys.stderr)
    finally:
        shutil.rmtree(fixtures, ignore_errors=True)
    total = time.perf_counter() - started
    command = "benchmarks/run_all.py" + (" --quick" if args.quick else "")
    meta = {"command": command, "total_s": total, "durations": durations, "quick": args.quick,
            "failed": failed, "rerun": []}
    earlier = common.load("run_all")
    if args.only and earlier and earlier.get("quick") == args.quick:
        # Parts rerun: keep the full run's figures for the rest, and say which were rerun.
        meta["durations"] = {**earlier["durations"], **durations}
        meta["total_s"] = sum(meta["durations"].values())
        meta["rerun"] = sorted(set(earlier.get("rerun", [])) | set(chosen))
        meta["failed"] = sorted((set(earlier.get("failed", [])) - set(chosen)) | set(failed))
    common.save("run_all", meta)
    page = report.build(out, out.parent / "img", common.load("run_all"))
    print(f"wrote {page} in {total / 60:.1f} minutes")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
