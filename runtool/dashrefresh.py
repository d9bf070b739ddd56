"""How an open dashboard keeps itself up to date: a thread in JupyterLab, an asyncio task under Voila.

A notebook kernel runs one cell at a time on its main thread: a refresh scheduled on the
kernel's asyncio loop waits while another cell runs (`time.sleep(15)`, a training loop),
so the page would freeze. Widget state changes are comm messages that ipykernel sends on
its IOPub channel from any thread, so in a notebook the refresh runs in a daemon thread
instead; every change to the dashboard's widgets and every use of its store connection
happens under the dashboard's one lock, taken by that thread and by the click handlers
on the main thread alike. Under Voila, which has no other cells to wait for, the asyncio
task stays (a page served by Voila has been tested with it, not with threads).

One refresher per home per kernel: a dashboard opened again (a re-run cell) stops the
refresh of older ones on the same home, and a dashboard stops its own when it is closed,
when its comm closes, or when the front end reports that no view shows it any more.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: Environment variables Voila sets in the kernels of the pages it serves.
VOILA_VARS = ("VOILA_KERNEL_ID", "VOILA_BASE_URL", "VOILA_SERVER_URL", "VOILA_APP_PORT")


class Refreshable(Protocol):
    def tick(self) -> None: ...


def locked(method: Callable[..., T]) -> Callable[..., T]:
    """Run a method under `self._lock` (the dashboard's lock, shared by its parts)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


def under_voila() -> bool:
    """True in a kernel started by Voila for a page."""
    return any(var in os.environ for var in VOILA_VARS)


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, Voila), False in a script or a test."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class Refresher:
    """Calls `target.tick()` every `interval` seconds until stopped: `mode` "thread" or "asyncio"."""

    def __init__(self, target: Refreshable, interval: float, mode: str, name: str = "runtool-dashboard") -> None:
        self.interval = interval
        self.mode = mode
        self._target = weakref.ref(target)  # a forgotten dashboard is not kept alive by its refresh
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        if mode == "thread":
            self._thread = threading.Thread(target=self._run_thread, name=name, daemon=True)
            self._thread.start()
        elif mode == "asyncio":
            self._task = asyncio.get_running_loop().create_task(self._run_task())
        else:
            raise ValueError(f"unknown refresh mode {mode!r}")

    @property
    def alive(self) -> bool:
        if self._stop.is_set():
            return False
        if self._thread is not None:
            return self._thread.is_alive()
        return self._task is not None and not self._task.done()

    def stop(self) -> None:
        """Ask it to stop; a tick under way finishes first (the thread is not joined here:
        stop() may be called from a handler that holds the lock the tick is waiting for)."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _tick(self) -> bool:
        target = self._target()
        if target is None or self._stop.is_set():
            return False
        target.tick()
        return True

    def _run_thread(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._tick():
                return

    async def _run_task(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(self.interval)
            if not self._tick():
                return


_registry: dict[str, list[weakref.ref[Any]]] = {}
_registry_lock = threading.Lock()


def replace_older(key: str, newer: Any) -> list[Any]:
    """Record `newer` as the live dashboard of `key` (its home); return the older ones still recorded."""
    with _registry_lock:
        older = [d for ref in _registry.get(key, []) if (d := ref()) is not None and d is not newer]
        _registry[key] = [weakref.ref(newer)]
    return older


def forget(key: str, dashboard: Any) -> None:
    with _registry_lock:
        _registry[key] = [ref for ref in _registry.get(key, []) if ref() not in (None, dashboard)]


def live_refreshers() -> list[threading.Thread]:
    """The dashboard refresh threads running in this process (tests and a curious user ask)."""
    return [t for t in threading.enumerate() if t.name.startswith("runtool-dashboard") and t.is_alive()]
