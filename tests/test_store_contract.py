"""The store contract: every method of `queue.Store` and `queue.Tx`, and the rules of
`lifecycle` made of them, run against each store implementation (tests/stores.py).

These talk to the store directly, below `RunQueue`: no notebook, no kernel, no permission.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
from stores import PREPARE, STORE_KINDS

from runtool import lifecycle
from runtool.config import load_settings
from runtool.errors import IllegalTransition, InvalidInput, RunNotFound
from runtool.models import LABELS, Change, Claimant, NewRun, RunFilter, Status, WorkerInfo
from runtool.queue import Store, open_store

ME = Claimant("contract:1", os.getpid(), 0.0, "m1")
BOOM = {"type": "ValueError", "message": "boom", "cell": 2, "traceback": "Traceback ..."}


@pytest.fixture(params=STORE_KINDS)
def store_home(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    PREPARE[request.param](home)
    return home


@pytest.fixture
def store(store_home: Path):
    opened = open_store(store_home, load_settings(store_home))
    yield opened
    opened.close()


def new(n: int = 0, queue: str = "default", priority: int = 0, kind: str = "job",
        after: tuple[int, ...] = (), on: str | None = None, not_before: float | None = None,
        max_attempts: int = 2) -> NewRun:
    return NewRun(notebook="/nb/job.ipynb", kind=kind, queue=queue, priority=priority,
                  parameters={"n": n, "label": "é ✓"}, tags={"batch": str(n)},
                  max_attempts=max_attempts, kernel="python3", not_before=not_before,
                  after=after, after_on=on)  # type: ignore[arg-type]


def submit(store: Store, *args, **kw) -> int:
    return lifecycle.submit(store, new(*args, **kw), "alice").id


def finish(store: Store, run_id: int, to: Status = Status.SUCCEEDED) -> None:
    """Claim `run_id` (it must be next) and end its attempt as `to`."""
    claimed = store.claim([], ME)
    assert claimed is not None and claimed.id == run_id, claimed
    lifecycle.change(store, run_id, [Status.PROCESSING], Change(to, "w", "done", BOOM if to is Status.FAILED else None),
                     "record", attempt=claimed.attempt)


def end(store: Store, run_id: int) -> None:
    """End a processing run's attempt (failed)."""
    lifecycle.change(store, run_id, [Status.PROCESSING], Change(Status.FAILED, "w", "done", BOOM), "record")


# -- submitting and reading ------------------------------------------------------------


def test_insert_get_and_history_round_trip(store: Store) -> None:
    before = store.now()
    run_id = submit(store, 7)
    run = store.get(run_id)
    assert (run.status, run.notebook, run.kind, run.queue) == (Status.WAITING, "/nb/job.ipynb", "job", "default")
    assert run.parameters == {"n": 7, "label": "é ✓"} and run.tags == {"batch": "7"}
    assert (run.attempt, run.max_attempts, run.ready, run.after, run.metrics) == (0, 2, True, [], {})
    assert before - 1 <= run.created_at <= store.now() + 1
    assert run.run_dir == f"{store.runs_dir}/{run_id}"
    assert [(h["status"], h["by"], h["reason"]) for h in store.history(run_id)] == [("waiting", "alice", "submitted")]
    with pytest.raises(RunNotFound):
        store.get(run_id + 1000)


def test_ids_are_never_reused(store: Store) -> None:
    first = submit(store)
    second = submit(store)
    lifecycle.delete(store, second, [Status.WAITING])
    assert submit(store) == second + 1 > first


def test_list_and_count_filter_and_page_newest_first(store: Store) -> None:
    ids = [submit(store, i, queue="q1" if i % 2 else "q2", kind="a" if i < 3 else "b") for i in range(6)]
    lifecycle.change(store, ids[0], [Status.WAITING], Change(Status.CANCELLED, "bob", "no"), "cancel")
    assert [r.id for r in store.list(RunFilter(), 50, 0)] == ids[::-1]
    assert [r.id for r in store.list(RunFilter(), 2, 1)] == ids[::-1][1:3]
    assert [r.id for r in store.list(RunFilter(queue="q1"), 50, 0)] == [ids[5], ids[3], ids[1]]
    assert [r.id for r in store.list(RunFilter(kind="a", queue="q2"), 50, 0)] == [ids[2], ids[0]]
    assert [r.id for r in store.list(RunFilter(statuses=(Status.CANCELLED,)), 50, 0)] == [ids[0]]
    assert store.count(RunFilter()) == 6 and store.count(RunFilter(kind="b")) == 3
    assert store.count(RunFilter(statuses=(Status.WAITING, Status.CANCELLED))) == 6
    assert store.kinds_and_queues() == (["a", "b"], ["q1", "q2"])


