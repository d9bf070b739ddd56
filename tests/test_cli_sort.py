"""`runtool list --kind K --sort METRIC [--ascending]`: the kind's runs by a metric, a thin
layer over RunQueue.list; a sort without a kind or by no possible name is one line, exit 2."""

from __future__ import annotations

import json

import pytest
from helpers import cli

from runtool import RunQueue, lifecycle
from runtool.models import Change, Claimant, NewRun, Status

ME = Claimant("cli-sort:1", 1, 0.0, "m1")


def finished(q: RunQueue, kind: str, metrics: dict) -> int:
    """A run of `kind` claimed and finished with `metrics`, through the store (no kernel)."""
    run = lifecycle.submit(q.store, NewRun(notebook="/nb/job.ipynb", kind=kind, queue="default", priority=0,
                                           parameters={}, tags={}, max_attempts=1, kernel="python3"), "alice")
    claimed = q.store.claim([], ME)
    assert claimed is not None and claimed.id == run.id
    lifecycle.change(q.store, run.id, [Status.PROCESSING], Change(Status.SUCCEEDED, "w", "ok", metrics=metrics),
                     "record", attempt=claimed.attempt)
    return run.id


@pytest.mark.both_stores
def test_list_sorted_by_a_metric_highest_or_lowest_first(home, store_kind):
    with RunQueue(home) as q:
        a = finished(q, "training", {"accuracy": 0.91, "loss": 0.3})
        b = finished(q, "training", {"accuracy": 0.99, "loss": 0.1})
        none = finished(q, "training", {})
        c = finished(q, "training", {"accuracy": 0.95})
        finished(q, "detection", {"accuracy": 1.0})  # another kind: not listed

    def ids(*args: str) -> list[int]:
        result = cli(home, "list", "--kind", "training", "--json", *args)
        assert result.code == 0, result.err
        return [r["id"] for r in json.loads(result.out)]

    assert ids("--sort", "accuracy") == [b, c, a, none]
    assert ids("--sort", "accuracy", "--ascending") == [a, c, b, none]
    assert ids("--sort", "loss", "--limit", "2", "--offset", "1") == [b, c]  # then the runs without it
    assert ids("--sort", "no such metric") == [c, none, b, a]  # none has it: newest first
    table = cli(home, "list", "--kind", "training", "--sort", "accuracy", "--metrics")
    assert table.code == 0 and [line.split()[0] for line in table.out.splitlines()[1:]] == [str(b), str(c), str(a),
                                                                                             str(none)]
    assert table.out.split()[9:11] == ["ACCURACY", "LOSS"]  # the sorted metric first
    plain = cli(home, "list", "--kind", "training", "--sort", "loss").out.splitlines()  # without --metrics
    assert plain[0].split()[9:] == ["LOSS", "PARAMETERS"]
    assert [line.split()[:2] + line.split()[9:10] for line in plain[1:3]] == [[str(a), "succeeded", "0.3"],
                                                                              [str(b), "succeeded", "0.1"]]


@pytest.mark.parametrize("args, message", [
    (["--sort", "accuracy"], "sort by metric 'accuracy': needs a kind (--kind)"),
    (["--kind", "training", "--sort", ""], "bad metric name '': expected 1 to 100 characters"),
    (["--kind", "training", "--sort", "x" * 101], "bad metric name 'xxxx"),
    (["--kind", "training", "--ascending"], "--ascending: needs --sort METRIC"),
])
def test_a_sort_without_a_kind_or_by_a_bad_name_is_one_line_exit_2(home, args, message):
    result = cli(home, "list", *args)
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("runtool: ") and message in result.err and len(result.err.splitlines()) == 1
