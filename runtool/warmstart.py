"""Warm start: runners forked ahead, each with a kernel started before its run is claimed.

In the worker, `Aheads` keeps them (oldest first) and hands a claimed run to one whose kernel
fits. In such a runner, `_ahead_main` starts the kernel under a token of its own, connects to
it, then blocks until the worker writes its run on a pipe (or ends it): the run then executes
at once in that kernel, under the attempt's token. A kernel serves one run only.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

from . import runner
from .models import Run
from .processes import TOKEN_VAR, alive, end_run, run_token
from .runner import Child, KernelKey

#: How long an ended runner started ahead gets to end its kernel and exit before it is killed.
DISCARD_WAIT_S = 2.0
#: A kernel's start until it answers, as measured here, until a kernel started ahead tells.
KERNEL_START_S = 0.5


class Aheads:
    """The worker's runners started ahead, oldest first: each holds a kernel, started or starting.

    `token()` gives each a token of its own (its run is unknown yet); `after_fork` runs in each
    right after the fork (the worker closes its copy of the executor lock there).
    """

    def __init__(self, token: Callable[[], str], after_fork: Callable[[], None]) -> None:
        self.waiting: list[Child] = []
        self._token = token
        self._after_fork = after_fork
        self._start_s = KERNEL_START_S
        """How long a kernel started ahead took to answer, lately (a moving average)."""
        self._last_start = 0.0
        """When the last kernel started ahead was told to start (epoch seconds)."""

    def take(self, key: KernelKey, run: Run, parameters: dict[str, Any], folder: str) -> Child:
        """A runner executing `run`: the oldest started ahead for `key` if it and its kernel still
        live, else a new one whose kernel starts now. Those passed over are ended."""
        passed: list[Child] = []
        found = None
        while self.waiting and found is None:
            ahead = self.waiting.pop(0)
            if ahead.key == key and usable(ahead) and assign(ahead, run, parameters, folder):
                found = ahead
                if ahead.ready_s is not None:
                    self._start_s = 0.7 * self._start_s + 0.3 * ahead.ready_s
            else:
                passed.append(ahead)
        _end(passed)
        if found is not None:
            return found
        self._last_start = time.time()  # this kernel starts now: the next ones after it
        child = start_ahead(key, run_token(run.run_dir, run.started_at), self._after_fork)
        assign(child, run, parameters, folder)  # if it died at once, the worker's watch says how
        return child

    def top_up(self, key: KernelKey, depth: int) -> None:
        """Fork runners until `depth` wait for kernels like `key` (the next runs are guessed to be
        like the last one); the youngest beyond `depth` or of another key are ended."""
        other = [a for a in self.waiting if a.key != key]
        self.waiting = [a for a in self.waiting if a.key == key]
        extra, self.waiting = self.waiting[depth:], self.waiting[:depth]
        _end(other + extra)
        while len(self.waiting) < depth:
            self.waiting.append(self._fork(key, depth))

    def _fork(self, key: KernelKey, depth: int) -> Child:
        """One more runner started ahead. Its kernel starts `1/depth` of a kernel's start time
        after the last one's: kernels started at the same moment share the CPU, answer at
        about the same moment, and then the next runs are claimed (and their kernels started)
        at about the same moment too, in bursts: runs alternate between no wait and a long one."""
        self._last_start = max(time.time(), self._last_start + self._start_s / max(1, depth))
        return start_ahead(key, self._token(), self._after_fork, self._last_start)

    def check(self, depth: int) -> int:
        """While idle: replace each runner or kernel started ahead that died (no run fails), and
        keep at most `depth`. Returns how many were replaced."""
        dead = [a for a in self.waiting if not usable(a)]
        if dead:
            self.waiting = [a for a in self.waiting if a not in dead]
            _end(dead)
        extra, self.waiting = self.waiting[depth:], self.waiting[:depth]
        _end(extra)
        keys = [a.key for a in dead if a.key is not None][:max(0, depth - len(self.waiting))]
        for key in keys:
            self.waiting.append(self._fork(key, depth))
        return len(keys)

    def discard(self) -> None:
        """End every runner started ahead and its kernel."""
        waiting, self.waiting = self.waiting, []
        _end(waiting)


def usable(ahead: Child) -> bool:
    """The runner started ahead and its kernel still live (reaped if the runner is gone)."""
    ahead.read_reports()
    try:
        if os.waitpid(ahead.pid, os.WNOHANG)[0]:
            ahead.pid = 0
            return False
    except ChildProcessError:
        ahead.pid = 0
        return False
    return ahead.kernel is None or alive(*ahead.kernel)


def _end(aheads: list[Child]) -> None:
    """End runners started ahead that will serve no run, and their kernels: all told at once."""
    for ahead in aheads:
        ahead.close()
        if ahead.pid:
            try:  # it ends its kernel, even one still starting, and exits
                os.kill(ahead.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + DISCARD_WAIT_S
    for ahead in aheads:
        if not _reaped(ahead, deadline):  # gone some other way, or hung: end whatever is left
            end_run(ahead.token or "", [(ahead.pid or None, ahead.ctime), ahead.kernel or (None, None)],
                    grace=1.0)


def _reaped(child: Child, deadline: float) -> bool:
    """Wait until `deadline` for the runner to exit; True once reaped here."""
    while child.pid and time.monotonic() < deadline:
        try:
            if os.waitpid(child.pid, os.WNOHANG)[0]:
                return True
        except ChildProcessError:
            return False
        time.sleep(0.002)
    return False


# -- in the worker: forking one, handing it its run ---------------------------------------------


def start_ahead(key: KernelKey, token: str, after_fork: Callable[[], None] | None = None,
                not_before: float = 0.0) -> Child:
    """Fork a runner that starts a kernel for `key` (at `not_before`, epoch seconds, at the
    earliest) under `token`, then waits for `assign`.

    The kernel is the runner's child and dies with it (PR_SET_PDEATHSIG), as the runner dies
    with the worker, so a killed worker leaves neither. `after_fork` runs in the child first.
    """
    assign_read, assign_write = os.pipe()

    def main(report_fd: int) -> int:
        os.close(assign_write)
        if after_fork is not None:
            after_fork()
        return _ahead_main(key, token, assign_read, not_before)

    try:
        child = runner.fork(main)
    finally:
        os.close(assign_read)
    runner.hold(assign_write)
    child.assign, child.key, child.token = assign_write, key, token
    return child


def assign(child: Child, run: Run, parameters: dict[str, Any], folder: str | None = None) -> bool:
    """Hand `run` to a runner started ahead, to write its files into `folder` (default the run
    folder); False if that runner is gone."""
    assert child.assign is not None
    data = (json.dumps({"notebook": run.notebook, "run_dir": run.run_dir, "started_at": run.started_at,
                        "folder": folder or run.run_dir, "parameters": parameters}) + "\n").encode()
    try:
        while data:
            data = data[os.write(child.assign, data):]
    except OSError:  # EPIPE: the runner died while waiting
        return False
    finally:
        runner.close_assign(child)
    return True


# -- in the runner started ahead -----------------------------------------------------------------


class _Pump(threading.Thread):
    """Copies a kernel's stdout or stderr pipe to the runner's fd `target` once the run is known.

    A kernel started ahead cannot be started with the run's log files as its stdout and stderr;
    what it writes before the run is known is held, then written to the log first.
    """

    def __init__(self, source: int, target: int) -> None:
        super().__init__(daemon=True)
        self.source, self.target = source, target
        self.held: list[bytes] | None = []
        self.lock = threading.Lock()

    def run(self) -> None:
        while chunk := os.read(self.source, 65536):
            with self.lock:
                if self.held is not None:
                    self.held.append(chunk)
                else:
                    os.write(self.target, chunk)

    def release(self) -> None:
        with self.lock:
            for chunk in self.held or ():
                os.write(self.target, chunk)
            self.held = None


def _pipe_output() -> list[_Pump]:
    """Put pipes on fds 1 and 2 (inherited by the kernel) and start pumping them."""
    pumps = []
    for fd in (1, 2):
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        pump = _Pump(read_end, fd)
        pump.start()
        pumps.append(pump)
    return pumps


_waiting_km: AsyncKernelManager | None = None


def _start_kernel(key: KernelKey) -> AsyncKernelManager:
    global _waiting_km
    km = _waiting_km = runner.RunKernelManager(kernel_name=key.kernel)
    run_sync(km.start_kernel)(cwd=key.cwd, extra_arguments=list(runner.KERNEL_ARGS))
    return km


def _on_discard(signum: int, frame: Any) -> None:
    """SIGTERM from the worker before any run was handed over: end the kernel, even one still
    starting, and its connection file, then exit (a plain kill would leave the file behind)."""
    _end_kernel(_waiting_km)
    os._exit(0)


async def _connect(km: AsyncKernelManager) -> Any:
    """A client of `km`'s kernel, once the kernel answers (as nbclient would connect it)."""
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
    except BaseException:
        kc.stop_channels()
        raise
    return kc