def test_text_search_finds_words_and_prefixes_in_notebook_parameters_and_tags(store: Store) -> None:
    a = lifecycle.submit(store, NewRun("/nb/detect_50%.ipynb", "d", "default", 0,
                                       {"score_threshold": 0.5, "x": "a_b"}, {"t": "zeta"}, 1), "u").id
    b = submit(store, 1)
    found = {text: [r.id for r in store.list(RunFilter(text=text), 50, 0)]
             for text in ("zeta", "ZETA", "ZET", "ZET*", "detect", "50%", "a_b", "score_threshold 0.5",
                          "thresh* 0.5", "0.5 zeta", "ipynb", "eta*", "zeta nope", "%", '"', "AND (", "*")}
    assert found == {"zeta": [a], "ZETA": [a], "ZET": [], "ZET*": [a], "detect": [a], "50%": [a], "a_b": [a],
                     "score_threshold 0.5": [a], "thresh* 0.5": [a], "0.5 zeta": [a], "ipynb": [b, a],
                     "eta*": [], "zeta nope": [], "%": [], '"': [], "AND (": [], "*": []}
    assert store.count(RunFilter(text="é ✓")) == 1  # accents folded: "e" is a word of run b
    assert store.count(RunFilter(text="ipynb", kind="d")) == 1


def test_a_run_id_searched_for_comes_first(store: Store) -> None:
    ids = [submit(store, i) for i in range(12)]  # parameters n = 0..11, tags batch = the same
    hits = [r.id for r in store.list(RunFilter(text="1"), 50, 0)]
    assert hits == [ids[0], ids[1]]  # run 1 (n = 0) first, then the run with n = 1
    assert store.count(RunFilter(text="1")) == 2
    assert [r.id for r in store.list(RunFilter(text="1"), 1, 1)] == [ids[1]]
    assert [r.id for r in store.list(RunFilter(text="1*"), 50, 0)] == [ids[11], ids[10], ids[1]]  # a prefix, no id
    assert [r.id for r in store.list(RunFilter(text="1*"), 2, 1)] == [ids[10], ids[1]]
    assert [r.id for r in store.list(RunFilter(text="1", kind="other"), 50, 0)] == []


def test_count_stops_at_its_cap(store: Store) -> None:
    for i in range(6):
        submit(store, i)
    assert store.count(RunFilter(text="job")) == 6
    assert store.count(RunFilter(text="job"), cap=3) == 4
    assert store.count(RunFilter(kind="job"), cap=10) == 6


def test_counts_per_label(store: Store) -> None:
    now = store.now()
    waiting = submit(store)
    submit(store, not_before=now + 3600)  # scheduled
    parent = submit(store)
    submit(store, after=(parent,), on="success")  # awaiting
    lifecycle.change(store, waiting, [Status.WAITING], Change(Status.CANCELLED, "u", "x"), "cancel")
    counts = store.counts(store.now())
    assert set(counts) == set(LABELS)
    assert {k: v for k, v in counts.items() if v} == {"waiting": 1, "scheduled": 1, "awaiting": 1, "cancelled": 1}


# -- claiming ----------------------------------------------------------------------------


def test_claim_order_queue_order_then_priority_then_age(store: Store) -> None:
    low = submit(store, queue="b", priority=-10)
    old = submit(store, queue="b")
    young = submit(store, queue="b")
    high = submit(store, queue="b", priority=10)
    other = submit(store, queue="a", priority=100)
    order = []
    # a machine each: a shared store refuses a second processing run on one machine
    while (run := store.claim(["b", "a"], Claimant(f"c:{len(order)}", 1, 0.0, f"m{len(order)}"))) is not None:
        order.append(run.id)
    assert order == [high, old, young, low, other]
    assert store.claim([], ME) is None


def test_one_processing_run_per_machine_on_a_shared_store(store: Store) -> None:
    first, second = submit(store), submit(store)
    assert store.claim([], ME) is not None
    other = store.claim([], ME)
    if store.shared:  # the database itself refuses it, whatever the executor locks say
        assert other is None
        end(store, first)
        other = store.claim([], ME)
    assert other is not None and other.id == second


