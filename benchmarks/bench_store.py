"""Item 3: store operations, runtool vs Huey's SqliteStorage, persist-queue and litequeue.

All four at equal durability (WAL, and for each operation the `synchronous` setting runtool
uses for it: see stores.py), on the same disk. Measured:
- enqueue/s and claim+complete/s, one process, a fresh store each round;
- 4 competing processes claiming and completing the same N items: items claimed twice,
  items lost (never handed out), errors, and the combined rate;
- claim latency with 50,000 finished items and 100 waiting (and with an empty history, and
  with a backlog of 5,000 waiting: a parameter sweep submitted at once).
Rounds are interleaved across the stores; figures are medians over rounds.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import common
import stores
from common import say


def _rates(cls: type[stores.Adapter], n: int, where: Path) -> dict[str, float]:
    with common.scratch("rate", where) as folder:
        a = cls(folder)
        t0 = time.perf_counter()
        for i in range(n):
            a.enqueue(i)
        t1 = time.perf_counter()
        got = 0
        while (c := a.claim()) is not None:
            a.complete(c[1])
            got += 1
        t2 = time.perf_counter()
        a.close()
    if got != n:
        raise RuntimeError(f"{cls.name}: claimed {got} of {n}")
    return {"enqueue_per_s": n / (t1 - t0), "cycle_per_s": n / (t2 - t1)}


def _competitor(name: str, folder: str, barrier: Any, out: str) -> None:
    a = stores.ADAPTERS[name](Path(folder))
    claimed: list[int] = []
    errors: list[str] = []
    barrier.wait()
    start = time.time()
    while len(errors) < 50:
        try:
            c = a.claim()
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"claim: {type(exc).__name__}: {exc}")
            continue
        if c is None:
            break
        claimed.append(c[0])
        try:
            a.complete(c[1])
        except Exception as exc:  # noqa: BLE001
            errors.append(f"complete: {type(exc).__name__}: {exc}")
    end = time.time()
    a.close()
    Path(out).write_text(json.dumps({"claimed": claimed, "errors": errors, "start": start, "end": end}))


def _compete(cls: type[stores.Adapter], n: int, procs: int, where: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with common.scratch("compete", where) as folder:
        a = cls(folder)
        for i in range(n):
            a.enqueue(i)
        a.close()
        barrier = ctx.Barrier(procs)
        outs = [str(folder / f"out-{k}.json") for k in range(procs)]
        workers = [ctx.Process(target=_competitor, args=(cls.name, str(folder), barrier, outs[k]))
                   for k in range(procs)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(600)
            if w.is_alive():
                w.kill()
        results = [json.loads(Path(o).read_text()) for o in outs if Path(o).exists()]
        check = cls(folder)
        left = check.claim()  # anything still claimable after every process saw an empty queue
        check.close()
    counts = Counter(i for r in results for i in r["claimed"])
    wall = max(r["end"] for r in results) - min(r["start"] for r in results) if results else float("nan")
    return {
        "claimed_twice": sum(1 for c in counts.values() if c > 1),
        "extra_claims": sum(c - 1 for c in counts.values() if c > 1),
        "lost": n - len(counts), "left_waiting": left is not None,
        "errors": sum(len(r["errors"]) for r in results),
        "error_samples": sorted({e for r in results for e in r["errors"]})[:3],
        "per_process": [len(r["claimed"]) for r in results],
        "crashed_processes": procs - len(results),
        "cycle_per_s": len(counts) / wall if wall > 0 else 0.0,
    }


def _fixture(cls: type[stores.Adapter], finished: int, fast: Path, backlog: int = 0) -> tuple[Path, float, int]:
    """A folder holding `cls`'s store with `finished` finished and `backlog` waiting items (built in RAM)."""
    folder = fast / cls.name.replace(" ", "_")
    folder.mkdir()
    t0 = time.perf_counter()
    a = cls(folder)
    if finished:
        a.fill_finished(finished)
    for i in range(backlog):
        a.enqueue(20_000_000 + i)
    a.close()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return folder, time.perf_counter() - t0, size


def _claim_latency(cls: type[stores.Adapter], fixture: Path, waiting: int, where: Path) -> list[float]:
    with common.scratch("latency", where) as folder:
        shutil.rmtree(folder)
        shutil.copytree(fixture, folder)
        a = cls(folder)
        for i in range(waiting):
            a.enqueue(10_000_000 + i)
        times = a.claim_times(waiting)
        a.close()
    return times


