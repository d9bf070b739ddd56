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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# jsonschema imports rfc3987_syntax when it is installed (Voila's dependencies bring it), which
# builds an IRI grammar for ~0.8 s of the ~1.1 s a papermill import costs here. Notebook
# validation never checks IRIs, so the worker goes without it (jsonschema skips that format).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import papermill  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from traitlets import default  # noqa: E402
from papermill.engines import NBClientEngine, papermill_engines  # noqa: E402
from papermill.exceptions import PapermillExecutionError  # noqa: E402

from .models import ErrorRecord, Run  # noqa: E402
from .processes import TOKEN_VAR, die_with_parent, identity, run_token  # noqa: E402

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_report_fd: int | None = None


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
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


papermill_engines.register("runtool", _RunEngine)


def error_from(exc: BaseException) -> ErrorRecord:
    """The record's `error` for an exception raised while executing a notebook."""
    if isinstance(exc, PapermillExecutionError):
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


def start(run: Run, parameters: dict[str, Any], kernel: str | None) -> Child:
    """Fork a runner for `run`; it inherits (and so keeps holding) the executor lock."""
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
            code = _runner_main(run, parameters, kernel, write_fd, parent)
        finally:
            os._exit(code)
    os.close(write_fd)
    ident = identity(pid)
    return Child(pid=pid, ctime=ident[1] if ident else 0.0, reports=read_fd)


def _runner_main(run: Run, parameters: dict[str, Any], kernel: str | None, report_fd: int, parent: int) -> int:
    global _report_fd
    os.setpgrp()  # a Ctrl-C meant for the worker does not reach the run
    die_with_parent()
    if os.getppid() != parent:
        return 70
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    _report_fd = report_fd
    os.environ[TOKEN_VAR] = run_token(run.run_dir, run.started_at)
    run_dir = Path(run.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, fd in (("stdout.log", 1), ("stderr.log", 2)):
        log = os.open(run_dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, fd)
        os.close(log)
    # Fresh streams on the log files: the inherited ones may be a host's in-memory capture.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    try:
        papermill.execute_notebook(
            run.notebook,
            str(run_dir / "output.ipynb"),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(Path(run.notebook).parent),
            engine_name="runtool",
            progress_bar=False,
            log_output=False,
            stdout_file=sys.stdout,
            stderr_file=sys.stderr,
            kernel_manager_class=_RunKernelManager,
        )
    except BaseException as exc:  # every failure is reported, never raised past the fork
        _report({"error": error_from(exc)})
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    return 0