def test_heartbeat_says_whether_the_attempt_is_still_its_own(store: Store) -> None:
    run_id = submit(store)
    run = store.claim([], ME)
    assert run is not None
    beat = store.heartbeat(run_id, 1, (1, 3), ME.name)
    assert beat.own and beat.cancel is None and store.get(run_id).progress_done == 1
    assert not store.heartbeat(run_id, 1, None, "someone-else").own
    assert not store.heartbeat(run_id, 2, None, ME.name).own
    if store.shared:
        assert store.request_cancel(run_id, 1, "alice", "force-cancelled by alice")
        assert store.heartbeat(run_id, 1, None, ME.name).cancel == ("alice", "force-cancelled by alice")
        assert store.get(run_id).cancel_requested == ("alice", "force-cancelled by alice")
    else:
        assert not store.request_cancel(run_id, 1, "alice", "force-cancelled by alice")
    end(store, run_id)
    assert not store.heartbeat(run_id, 1, None, ME.name).own
    assert not store.request_cancel(run_id, 1, "alice", "too late")


def test_workers_are_noted_renewed_and_forgotten(store: Store) -> None:
    info = WorkerInfo("gpu-01:7", "gpu-01", 7, ["a", "b"], 0.0, 0.0, None, "drain")
    store.worker_beat(info)
    [noted] = store.workers()
    assert (noted.name, noted.machine, noted.pid, noted.queues, noted.run_id, noted.kind) == (
        "gpu-01:7", "gpu-01", 7, ["a", "b"], None, "drain")
    assert abs(noted.heartbeat_at - store.now()) < 60
    info.run_id = 5
    store.worker_beat(info)
    assert [w.run_id for w in store.workers()] == [5]
    store.worker_gone("gpu-01:7")
    assert store.workers() == []


def test_workers_not_heard_from_since_a_time_are_forgotten(store: Store) -> None:
    """What `purge` and the worker's hourly pass remove: rows of workers gone for long."""
    store.worker_beat(WorkerInfo("gpu-01:7", "gpu-01", 7, [], 0.0, 0.0, None, "worker"))
    time.sleep(0.05)
    between = store.now()
    time.sleep(0.05)
    store.worker_beat(WorkerInfo("gpu-02:8", "gpu-02", 8, [], 0.0, 0.0, 3, "drain"))
    assert store.forget_workers(between - 60) == 0
    assert store.forget_workers(between) == 1
    assert [w.name for w in store.workers()] == ["gpu-02:8"]
    assert store.forget_workers(store.now() + 1) == 1
    assert store.workers() == []


def test_claim_records_worker_machine_attempt_and_history(store: Store) -> None:
    run_id = submit(store)
    run = store.claim([], ME)
    assert run is not None and run.id == run_id
    assert (run.status, run.attempt, run.worker, run.worker_pid, run.machine) == (
        Status.PROCESSING, 1, "contract:1", os.getpid(), "m1")
    assert run.started_at is not None and run.heartbeat_at == run.started_at
    assert store.history(run_id)[-1]["reason"] == "attempt 1 of 2"
    assert [r.id for r in store.processing()] == [run_id]


def test_claim_skips_paused_scheduled_awaiting_and_other_queues(store: Store) -> None:
    submit(store, queue="paused")
    submit(store, not_before=store.now() + 3600)
    parent_of = submit(store, queue="held")
    submit(store, after=(parent_of,), on="success")
    store.pause("paused", "admin")
    store.pause("held", "admin")
    assert store.paused() == {"paused": "admin", "held": "admin"}
    assert not store.has_runnable([], store.now())
    assert store.claim([], ME) is None
    assert store.next_due(store.now()) is not None
    store.resume("paused")
    assert store.has_runnable([], store.now()) and not store.has_runnable(["nope"], store.now())
    assert store.claim(["nope"], ME) is None
    claimed = store.claim([], ME)
    assert claimed is not None and claimed.queue == "paused"
    store.pause("*", "admin")
    store.resume(None)
    assert store.paused() == {}


