"""The four stores compared in item 3, behind one small interface.

Each adapter uses the library's own public calls, WAL, and a 60 s busy timeout so that
contention waits instead of failing. Durability is equal: every store commits each operation
with the `synchronous` setting runtool uses for it (`policy()`, read from runtool/queue.py:
FULL, an fsync before the commit returns, for an enqueue and a completion; NORMAL, no fsync,
for a claim, whose loss in a power cut only leaves the item waiting again). The peers get it
by a `PRAGMA synchronous` on their connection before each operation, as runtool's own
`Store._write` does.

| store | enqueue | claim | complete |
|---|---|---|---|
| runtool | `Store.insert` | `Store.claim` | `Store.transition(processing -> succeeded)` |
| Huey `SqliteStorage` | `enqueue` | `dequeue` (deletes the task) | `put_data` (the result store) |
| persist-queue `SQLiteAckQueue` | `put` | `get(block=False)` | `ack` |
| litequeue `LiteQueue` | `put` | `pop` | `done` |
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import common

SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
BUSY_TIMEOUT_S = 60
OPERATIONS = ("enqueue", "claim", "complete")
_policy: dict[str, str] = {}


def policy() -> dict[str, str]:
    """runtool's `synchronous` per operation, read from the source (no SQL outside queue.py)."""
    if not _policy:
        from runtool import lifecycle
        from runtool.queue import SQLiteStore

        full = "FULL" if "PRAGMA synchronous = FULL" in inspect.getsource(SQLiteStore.__init__) else "unknown"
        light = "NORMAL" if "synchronous = NORMAL" in inspect.getsource(SQLiteStore._transaction) else "unknown"
        for op, method in (("enqueue", lifecycle.submit), ("claim", SQLiteStore.claim),
                           ("complete", lifecycle.change)):
            _policy[op] = light if "durable=False" in inspect.getsource(method) else full
    return _policy


