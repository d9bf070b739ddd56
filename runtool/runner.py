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
#: cell runs, so that every process the notebook starts carries it (see `execute`).
_adopted_token: str | None = None
#: A client of the kernel started ahead, connected while it waited: nbclient's own connection
#: costs ~0.2 s (wait_for_ready waits that long for IOPub to fall quiet).
_ready_client: Any = None
#: The worker's ends of the pipes to its runners: a runner forked later closes its copies, or a
#: runner started ahead would never see the end of its assignment while another holds it open.
_worker_fds: set[int] = set()
#: nbclient's default for the kernels it starts: IPython history in memory, not in a file.
KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:"]


class KernelKey(NamedTuple):
    """What a kernel started ahead must match to serve a run."""

    kernel: str
    cwd: str


def report(message: dict[str, Any]) -> None:
    """Tell the worker (in a runner): progress, the kernel's pid, the error."""
    if _report_fd is not None:
        os.write(_report_fd, (json.dumps(message) + "\n").encode())


class RunKernelManager(AsyncKernelManager):
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
            report({"kernel": identity(pid)})

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
        report({"progress": [0, total]})
        complete = nb_man.cell_complete

        def cell_complete(cell: Any, cell_index: int | None = None, **kw: Any) -> None:
            complete(cell, cell_index=cell_index, **kw)
            if cell_index is not None:
                report({"progress": [cell_index + 1, total]})

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
    ready_s: float | None = None
    """How long its kernel took to start and answer."""

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
                if "ready" in message:
                    self.ready_s = message["ready"]
                if "error" in message:
                    self.error = message["error"]

    def close(self) -> None:
        os.close(self.reports)
        _worker_fds.discard(self.reports)
        close_assign(self)


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


def close_assign(child: Child) -> None:
    """Close the worker's end of the pipe a runner started ahead gets its run on."""
    if child.assign is not None:
        os.close(child.assign)
        _worker_fds.discard(child.assign)
        child.assign = None


def fork(child_main: Callable[[int], int]) -> Child:
    """Fork a runner that calls `child_main(report_fd)` and exits with the code it returns.

    In the child, before `child_main`: its own process group, death with the worker, default
    signal handlers, and the worker's ends of the pipes to other runners closed. It inherits
    the executor lock (`start` keeps it; a runner started ahead closes it).
    """
    global _report_fd
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
            for fd in (read_fd, *_worker_fds):
                os.close(fd)
            _worker_fds.clear()
            if _detach(parent):
                _report_fd = write_fd
                code = child_main(write_fd)
        finally:
            os._exit(code)
    os.close(write_fd)
    _worker_fds.add(read_fd)
    ident = identity(pid)
    return Child(pid=pid, ctime=ident[1] if ident else 0.0, reports=read_fd)


def hold(fd: int) -> None:
    """Count `fd` among the worker's ends of pipes to runners (closed in runners forked later)."""
    _worker_fds.add(fd)


def start(run: Run, parameters: dict[str, Any], kernel: str | None, folder: str | None = None) -> Child:
    """Fork a runner for `run`, writing its files into `folder` (default the run folder; the
    attempt's private folder on a shared store); it inherits (and so keeps holding) the
    executor lock."""
    def main(report_fd: int) -> int:
        os.environ[TOKEN_VAR] = run_token(run.run_dir, run.started_at)
        run_dir = Path(folder or run.run_dir)
        open_logs(run_dir)
        return execute(run.notebook, run_dir, parameters, kernel)

    return fork(main)


def _detach(parent: int) -> bool:
    """In a freshly forked runner: own process group, dies with the worker, default signals."""
    os.setpgrp()  # a Ctrl-C meant for the worker does not reach the run
    die_with_parent()
    if os.getppid() != parent:
        return False
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    return True


def open_logs(run_dir: Path) -> None:
    """Point fds 1 and 2 (and sys.stdout/stderr) of this runner at the run's log files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, fd in (("stdout.log", 1), ("stderr.log", 2)):
        log = os.open(run_dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, fd)
        os.close(log)
    # Fresh streams on the log files: the inherited ones may be a host's in-memory capture.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)


def execute(notebook: str, run_dir: Path, parameters: dict[str, Any], kernel: str | None,
            km: AsyncKernelManager | None = None, client: Any = None, token: str | None = None) -> int:
    """papermill into the run folder; 0 or 1, the error reported.

    In `km`'s kernel if given (papermill then leaves it running), through `client` (already
    connected to it) if given, and with `token` set in the kernel's environment before any cell
    runs (a kernel started ahead under a token of its own).
    """
    global _ready_client, _adopted_token
    _ready_client, _adopted_token = client, token
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
            kernel_manager_class=RunKernelManager,
            km=km,
        )
    except BaseException as exc:  # every failure is reported, never raised past the fork
        report({"error": error_from(exc)})
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    return 0