def _claim_all(home: str, go, queue: multiprocessing.Queue) -> None:
    store = open_store(Path(home), load_settings(Path(home)))
    me = Claimant(f"p:{os.getpid()}", os.getpid(), 0.0, f"m{os.getpid()}")
    got = []
    go.wait()
    while (run := store.claim([], me)) is not None:
        got.append(run.id)
        time.sleep(0.002)  # "executing" it, outside any transaction: the others claim meanwhile
        lifecycle.change(store, run.id, [Status.PROCESSING], Change(Status.SUCCEEDED, me.name, "ok"),
                         "record", attempt=run.attempt)
    store.close()
    queue.put(got)


def test_claims_exactly_once_under_several_processes(store: Store, store_home: Path) -> None:
    ids = [submit(store, i) for i in range(120)]
    ctx = multiprocessing.get_context("spawn")
    results, go = ctx.Queue(), ctx.Barrier(4)
    procs = [ctx.Process(target=_claim_all, args=(str(store_home), go, results)) for _ in range(4)]
    for p in procs:
        p.start()
    claimed = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    flat = sorted(i for got in claimed for i in got)
    assert flat == ids, "every run claimed exactly once"
    assert sum(1 for got in claimed if got) >= 2, "the claims were spread over processes"
    assert store.count(RunFilter(statuses=(Status.SUCCEEDED,))) == 120


# -- the worker's small writes ----------------------------------------------------------


def test_heartbeat_and_processes_only_touch_the_current_attempt(store: Store) -> None:
    run_id = submit(store)
    run = store.claim([], ME)
    assert run is not None
    store.heartbeat(run_id, run.attempt, (2, 5))
    store.record_processes(run_id, run.attempt, (111, 1.5), (222, 2.5))
    got = store.get(run_id)
    assert (got.progress_done, got.progress_total) == (2, 5)
    assert (got.runner_pid, got.runner_ctime, got.kernel_pid, got.kernel_ctime) == (111, 1.5, 222, 2.5)
    assert got.heartbeat_at is not None and got.heartbeat_at >= run.started_at
    store.heartbeat(run_id, run.attempt + 1, (4, 5))  # a stale attempt's heartbeat
    store.record_processes(run_id, run.attempt + 1, (333, 3.0), None)
    got = store.get(run_id)
    assert (got.progress_done, got.runner_pid) == (2, 111)


def test_change_marker_moves_when_another_connection_commits(store: Store, store_home: Path) -> None:
    marker = store.change_marker()
    other = open_store(store_home, load_settings(store_home))
    try:
        lifecycle.submit(other, new(), "bob")
    finally:
        other.close()
    assert store.change_marker() != marker


def test_wait_for_change_wakes_for_another_connections_submit(store: Store, store_home: Path) -> None:
    store.wait_for_change(0)  # starts listening (a first call may say True: it cannot know)
    while store.wait_for_change(0):
        pass
    assert store.wait_for_change(0.05) is False
    other = open_store(store_home, load_settings(store_home))
    try:
        lifecycle.submit(other, new(), "bob")
    finally:
        other.close()
    assert store.wait_for_change(30) is True


# -- guarded changes and their history ---------------------------------------------------


def test_guarded_change_writes_one_history_row_or_nothing(store: Store) -> None:
    run_id = submit(store)
    lifecycle.change(store, run_id, [Status.WAITING], Change(Status.CANCELLED, "bob", "not needed"), "cancel")
    with pytest.raises(IllegalTransition, match="cannot cancel: not allowed while cancelled"):
        lifecycle.change(store, run_id, [Status.WAITING], Change(Status.CANCELLED, "bob", "again"), "cancel")
    with pytest.raises(ValueError):  # a change runtool never makes
        lifecycle.change(store, run_id, [Status.SUCCEEDED], Change(Status.WAITING, "bob", "x"), "retry")
    with pytest.raises(RunNotFound):
        lifecycle.change(store, run_id + 99, [Status.WAITING], Change(Status.CANCELLED, "bob", "x"), "cancel")
    assert [h["status"] for h in store.history(run_id)] == ["waiting", "cancelled"]
    run = store.get(run_id)
    assert run.status is Status.CANCELLED and run.finished_at is not None


def test_attempt_guard_refuses_a_late_attempt(store: Store) -> None:
    run_id = submit(store)
    first = store.claim([], ME)
    assert first is not None
    lifecycle.change(store, run_id, [Status.PROCESSING], Change(Status.WAITING, "w", "retry", BOOM, not_before=0.0),
                     "record", attempt=1)
    second = store.claim([], ME)
    assert second is not None and second.attempt == 2
    with pytest.raises(IllegalTransition):  # attempt 1's worker comes back late
        lifecycle.change(store, run_id, [Status.PROCESSING], Change(Status.SUCCEEDED, "late", "ok"), "record", attempt=1)
    assert store.get(run_id).status is Status.PROCESSING


