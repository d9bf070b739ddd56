"""Executing one attempt of a run in a child forked from the (papermill-warm) worker.

The child runs papermill into the run folder and reports to the worker through a pipe:
progress after each cell, the kernel's pid, and the error if there is one. The worker
decides the outcome from that report and the child's exit status, never from the output
notebook, which papermill leaves looking successful after a timeout or a kill.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

# jsonschema imports rfc3987_syntax when it is installed (Voila's dependencies bring it), which
# builds an IRI grammar for ~0.8 s of the ~1.1 s a papermill import costs here. Notebook
# validation never checks IRIs, so the worker goes without it (jsonschema skips that format).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import papermill  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from jupyter_core.utils import run_sync  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402
from nbclient.util import run_hook  # noqa: E402
from papermill.clientwrap import PapermillNotebookClient  # noqa: E402
from traitlets import default  # noqa: E402
from papermill.engines import NBClientEngine, papermill_engines  # noqa: E402
from papermill.exceptions import PapermillExecutionError  # noqa: E402
from papermill.log import logger as _papermill_logger  # noqa: E402
from papermill.utils import merge_kwargs, remove_args  # noqa: E402

from .models import ErrorRecord, Run  # noqa: E402
from .processes import TOKEN_VAR, die_with_parent, identity, run_token  # noqa: E402

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_report_fd: int | None = None
#: The attempt's token, set in a kernel started ahead (under a token of its own) before any
#: cell runs, so that every process the notebook starts carries it.
_adopted_token: str | None = None
#: A client of the kernel started ahead, connected while it waited: nbclient's own connection
#: costs ~0.2 s (wait_for_ready waits that long for IOPub to fall quiet).
_ready_client: Any = None
#: nbclient's default for the kernels it starts: IPython history in memory, not in a file.
_KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:"]


class KernelKey(NamedTuple):
    """What a kernel started ahead must match to serve a run."""

    kernel: str
    cwd: str


def _report(message: dict[str, Any]) -> None:
    if _report_fd is not None:
        os.write(_report_fd, (json.dumps(message) + "\n").encode())


class _RunKernelManager(AsyncKernelManager):
    """Starts the kernel so that it dies with the runner and reports its pid."""

    @default("transport_encryption")
    def _encrypt_if_supported(self) -> str:
        # CurveZMQ keys for kernels that declare support (ipykernel >= 7): the kernel does not
        # print "running over TCP without encryption" into every run's stderr.log.
        return "auto"

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        kw["preexec_fn"] = die_with_parent
        await super()._async_launch_kernel(kernel_cmd, **kw)
        pid = getattr(self.provisioner, "pid", None)
        if pid is not None:
            _report({"kernel": identity(pid)})

    async def _async_finish_shutdown(self, waittime: float | None = None, pollinterval: float = 0.1,
                                     restart: bool = False) -> None:
        # jupyter_client looks every 0.1 s whether the kernel has exited; most exit within
        # milliseconds, so a coarse poll adds 0.1-0.2 s to every run.
        await super()._async_finish_shutdown(waittime, pollinterval=0.01, restart=restart)


class _RunEngine(NBClientEngine):
    """papermill's engine, reporting cells done after each cell."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
        total = len(nb_man.nb.cells)
        _report({"progress": [0, total]})
        complete = nb_man.cell_complete

        def cell_complete(cell: Any, cell_index: int | None = None, **kw: Any) -> None:
            complete(cell, cell_index=cell_index, **kw)
            if cell_index is not None:
                _report({"progress": [cell_index + 1, total]})

        nb_man.cell_complete = cell_complete
        failed = nb_man.cell_exception

        def cell_exception(cell: Any, cell_index: int | None = None, **kw: Any) -> None:
            # papermill looks for the error among the cell's outputs, and a magic's UsageError
            # has none there: it reports "CellExecutionError" with no message unless we keep it.
            if cell_index is not None and kw.get("exception") is not None:
                _cell_errors[cell_index] = kw["exception"]
            failed(cell, cell_index=cell_index, **kw)

        nb_man.cell_exception = cell_exception
        if kwargs.get("km") is not None:  # a kernel started ahead
            return _execute_in(nb_man, kernel_name, **kwargs)
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


class _RunClient(PapermillNotebookClient):
    """papermill's client; in a kernel started ahead it first sets the attempt's token."""

    async def async_start_new_kernel_client(self) -> Any:
        global _ready_client
        if _ready_client is None:
            kc = await super().async_start_new_kernel_client()
        else:  # what nbclient does, with a client already connected and ready
            kc, _ready_client = _ready_client, None
            self.kc = kc
            kc.allow_stdin = False
            await run_hook(self.on_notebook_start, notebook=self.nb)
        if _adopted_token is not None:
            code = f"import os as _rt_os; _rt_os.environ[{TOKEN_VAR!r}] = {_adopted_token!r}; del _rt_os"
            await self.async_wait_for_reply(kc.execute(code, silent=True, store_history=False))
        return kc

    # nbclient's sync wrapper wraps the base class's coroutine, not an override
    start_new_kernel_client = run_sync(async_start_new_kernel_client)


