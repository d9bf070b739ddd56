"""The rules about runs, written once for every store.

Which status changes are allowed (models.TRANSITIONS), when a continuation becomes
runnable or is cancelled, and how long a failed attempt waits before its retry. Each
operation here is one store transaction made of the store's primitives (queue.Tx).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

from .durations import MAX_DURATION_S
from .errors import IllegalTransition, InvalidInput, RunNotFound
from .models import FINISHED, TRANSITIONS, Change, NewRun, Run, Status
from .queue import Store, Tx

Verdict = Literal["wait", "ready", "cancel"]


def continuation(on: str | None, parents: Sequence[tuple[int, Status | None]]) -> tuple[Verdict, str]:
    """Whether a continuation waits, is runnable, or is cancelled (with the reason).

    It waits while any parent is unfinished; then it is runnable if `on` holds for every
    parent (success: succeeded; failure: failed; finish: either), else cancelled. A deleted
    parent (None) never holds.
    """
    if any(status is not None and status not in FINISHED for _, status in parents):
        return "wait", ""
    for parent_id, status in parents:
        holds = (
            (on == "success" and status is Status.SUCCEEDED)
            or (on == "failure" and status is Status.FAILED)
            or (on == "finish" and status in (Status.SUCCEEDED, Status.FAILED))
        )
        if not holds:
            what = "was deleted" if status is None else f"ended {status.value}"
            return "cancel", f"parent run {parent_id} {what}; this run continues it only on {on}"
    return "ready", ""


def retry_delay(base_delay: float, attempt: int) -> float:
    """Seconds before the retry of failed attempt `attempt` (1, 2, ...): base * 2**(attempt-1)."""
    # capped: doubling 100 years of base delay would reach years no one can show
    return min(base_delay * 2 ** (attempt - 1), MAX_DURATION_S)


def submit(store: Store, new: NewRun, by: str) -> Run:
    """Store a waiting run; a continuation of finished parents is resolved at once."""
    with store.write() as tx:
        for parent in new.after:
            if tx.get(parent) is None:
                raise InvalidInput(f"bad --after {parent}: no such run")
        run_id = tx.insert(new, by, ready=not new.after)
        if new.after:
            _resolve(tx, run_id)
        run = tx.get(run_id)
    assert run is not None
    return run


def submit_sweep(store: Store, news: Sequence[NewRun], by: str) -> list[Run]:
    """Store the runs of a sweep in one transaction (all or none), each tagged
    `sweep=<id of the first>`."""
    runs = []
    with store.write() as tx:
        for parent in news[0].after if news else ():
            if tx.get(parent) is None:
                raise InvalidInput(f"bad --after {parent}: no such run")
        sweep: str | None = None
        for new in news:
            if sweep is not None:
                new = replace(new, tags={**new.tags, "sweep": sweep})
            run_id = tx.insert(new, by, ready=not new.after)
            if sweep is None:
                sweep = str(run_id)
                tx.set_tags(run_id, {**new.tags, "sweep": sweep})
            if new.after:
                _resolve(tx, run_id)
            run = tx.get(run_id)
            assert run is not None
            runs.append(run)
    return runs


def change(store: Store, run_id: int, from_statuses: Sequence[Status], to: Change, action: str,
           attempt: int | None = None, then: Callable[[Run], None] | None = None) -> Run:
    """One guarded status change (and its consequences for continuations).

    IllegalTransition, changing nothing, if the run is not in `from_statuses` (or no longer
    at `attempt`); ValueError if runtool never makes such a change. `then`, given the
    changed run, runs inside the transaction, which it may refuse by raising: the change
    holds the run's row until the commit, so no one else decides about the run meanwhile.
    """
    for source in from_statuses:
        if to.to not in TRANSITIONS[source]:
            raise ValueError(f"{source} -> {to.to} is not a status change runtool makes")
    with store.write() as tx:
        changed = _change(tx, run_id, from_statuses, to, action, attempt)
        if then is not None:
            then(changed)
        return changed


def retry(store: Store, run_id: int, by: str) -> Run:
    """A failed or cancelled run waits again, attempts reset; a continuation whose parents
    are unfinished waits for them again."""
    with store.write() as tx:
        verdict, _ = continuation("finish", tx.parents(run_id))
        again = Change(Status.WAITING, by, "retried", attempt="reset", ready=verdict != "wait", metrics={})
        return _change(tx, run_id, [Status.FAILED, Status.CANCELLED], again, "retry")


def delete(store: Store, run_id: int, allowed: Sequence[Status], action: str = "delete") -> Run:
    """Remove the run and its history if its status is one of `allowed`; its waiting
    continuations are cancelled (a deleted parent never holds)."""
    with store.write() as tx:
        run = tx.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        if run.status not in allowed or not tx.remove(run_id, run.status):
            raise IllegalTransition(run_id, run.status.value, action)
        for child in tx.awaiting_children(run_id):
            _resolve(tx, child)
    return run


def _change(tx: Tx, run_id: int, from_statuses: Sequence[Status], to: Change, action: str,
            attempt: int | None = None) -> Run:
    run = tx.change(run_id, from_statuses, to, attempt)
    if run is None:
        current = tx.get(run_id)
        if current is None:
            raise RunNotFound(run_id)
        raise IllegalTransition(run_id, current.status.value, action)
    if to.to in FINISHED:
        for child in tx.awaiting_children(run_id):
            _resolve(tx, child)
    return run


def _resolve(tx: Tx, child_id: int) -> None:
    child = tx.get(child_id)
    if child is None or child.status is not Status.WAITING:
        return
    verdict, reason = continuation(child.after_on, tx.parents(child_id))
    if verdict == "ready":
        tx.set_ready(child_id)
    elif verdict == "cancel":
        _change(tx, child_id, [Status.WAITING], Change(Status.CANCELLED, "runtool", reason), "cancel")