def test_failed_attempt_back_to_waiting_keeps_error_and_not_before(store: Store) -> None:
    run_id = submit(store)
    assert store.claim([], ME) is not None
    due = store.now() + 60
    run = lifecycle.change(store, run_id, [Status.PROCESSING],
                           Change(Status.WAITING, "w", "failed; retry", BOOM, not_before=due), "record", attempt=1)
    assert (run.status, run.error, run.not_before, run.attempt) == (Status.WAITING, BOOM, due, 1)
    assert run.label(store.now()) == "retrying"
    assert store.history(run_id)[-1]["error"] == BOOM
    assert store.next_due(store.now()) == due


def test_uncount_and_reset_the_attempt(store: Store) -> None:
    run_id = submit(store)
    assert store.claim([], ME) is not None
    back = lifecycle.change(store, run_id, [Status.PROCESSING],
                            Change(Status.WAITING, "w", "stopped", attempt="uncount"), "requeue", attempt=1)
    assert back.attempt == 0 and back.label(store.now()) == "waiting"
    finish(store, run_id, Status.FAILED)
    failed = store.get(run_id)
    assert failed.error == BOOM and failed.attempt == 1
    again = lifecycle.retry(store, run_id, "bob")
    assert (again.status, again.attempt, again.error, again.started_at, again.finished_at) == (
        Status.WAITING, 0, None, None, None)
    assert [h["status"] for h in store.history(run_id)] == [
        "waiting", "processing", "waiting", "processing", "failed", "waiting"]
    with pytest.raises(IllegalTransition):
        lifecycle.retry(store, run_id, "bob")  # waiting runs are not retried


def test_metrics_are_recorded_with_the_change(store: Store) -> None:
    run_id = submit(store)
    assert store.claim([], ME) is not None
    done = lifecycle.change(store, run_id, [Status.PROCESSING],
                            Change(Status.SUCCEEDED, "w", "ok", metrics={"accuracy": 0.99, "n": 3}), "record")
    assert done.metrics == {"accuracy": 0.99, "n": 3} == store.get(run_id).metrics


def test_list_sorted_by_a_metric_nulls_last_with_paging_and_search(store: Store) -> None:
    hostile = 'it\'s a "b".c\\ $[0] -- ; DROP TABLE runs'
    values = [0.5, None, 2, -1.25, 0.5, None, 10]  # None: the run recorded no such metric
    ids = []
    for i, value in enumerate(values):
        run_id = submit(store, i, kind="a")
        assert store.claim([], ME) is not None
        metrics = {"other": 1.0} if value is None else {"acc": value, hostile: -value, "acc.x": 7}
        lifecycle.change(store, run_id, [Status.PROCESSING], Change(Status.SUCCEEDED, "w", "ok", metrics=metrics),
                         "record")
        ids.append(run_id)
    waiting = submit(store, 99, kind="a")  # no metrics at all (and "99" is a word only it has)
    submit(store, 98, kind="b")  # another kind: filtered out

    def listed(name: str, descending: bool = True, limit: int = 50, offset: int = 0, **kw) -> list[int]:
        where = RunFilter(kind="a", sort_metric=name, descending=descending, **kw)
        return [r.id for r in store.list(where, limit, offset)]

    # highest first; equal values newest first; runs without the metric last, newest first
    by_acc = [ids[6], ids[2], ids[4], ids[0], ids[3], waiting, ids[5], ids[1]]
    assert listed("acc") == by_acc
    assert listed("acc", descending=False) == [ids[3], ids[4], ids[0], ids[2], ids[6], waiting, ids[5], ids[1]]
    assert listed("acc", limit=3, offset=2) == by_acc[2:5] and listed("acc", limit=3, offset=6) == by_acc[6:]
    assert listed(hostile) == [ids[3], ids[4], ids[0], ids[2], ids[6], waiting, ids[5], ids[1]]
    assert listed("acc.x") == [ids[6], ids[4], ids[3], ids[2], ids[0], waiting, ids[5], ids[1]]
    assert listed("no such metric") == [waiting, *ids[::-1]]  # newest first, as without a sort
    assert listed("acc", text="ipynb", limit=4) == by_acc[:4]  # a text search, sorted
    assert listed("acc", text="99") == [waiting] and listed("acc", text="5 6") == []
    assert listed("acc", statuses=(Status.WAITING,)) == [waiting]
    assert store.count(RunFilter(kind="a", sort_metric="acc")) == 8
    assert store.get(ids[0]).metrics[hostile] == -0.5  # the hostile name did no harm
    with store.write() as tx:  # a text value where a number is expected sorts as missing
        tx.change(ids[6], [Status.SUCCEEDED], Change(Status.SUCCEEDED, "w", "x", metrics={"acc": "high"}))
    assert listed("acc")[:2] == [ids[2], ids[4]] and ids[6] in listed("acc")[-4:]