def _execute_in(nb_man: Any, kernel_name: str, log_output: bool = False, stdout_file: Any = None,
                stderr_file: Any = None, start_timeout: int = 60, execution_timeout: Any = None,
                **kwargs: Any) -> Any:
    """papermill's NBClientEngine.execute_managed_notebook, with `_RunClient`."""
    kwargs = remove_args(["input_path"], **kwargs)
    safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
    final_kwargs = merge_kwargs(
        safe_kwargs, timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
        startup_timeout=start_timeout, kernel_name=kernel_name, log=_papermill_logger,
        log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
    return _RunClient(nb_man, **final_kwargs).execute()


papermill_engines.register("runtool", _RunEngine)
#: The exception nbclient raised for each failed cell (by index), for error_from.
_cell_errors: dict[int, BaseException] = {}


def error_from(exc: BaseException) -> ErrorRecord:
    """The record's `error` for an exception raised while executing a notebook."""
    if isinstance(exc, PapermillExecutionError):
        real = _cell_errors.get(exc.cell_index)
        if exc.ename == "CellExecutionError" and not exc.evalue and isinstance(real, CellExecutionError) \
                and real.ename:
            # the cell failed without an error output (a magic's UsageError): nbclient's own
            # exception holds the kernel's reply, with the real type and message
            return {
                "type": str(real.ename),
                "message": _ANSI.sub("", str(real.evalue)),
                "cell": exc.cell_index + 1,
                "traceback": _ANSI.sub("", str(real.traceback)),
            }
        return {
            "type": exc.ename,
            "message": _ANSI.sub("", str(exc.evalue)),
            "cell": exc.cell_index + 1,
            "traceback": _ANSI.sub("", "\n".join(exc.traceback)),
        }
    return {
        "type": type(exc).__name__,
        "message": (str(exc).splitlines() or [""])[0],
        "cell": None,
        "traceback": "".join(traceback.format_exception(exc)),
    }


@dataclass
class Child:
    """The worker's handle on a forked runner."""

    pid: int
    ctime: float
    reports: int
    buffer: bytes = b""
    error: ErrorRecord | None = None
    kernel: tuple[int, float] | None = None
    progress: tuple[int, int] | None = None
    news: set[str] = field(default_factory=set)
    assign: int | None = None
    """A runner started ahead: the pipe its run is handed over on, until then."""
    key: KernelKey | None = None
    token: str | None = None
    """The token its kernel was started under."""

    def read_reports(self) -> None:
        """Take in whatever the child reported so far (non-blocking)."""
        while True:
            try:
                chunk = os.read(self.reports, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if "progress" in message:
                    self.progress = tuple(message["progress"])  # type: ignore[assignment]
                    self.news.add("progress")
                if message.get("kernel"):
                    self.kernel = tuple(message["kernel"])  # type: ignore[assignment]
                    self.news.add("kernel")
                if "error" in message:
                    self.error = message["error"]

    def close(self) -> None:
        os.close(self.reports)
        if self.assign is not None:
            os.close(self.assign)
            self.assign = None


_warm = False


def prewarm() -> None:
    """Fill, once in the worker, the caches each forked runner would otherwise rebuild.

    Measured in a forked runner: compiling nbformat's schema (~40 ms), importing IPython for
    the kernelspec paths (~30 ms), listing network interfaces (~10 ms) and reading entry
    points (~6 ms), ~0.1 s of every run that the worker now pays once.
    """
    global _warm
    if _warm:
        return
    _warm = True
    import nbformat
    from jupyter_client import localinterfaces
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.provisioning import KernelProvisionerFactory
    from nbformat.validator import get_validator

    for minor in sorted({4, nbformat.current_nbformat_minor}):
        get_validator(version=4, version_minor=minor)
    KernelSpecManager().kernel_dirs  # noqa: B018 - imports IPython for its paths
    localinterfaces.localhost()
    KernelProvisionerFactory.instance()


def start(run: Run, parameters: dict[str, Any], kernel: str | None, folder: str | None = None) -> Child:
    """Fork a runner for `run`, writing its files into `folder` (default the run folder; the
    attempt's private folder on a shared store); it inherits (and so keeps holding) the
    executor lock."""
    prewarm()
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the runner
        code = 70
        try:
            os.close(read_fd)
            code = _runner_main(run, parameters, kernel, write_fd, parent, folder or run.run_dir)
        finally:
            os._exit(code)
    os.close(write_fd)
    ident = identity(pid)
    return Child(pid=pid, ctime=ident[1] if ident else 0.0, reports=read_fd)


def _runner_main(run: Run, parameters: dict[str, Any], kernel: str | None, report_fd: int, parent: int,
                 folder: str) -> int:
    global _report_fd
    if not _detach(parent):
        return 70
    _report_fd = report_fd
    os.environ[TOKEN_VAR] = run_token(run.run_dir, run.started_at)
    _open_logs(Path(folder))
    return _execute(run.notebook, Path(folder), parameters, kernel, None)


def _detach(parent: int) -> bool:
    """In a freshly forked runner: own process group, dies with the worker, default signals."""
    os.setpgrp()  # a Ctrl-C meant for the worker does not reach the run
    die_with_parent()
    if os.getppid() != parent:
        return False
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    return True


def _open_logs(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, fd in (("stdout.log", 1), ("stderr.log", 2)):
        log = os.open(run_dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, fd)
        os.close(log)
    # Fresh streams on the log files: the inherited ones may be a host's in-memory capture.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)


def _execute(notebook: str, run_dir: Path, parameters: dict[str, Any], kernel: str | None,
             km: AsyncKernelManager | None) -> int:
    """papermill into the run folder; in `km`'s kernel if given (papermill then leaves it running)."""
    try:
        papermill.execute_notebook(
            notebook,
            str(run_dir / "output.ipynb"),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(Path(notebook).parent),
            engine_name="runtool",
            progress_bar=False,
            log_output=False,
            stdout_file=sys.stdout,
            stderr_file=sys.stderr,
            kernel_manager_class=_RunKernelManager,
            km=km,
        )
    except BaseException as exc:  # every failure is reported, never raised past the fork
        _report({"error": error_from(exc)})
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


# -- warm start: a runner forked ahead, its kernel started before its run is claimed ----------


def start_ahead(key: KernelKey, token: str, after_fork: Callable[[], None] | None = None) -> Child:
    """Fork a runner that starts a kernel for `key` now, under `token`, then waits for `assign`.

    The kernel is the runner's child and dies with it (PR_SET_PDEATHSIG), as the runner dies
    with the worker, so a killed worker leaves neither. `after_fork` runs in the child first
    (the worker closes its copy of the executor lock there).
    """
    prewarm()
    read_fd, write_fd = os.pipe()
    assign_read, assign_write = os.pipe()
    os.set_blocking(read_fd, False)
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the runner
        code = 70
        try:
            os.close(read_fd)
            os.close(assign_write)
            if after_fork is not None:
                after_fork()
            code = _ahead_main(key, token, write_fd, assign_read, parent)
        finally:
            os._exit(code)
    os.close(write_fd)
    os.close(assign_read)
    ident = identity(pid)
    return Child(pid=pid, ctime=ident[1] if ident else 0.0, reports=read_fd, assign=assign_write,
                 key=key, token=token)


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
        os.close(child.assign)
        child.assign = None
    return True


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


def _start_kernel(key: KernelKey) -> AsyncKernelManager:
    global _waiting_km
    km = _waiting_km = _RunKernelManager(kernel_name=key.kernel)
    run_sync(km.start_kernel)(cwd=key.cwd, extra_arguments=list(_KERNEL_ARGS))
    return km


_waiting_km: AsyncKernelManager | None = None


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
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    return json.loads(data) if data.strip() else None


def _ahead_main(key: KernelKey, token: str, report_fd: int, assign_fd: int, parent: int) -> int:
    global _report_fd, _adopted_token, _ready_client
    if not _detach(parent):
        return 70
    _report_fd = report_fd
    os.environ[TOKEN_VAR] = token
    signal.signal(signal.SIGTERM, _on_discard)
    pumps = _pipe_output()
    km: AsyncKernelManager | None = None
    try:
        km = _start_kernel(key)
        ready = run_sync(_connect)(km)
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
    _open_logs(run_dir)  # also closes this runner's ends of the pipes: EOF once the kernel is gone
    for pump in pumps:
        pump.release()
    try:
        if km is not None and not run_sync(km.is_alive)():
            _end_kernel(km)  # died while waiting: this run gets a fresh one
            km = None
        if km is None:
            km = _start_kernel(key)
        else:
            _ready_client = ready
            if token != os.environ[TOKEN_VAR]:
                _adopted_token = os.environ[TOKEN_VAR]
    except Exception as exc:
        _report({"error": error_from(exc)})
        traceback.print_exc()
        return 1
    code = _execute(message["notebook"], run_dir, message["parameters"], key.kernel, km)
    _end_kernel(km)
    for pump in pumps:  # the kernel's last words; a grandchild holding the pipe is not waited for
        pump.join(timeout=0.5)
    return code
