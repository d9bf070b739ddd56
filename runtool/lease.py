"""An executing attempt's lease: its heartbeats, renewed from a thread of their own.

The worker's loop never waits on the store while a run executes: a store that hangs (a cut
link, a server gone) must not keep it from ending the run's processes once the lease has
run out, before another machine may take the run over. The thread has its own store
connection, opened and closed with the lease, so one stuck in a hung call harms nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .errors import RuntoolError
from .models import Run
from .queue import Store

log = logging.getLogger("runtool.worker")
#: The part of `stale_after` after which a worker whose heartbeats no longer reach the
#: store ends its run itself: another machine takes the run over only after all of it.
EXPIRES_AT = 0.75


class Lease(threading.Thread):
    def __init__(self, open_store: Callable[[], Store], run: Run, worker: str, stale_after: float,
                 also: Callable[[Store], None] | None = None) -> None:
        super().__init__(name=f"lease-{run.id}", daemon=True)
        self._open, self._run, self._worker, self._also = open_store, run, worker, also
        self.stale_after = stale_after
        self.every = stale_after / 4
        self.renewed = time.monotonic()  # when the last confirmed heartbeat was sent
        self.lost = False
        """The run is no longer this attempt's (reconciled away, or cancelled here)."""
        self.cancel: tuple[str, str] | None = None
        """(who, reason) of a force-cancel asked from another machine."""
        self.progress: tuple[int, int] | None = None
        self.runner: tuple[int, float] | None = None
        self.kernel: tuple[int, float] | None = None
        self._noted: set[str] = set()
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def poke(self) -> None:
        """Renew now (new progress or a new process to note)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def expired(self) -> bool:
        """No heartbeat has reached the store for most of `stale_after`."""
        return time.monotonic() - self.renewed > self.stale_after * EXPIRES_AT

    def run(self) -> None:
        store: Store | None = None
        try:
            while not self._stopping.is_set():
                sent = time.monotonic()
                try:
                    if store is None:
                        store = self._open()
                    self._beat(store, sent)
                except RuntoolError as exc:
                    log.info("run %d: heartbeat not renewed: %s", self._run.id, exc)
                except Exception as exc:  # a driver's surprise must not silently stop the heartbeats
                    log.info("run %d: heartbeat not renewed: %s: %s", self._run.id, type(exc).__name__, exc)
                    _close(store)
                    store = None
                if self.lost:
                    return
                self._wake.wait(self.every)
                self._wake.clear()
        finally:
            _close(store)

    def _beat(self, store: Store, sent: float) -> None:
        run = self._run
        for name, ident in (("runner", self.runner), ("kernel", self.kernel)):
            if ident is not None and name not in self._noted:
                store.record_processes(run.id, run.attempt, ident if name == "runner" else None,
                                       ident if name == "kernel" else None)
                self._noted.add(name)
        beat = store.heartbeat(run.id, run.attempt, self.progress, self._worker)
        if not beat.own:
            self.lost = True
            return
        self.renewed = sent
        self.cancel = beat.cancel
        if self._also is not None:
            self._also(store)


def _close(store: Store | None) -> None:
    if store is not None:
        try:
            store.close()
        except Exception:  # closing a broken connection may fail: nothing to do
            pass