def _finish_with(store: Store, run_id: int, metrics: dict, to: Status = Status.SUCCEEDED) -> None:
    claimed = store.claim([], ME)
    assert claimed is not None and claimed.id == run_id, claimed
    lifecycle.change(store, run_id, [Status.PROCESSING], Change(to, "w", "ok", metrics=metrics), "record",
                     attempt=claimed.attempt)


def _sorted(store: Store, name: str = "acc", descending: bool = True, limit: int = 50, offset: int = 0,
            **kw) -> list[int]:
    return [r.id for r in store.list(RunFilter(kind="a", sort_metric=name, descending=descending, **kw),
                                     limit, offset)]


def _every_page(store: Store, name: str = "acc", descending: bool = True, size: int = 2) -> list[int]:
    """The sorted list read page by page (pages across the boundary between the runs with the
    metric and those without must neither skip nor repeat a run)."""
    got, offset = [], 0
    while page := _sorted(store, name, descending, limit=size, offset=offset):
        got += page
        offset += size
    return got


def _measured_runs(store: Store) -> list[int]:
    """Five finished runs of kind a with acc 3, 1, 2 (failed), none, 2 (ids in that order)."""
    ids = []
    for i, value in enumerate((3, 1, 2, None, 2.0)):
        ids.append(submit(store, kind="a"))
        _finish_with(store, ids[-1], {"loss": 0.1} if value is None else {"acc": value, "loss": 0.5},
                     Status.FAILED if i == 2 else Status.SUCCEEDED)
    return ids


def test_metrics_changed_by_a_retry_and_a_new_finish_change_the_order(store: Store) -> None:
    a, b, c, none, d = _measured_runs(store)
    assert _sorted(store) == [a, d, c, b, none]
    lifecycle.retry(store, c, "alice")  # a retry clears the metrics: c sorts with the runs without
    assert store.get(c).metrics == {}
    assert _sorted(store) == [a, d, b, none, c] and _every_page(store) == [a, d, b, none, c]
    assert _sorted(store, descending=False) == [b, d, a, none, c]
    _finish_with(store, c, {"acc": 9, "loss": 0.2})  # finished again, with a new value
    assert _sorted(store) == [c, a, d, b, none] and _every_page(store, size=3) == [c, a, d, b, none]
    assert _sorted(store, "loss", descending=False) == [none, c, d, b, a]
    with store.write() as tx:  # any change of the metrics is followed, down to none at all
        tx.change(a, [Status.SUCCEEDED], Change(Status.SUCCEEDED, "w", "x", metrics={"acc": -1}))
        tx.change(b, [Status.SUCCEEDED], Change(Status.SUCCEEDED, "w", "x", metrics={}))
    assert _sorted(store) == [c, d, a, none, b] and _sorted(store, "loss") == [d, c, none, b, a]
    with store.write() as tx:  # a status filter follows a status change that keeps the metrics
        tx.change(d, [Status.SUCCEEDED], Change(Status.FAILED, "w", "x"))
    assert _sorted(store, statuses=(Status.FAILED,)) == [d]
    assert _sorted(store, statuses=(Status.SUCCEEDED,)) == [c, a, none, b]


def test_a_deleted_or_purged_run_leaves_the_sorted_list_and_its_paging(store: Store) -> None:
    a, b, c, none, d = _measured_runs(store)
    lifecycle.delete(store, d, [Status.SUCCEEDED])
    later = submit(store, kind="a")  # waiting: no metrics yet
    assert _sorted(store) == [a, c, b, later, none]
    assert [_every_page(store, size=n) for n in (1, 2, 3)] == [[a, c, b, later, none]] * 3
    from runtool import cleanup

    assert set(cleanup.purge(store, store.now() + 60)) == {a, b, c, none}
    assert _sorted(store) == [later] and _sorted(store, offset=1) == []
    assert _metric_entries(store) == 0  # nothing of the deleted runs is left behind