def _end_kernel(km: AsyncKernelManager | None) -> None:
    """Kill a kernel that served its run (never reused): no shutdown request to wait on."""
    if km is None:
        return
    process = getattr(km.provisioner, "process", None)
    if process is not None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the group is its pid
        except OSError:
            process.kill()
        process.wait()
    km.cleanup_connection_file()


def _read_assignment(fd: int) -> dict[str, Any] | None:
    """The run, one JSON line; None if the worker closed the pipe without one (discarded).

    Up to the newline, not to the end of the pipe: a copy of the worker's end inherited by a
    process forked meanwhile would keep the end from coming.
    """
    data = b""
    while not data.endswith(b"\n") and (chunk := os.read(fd, 65536)):
        data += chunk
    os.close(fd)
    return json.loads(data) if data.endswith(b"\n") else None


def _ahead_main(key: KernelKey, token: str, assign_fd: int, not_before: float) -> int:
    os.environ[TOKEN_VAR] = token
    signal.signal(signal.SIGTERM, _on_discard)
    pumps = _pipe_output()
    km: AsyncKernelManager | None = None
    time.sleep(max(0.0, not_before - time.time()))
    try:
        began = time.monotonic()
        km = _start_kernel(key)
        ready = run_sync(_connect)(km)
        runner.report({"ready": time.monotonic() - began})
    except Exception:  # retried once the run is known, where the error is reported
        _end_kernel(km)
        km = ready = None
    message = _read_assignment(assign_fd)
    if message is None:  # discarded by the worker
        _end_kernel(km)
        return 0
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # from now on ended like any runner
    run_dir = Path(message["folder"])
    os.environ[TOKEN_VAR] = run_token(message["run_dir"], message["started_at"])
    runner.open_logs(run_dir)  # also closes this runner's ends of the pipes: EOF once the kernel is gone
    for pump in pumps:
        pump.release()
    try:
        if km is not None and not run_sync(km.is_alive)():
            _end_kernel(km)  # died while waiting: this run gets a fresh one
            km = None
        if km is None:
            km = _start_kernel(key)
            ready = None
    except Exception as exc:
        runner.report({"error": runner.error_from(exc)})
        traceback.print_exc()
        return 1
    adopted = os.environ[TOKEN_VAR] if ready is not None and token != os.environ[TOKEN_VAR] else None
    code = runner.execute(message["notebook"], run_dir, message["parameters"], key.kernel, km, ready, adopted)
    _end_kernel(km)
    for pump in pumps:  # the kernel's last words; a grandchild holding the pipe is not waited for
        pump.join(timeout=0.5)
    return code