def payload(i: int) -> dict[str, Any]:
    """What a queued notebook run carries, for the peers that store an opaque message."""
    return {"n": i, "notebook": "/bench/detection.ipynb", "parameters": {"threshold": 0.5, "n": i},
            "tags": {"batch": str(i // 100)}, "queue": "default"}


class Adapter:
    name = ""
    default_sync = ""
    notes = ""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sync_now = ""

    def enqueue(self, i: int) -> None:
        self._sync("enqueue")
        self._enqueue(i)

    def claim(self) -> tuple[int, Any] | None:
        """(the item's number, a handle for `complete`), or None when nothing is waiting."""
        self._sync("claim")
        return self._claim()

    def complete(self, handle: Any) -> None:
        self._sync("complete")
        self._complete(handle)

    def claim_times(self, n: int) -> list[float]:
        """Claim and complete `n` waiting items: how long each claim took (s)."""
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            c = self.claim()
            times.append(time.perf_counter() - t0)
            assert c is not None
            self.complete(c[1])
        return times

    def synchronous(self) -> dict[str, str]:
        """The setting each operation commits with, as read back from the connection."""
        seen = {}
        for op in OPERATIONS:
            self._sync(op)
            seen[op] = SYNC_NAMES[self._connection().execute("PRAGMA synchronous").fetchone()[0]]
        return seen

    def _sync(self, op: str) -> None:
        wanted = policy()[op]
        if wanted != self._sync_now:
            self._connection().execute(f"PRAGMA synchronous = {wanted}")
            self._sync_now = wanted

    def _connection(self) -> Any:
        raise NotImplementedError

    def _enqueue(self, i: int) -> None:
        raise NotImplementedError

    def _claim(self) -> tuple[int, Any] | None:
        raise NotImplementedError

    def _complete(self, handle: Any) -> None:
        raise NotImplementedError

    def fill_finished(self, count: int) -> None:
        for i in range(count):
            self.enqueue(i)
            claimed = self.claim()
            assert claimed is not None
            self.complete(claimed[1])

    def close(self) -> None:
        pass


class Runtool(Adapter):
    name = "runtool"
    default_sync = "FULL; NORMAL for heartbeats, progress, pids"
    notes = "guarded UPDATE ... RETURNING in BEGIN IMMEDIATE, partial index on waiting runs; history row per change"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        from runtool import RunQueue, lifecycle
        from runtool.models import Change, Status

        self._lifecycle, self._change, self._status = lifecycle, Change, Status
        self.claimant = common.claimant()
        self.q = RunQueue(folder / "home", user="bench")
        self.store = self.q.store
        self.pid = os.getpid()

    def _sync(self, op: str) -> None:
        pass  # runtool sets its own, per transaction

    def synchronous(self) -> dict[str, str]:
        return dict(policy())  # read from its source: only runtool/queue.py speaks SQL to it

    def _enqueue(self, i: int) -> None:
        self._lifecycle.submit(self.store, common.new_run(i), "bench")

    def _claim(self) -> tuple[int, Any] | None:
        run = self.store.claim([], self.claimant)
        return None if run is None else (run.parameters["n"], run)

    def _complete(self, handle: Any) -> None:
        s = self._status
        self._lifecycle.change(self.store, handle.id, [s.PROCESSING], self._change(s.SUCCEEDED, "bench", "done"),
                               "record success", attempt=handle.attempt)

    def fill_finished(self, count: int) -> None:
        self.close()
        common.copy_store(common.runtool_fixture(count), self.folder / "home" / "runtool.db")
        self.__init__(self.folder)  # type: ignore[misc]

    def close(self) -> None:
        self.q.close()


class Huey(Adapter):
    name = "Huey SqliteStorage"
    default_sync = "FULL (SQLite default; fsync=None leaves it)"
    notes = "dequeue = SELECT then DELETE in BEGIN EXCLUSIVE; finished tasks leave the task table, results go to kv"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        from huey.storage import SqliteStorage

        self.storage = SqliteStorage(name="bench", filename=str(folder / "huey.db"), fsync=True,
                                     timeout=BUSY_TIMEOUT_S)

    def _connection(self) -> Any:
        return self.storage.conn

    def _enqueue(self, i: int) -> None:
        self.storage.enqueue(pickle.dumps(payload(i)))

    def _claim(self) -> tuple[int, Any] | None:
        data = self.storage.dequeue()
        if data is None:
            return None
        message = pickle.loads(data)
        return message["n"], message["n"]

    def _complete(self, handle: Any) -> None:
        self.storage.put_data(f"result:{handle}", pickle.dumps("succeeded"), is_result=True)

    def close(self) -> None:
        self.storage.close()


class PersistQueue(Adapter):
    name = "persist-queue SQLiteAckQueue"
    default_sync = "FULL (SQLite default)"
    notes = "get = SELECT, then a separate UPDATE without a status guard; auto_resume=False"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        from persistqueue import SQLiteAckQueue

        # auto_resume=False: the default (True) puts every unacked item back to ready when
        # any process opens the queue, which would hand out items other processes hold.
        self.queue = SQLiteAckQueue(str(folder / "pq"), auto_resume=False, timeout=BUSY_TIMEOUT_S)
        assert self.queue._getter is self.queue._putter  # one connection (multithreading=False)

    def _connection(self) -> Any:
        return self.queue._putter

    def _enqueue(self, i: int) -> None:
        self.queue.put(payload(i))

    def _claim(self) -> tuple[int, Any] | None:
        from persistqueue.exceptions import Empty

        try:
            item = self.queue.get(block=False, raw=True)
        except Empty:
            return None
        return item["data"]["n"], item["pqid"]

    def _complete(self, handle: Any) -> None:
        self.queue.ack(id=handle)

    def fill_finished(self, count: int) -> None:
        # get() rescans acked rows from the start of the table (no index on status), so a
        # fill through get() is quadratic; ack by id gives the same rows in linear time.
        for i in range(count):
            self.queue.put(payload(i))
        for row in self.queue.queue():
            self.queue.ack(id=row["id"])
        self.queue.total = 0

    def close(self) -> None:
        self.queue.close()


class LiteQueue(Adapter):
    name = "litequeue"
    default_sync = "NORMAL (set by LiteQueue.__init__)"
    notes = "pop = UPDATE ... RETURNING in BEGIN IMMEDIATE; done() has no status guard"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        from litequeue import LiteQueue as LQ

        self.lq = LQ(str(folder / "lq.db"), timeout=BUSY_TIMEOUT_S)

    def _connection(self) -> Any:
        return self.lq.conn

    def _enqueue(self, i: int) -> None:
        self.lq.put(json.dumps(payload(i)))

    def _claim(self) -> tuple[int, Any] | None:
        message = self.lq.pop()
        return None if message is None else (json.loads(message.data)["n"], message.message_id)

    def _complete(self, handle: Any) -> None:
        self.lq.done(handle)

    def close(self) -> None:
        self.lq.conn.close()


ADAPTERS: dict[str, type[Adapter]] = {a.name: a for a in (Runtool, Huey, PersistQueue, LiteQueue)}