def run(quick: bool) -> dict[str, Any]:
    n_rate, n_compete, procs, finished, waiting, backlog, rounds = (
        (150, 300, 4, 5_000, 100, 1_000, 2) if quick else (500, 2_000, 4, 50_000, 100, 5_000, 5))
    classes = list(stores.ADAPTERS.values())
    disk = common.SCRATCH
    data: dict[str, Any] = {"n_rate": n_rate, "n_compete": n_compete, "procs": procs,
                            "finished": finished, "waiting": waiting, "backlog": backlog, "rounds": rounds}

    say("store: synchronous settings")
    sync = {}
    with common.scratch("sync", disk) as folder:
        for cls in classes:
            sub = folder / cls.name.replace(" ", "_")
            sub.mkdir()
            a = cls(sub)
            sync[cls.name] = {"benchmarked": a.synchronous(), "library_default": cls.default_sync,
                              "notes": cls.notes}
            a.close()
            say(f"  {cls.name}: synchronous {sync[cls.name]['benchmarked']} (library default: {cls.default_sync})")
    data["synchronous"] = sync

    say(f"store: enqueue and claim+complete rates, {n_rate} items x {rounds} rounds")
    rates = common.interleaved(rounds, {c.name: partial(_rates, c, n_rate, disk) for c in classes}, say)
    data["rates"] = rates

    say(f"store: {procs} competing processes over {n_compete} items x {rounds} rounds")
    compete = common.interleaved(rounds, {c.name: partial(_compete, c, n_compete, procs, disk)
                                          for c in classes}, say)
    data["compete"] = compete

    say(f"store: claim latency with {finished} finished and {waiting} waiting, {rounds} rounds")
    with common.scratch("fixtures", common.FAST_SCRATCH) as fast:
        fixtures, empties, backlogs = {}, {}, {}
        for kind in ("full", "empty", "backlog"):
            (fast / kind).mkdir()
        for cls in classes:
            folder, seconds, size = _fixture(cls, finished, fast / "full")
            fixtures[cls.name] = folder
            data.setdefault("fixture", {})[cls.name] = {"build_s": seconds, "bytes": size,
                                                        "bytes_per_item": size / finished}
            say(f"  {cls.name}: {finished} finished items in {seconds:.1f} s, {size / finished:.0f} bytes each")
            empties[cls.name] = _fixture(cls, 0, fast / "empty")[0]
            backlogs[cls.name] = _fixture(cls, 0, fast / "backlog", backlog)[0]
        contenders: dict[str, Callable[[], list[float]]] = {}
        for cls in classes:
            contenders[cls.name] = partial(_claim_latency, cls, fixtures[cls.name], waiting, disk)
            contenders[cls.name + " (empty)"] = partial(_claim_latency, cls, empties[cls.name], waiting, disk)
            contenders[cls.name + " (backlog)"] = partial(_claim_latency, cls, backlogs[cls.name], waiting, disk)
        latency = common.interleaved(rounds, contenders, say)
    data["claim_latency"] = {
        name: {"median_of_round_medians": common.median([common.median(r) for r in rs]),
               "p95_of_round_p95s": common.median([common.percentile(r, 95) for r in rs]),
               "round_medians": [common.median(r) for r in rs]}
        for name, rs in latency.items()}

    # Targets: runtool's claim+complete at least as fast as the fastest peer that loses and
    # duplicates nothing (in any round), and zero lost or duplicated for runtool.
    cycle = {name: common.median([r["cycle_per_s"] for r in rs]) for name, rs in rates.items()}
    clean = {name for name, rs in compete.items()
             if all(r["claimed_twice"] == 0 and r["lost"] == 0 and not r["left_waiting"]
                    and r["errors"] == 0 and r["crashed_processes"] == 0 for r in rs)}
    peers = [n for n in clean if n != "runtool"]
    best = max(peers, key=lambda n: cycle[n]) if peers else None
    data["cycle_median"] = cycle
    data["enqueue_median"] = {name: common.median([r["enqueue_per_s"] for r in rs]) for name, rs in rates.items()}
    data["clean"] = sorted(clean)
    data["fastest_clean_peer"] = best
    data["targets"] = {
        "runtool: none lost or claimed twice": "runtool" in clean,
        "claim+complete >= fastest clean peer": best is None or cycle["runtool"] >= cycle[best],
    }
    say("store: claim+complete/s medians: " + ", ".join(f"{k} {v:.0f}" for k, v in cycle.items()))
    return data


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer rounds, smaller sizes")
    parser.add_argument("--save-as", default="store", help="results file name (default store); "
                        "with PYTHONPATH=DIR holding a patched runtool/, an after-figure beside the peers")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    try:
        common.save(args.save_as, run(args.quick))
    finally:
        common.stop_all()