def test_every_page_of_a_sort_is_exact_across_the_runs_without_the_metric(store: Store) -> None:
    having, without = [], []
    for i in range(9):
        run_id = submit(store, kind="a")
        if i % 3 == 0:
            _finish_with(store, run_id, {"acc": i})
            having.append(run_id)
        else:  # finished with other metrics, or failed with none
            _finish_with(store, run_id, {"other": i} if i % 3 == 1 else {}, Status.FAILED if i % 3 == 2 else
                         Status.SUCCEEDED)
            without.append(run_id)
    without += [submit(store, kind="a") for _ in range(3)]  # waiting
    expected = having[::-1] + without[::-1]
    assert len(expected) == 12 and _sorted(store) == expected
    for size in (1, 2, 3, 5, 7):
        assert _every_page(store, size=size) == expected, size
        assert _every_page(store, descending=False, size=size) == having + without[::-1], size
    failed = [r for r in without[::-1] if store.get(r).status is Status.FAILED]
    assert len(failed) == 3
    assert [_sorted(store, statuses=(Status.FAILED,), limit=1, offset=n) for n in range(4)] == [[r] for r in failed] + [[]]


def _metric_entries(store: Store) -> int:
    """Rows of the side table that orders runs by a metric (each store keeps its own)."""
    if hasattr(store, "url"):
        import psycopg

        with psycopg.connect(store.url) as conn:  # type: ignore[attr-defined]
            return int(conn.execute("SELECT count(*) FROM run_metrics").fetchone()[0])
    import sqlite3

    conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
    try:
        return int(conn.execute("SELECT count(*) FROM run_metrics").fetchone()[0])
    finally:
        conn.close()


