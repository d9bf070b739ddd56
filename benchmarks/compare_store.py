"""Before/after for runtool's store: the installed runtool vs patched copies, interleaved.

    python benchmarks/compare_store.py --variant fixed=/tmp/copy [--rounds 5] [--n 500]

Each variant is a folder holding a patched `runtool/` package, put first on PYTHONPATH of a
fresh process per measurement. Measured per round and variant: claim+complete/s and
enqueue/s on disk (synchronous=FULL, as in bench_store.py), CPU time per claim+complete
in RAM (no fsync: what the code itself costs), and claim latency behind a backlog.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import common

HERE = Path(__file__).resolve().parent


def _measure(n: int, backlog: int) -> dict[str, Any]:
    """Runs inside the child process, with the variant's runtool importable."""
    import runtool
    import stores
    from bench_store import _rates

    out: dict[str, Any] = {"runtool_file": runtool.__file__}
    out.update(_rates(stores.Runtool, n, common.SCRATCH))
    with common.scratch("cpu", common.FAST_SCRATCH) as folder:
        a = stores.Runtool(folder)
        for i in range(n):
            a.enqueue(i)
        t0 = time.process_time()
        while (c := a.claim()) is not None:
            a.complete(c[1])
        out["cpu_us_per_cycle"] = (time.process_time() - t0) / n * 1e6
        a.close()
    with common.scratch("backlog", common.SCRATCH) as folder:
        a = stores.Runtool(folder)
        for i in range(backlog):
            a.enqueue(i)
        times = a.claim_times(100)
        a.close()
    out["claim_ms_behind_backlog"] = common.median(times) * 1000
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args.n, args.backlog)))
        return 0
    variants = {"installed": None, **dict(v.split("=", 1) for v in args.variant)}

    def one(src: str | None) -> dict[str, Any]:
        env = dict(os.environ)
        if src:
            env["PYTHONPATH"] = src
        cmd = [sys.executable, str(Path(__file__)), "--child", "--n", str(args.n), "--backlog", str(args.backlog)]
        return json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)

    res = common.interleaved(args.rounds, {name: partial(one, src) for name, src in variants.items()},
                             common.say)
    summary = {name: {k: common.median([r[k] for r in rs]) for k in rs[0] if k != "runtool_file"}
               | {"runtool_file": rs[0]["runtool_file"]} for name, rs in res.items()}
    for name, s in summary.items():
        common.say(f"{name}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in s.items()))
    common.save("compare_store", {"variants": variants, "results": res, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