def _forget_run_metrics(store: Store) -> None:
    """Take the store back to the schema before run_metrics (SQLite 3, PostgreSQL 2)."""
    if hasattr(store, "url"):
        import psycopg

        with psycopg.connect(store.url) as conn:  # type: ignore[attr-defined]
            conn.execute("DROP TABLE run_metrics")
            conn.execute("DROP FUNCTION runtool_keep_metrics CASCADE")  # and its triggers
            conn.execute("DROP INDEX runs_kind_status")
            conn.execute("UPDATE runtool_schema SET version = 2")
        return
    import sqlite3

    conn = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
    for trigger in ("runs_measured", "runs_unmeasured", "runs_remeasured"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE run_metrics")
    conn.execute("DROP INDEX runs_kind_status")
    conn.execute("PRAGMA user_version = 3")
    conn.close()


def test_a_migrated_store_sorts_as_a_new_one(store: Store, store_home: Path) -> None:
    a, b, c, none, d = _measured_runs(store)
    waiting = submit(store, kind="a")
    before = {(name, desc, off): _sorted(store, name, desc, limit=2, offset=off)
              for name in ("acc", "loss") for desc in (True, False) for off in range(0, 7)}
    assert before["acc", True, 0] == [a, d] and before["acc", True, 4] == [waiting, none]
    store.close()
    _forget_run_metrics(store)
    migrated = open_store(store_home, load_settings(store_home))  # migrates, filling run_metrics
    try:
        after = {(name, desc, off): _sorted(migrated, name, desc, limit=2, offset=off)
                 for name in ("acc", "loss") for desc in (True, False) for off in range(0, 7)}
        assert after == before and _metric_entries(migrated) == 9
        _finish_with(migrated, waiting, {"acc": 2.5})  # and keeps it in step from then on
        assert _sorted(migrated) == [a, waiting, d, c, b, none]
    finally:
        migrated.close()


def test_a_sweep_is_stored_whole_and_tagged_with_its_first_id(store: Store) -> None:
    parent = submit(store)
    runs = lifecycle.submit_sweep(store, [new(1, after=(parent,), on="success"), new(2, after=(parent,), on="success")],
                                  "alice")
    first = runs[0].id
    assert [store.get(r.id).tags for r in runs] == [{"batch": "1", "sweep": str(first)},
                                                     {"batch": "2", "sweep": str(first)}]
    assert [store.get(r.id).after for r in runs] == [[parent], [parent]]
    assert store.count(RunFilter(text="sweep")) == 2  # the first run's tags were indexed again
    with pytest.raises(InvalidInput):  # a missing parent: nothing of the sweep is stored
        lifecycle.submit_sweep(store, [new(3, after=(999,), on="success")], "alice")
    assert store.count(RunFilter()) == 3


# -- continuations -----------------------------------------------------------------------


def test_continuation_of_several_parents_waits_for_all(store: Store) -> None:
    a, b = submit(store), submit(store)
    child = submit(store, after=(a, b), on="success")
    assert store.get(child).after == [a, b] and store.get(child).label(store.now()) == "awaiting"
    finish(store, a)
    assert not store.get(child).ready
    finish(store, b)
    assert store.get(child).ready and store.get(child).status is Status.WAITING


@pytest.mark.parametrize("on, outcome, expected", [
    ("success", Status.SUCCEEDED, "ready"), ("success", Status.FAILED, "cancelled"),
    ("failure", Status.FAILED, "ready"), ("failure", Status.SUCCEEDED, "cancelled"),
    ("finish", Status.FAILED, "ready"), ("finish", Status.SUCCEEDED, "ready"),
])
def test_continuation_condition(store: Store, on: str, outcome: Status, expected: str) -> None:
    parent = submit(store)
    child = submit(store, after=(parent,), on=on)
    finish(store, parent, outcome)
    run = store.get(child)
    if expected == "ready":
        assert run.status is Status.WAITING and run.ready
    else:
        assert run.status is Status.CANCELLED
        assert store.history(child)[-1]["reason"] == (
            f"parent run {parent} ended {outcome.value}; this run continues it only on {on}")


def test_cancel_cascades_and_a_finished_parent_resolves_at_submit(store: Store) -> None:
    parent = submit(store)
    child = submit(store, after=(parent,), on="success")
    grandchild = submit(store, after=(child,), on="finish")
    lifecycle.change(store, parent, [Status.WAITING], Change(Status.CANCELLED, "bob", "no"), "cancel")
    assert store.get(child).status is Status.CANCELLED
    assert store.get(grandchild).status is Status.CANCELLED  # its parent ended cancelled
    late = submit(store, after=(parent,), on="success")
    assert store.get(late).status is Status.CANCELLED
    with pytest.raises(InvalidInput, match="bad --after 9999: no such run"):
        submit(store, after=(9999,), on="success")


def test_delete_removes_run_history_and_cancels_continuations(store: Store) -> None:
    parent = submit(store)
    child = submit(store, after=(parent,), on="finish")
    deleted = lifecycle.delete(store, parent, [Status.WAITING])
    assert deleted.id == parent
    with pytest.raises(RunNotFound):
        store.get(parent)
    assert store.history(parent) == []
    assert store.get(child).status is Status.CANCELLED
    assert f"parent run {parent} was deleted" in store.history(child)[-1]["reason"]
    processing = submit(store)
    assert store.claim([], ME) is not None
    with pytest.raises(IllegalTransition):
        lifecycle.delete(store, processing, [Status.WAITING, Status.SUCCEEDED])
    assert store.get(processing).status is Status.PROCESSING


def test_retry_of_a_continuation_waits_for_unfinished_parents(store: Store) -> None:
    parent = submit(store)
    child = submit(store, after=(parent,), on="success")
    lifecycle.change(store, child, [Status.WAITING], Change(Status.CANCELLED, "bob", "no"), "cancel")
    assert not lifecycle.retry(store, child, "bob").ready  # parent still waiting
    finish(store, parent)
    assert store.get(child).ready


# -- purge -------------------------------------------------------------------------------


def test_finished_before_selects_what_purge_removes(store: Store) -> None:
    old = submit(store)
    finish(store, old)
    waiting = submit(store)
    time.sleep(0.01)
    cutoff = store.now()
    assert store.finished_before(cutoff, [Status.SUCCEEDED, Status.FAILED]) == [old]
    assert store.finished_before(cutoff, [Status.FAILED]) == []
    assert store.finished_before(store.get(old).finished_at or 0, [Status.SUCCEEDED]) == []
    from runtool.cleanup import purge

    assert purge(store, cutoff) == [old]
    assert [r.id for r in store.list(RunFilter(), 50, 0)] == [waiting]
