"""Shared test helpers: notebooks written into tmp_path, the CLI in a real process or in
this one, the role table of the permission tests, and waiting on state."""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PYTHON = sys.executable
#: The command line of `runtool` as a real process (what `runtool` on PATH runs).
RUNTOOL = [PYTHON, "-m", "runtool"]
JOB_PARAMETERS = """\
n = 1
x = 0.5
label = "a"
flag = False
sleep = 0.0
fail = False
marker = ""
run_id = 0
run_dir = ""
parent_run_id = 0
parent_run_dir = ""
"""
JOB_BODY = [
    "import json, os, time\nt0 = time.time()",
    "time.sleep(sleep)",
    "if fail:\n    raise ValueError(f'asked to fail (n={n})')",
    "if marker:\n"
    "    with open(marker, 'a') as f:\n"
    "        f.write(json.dumps({'run_id': run_id, 'n': n, 'start': t0, 'end': time.time()}) + '\\n')",
    "with open(os.path.join(run_dir or '.', 'result.json'), 'w') as f:\n"
    "    json.dump({'n': n, 'x': x, 'label': label, 'flag': flag, 'run_id': run_id,\n"
    "               'run_dir': run_dir, 'parent_run_id': parent_run_id,\n"
    "               'parent_run_dir': parent_run_dir, 'cwd': os.getcwd()}, f)\n"
    "print('done', n)",
]


def notebook(path: Path, parameters: Any = JOB_PARAMETERS, body: list[str] | None = None,
             kernel: str | None = "python3") -> Path:
    """Write a notebook: a cell tagged `parameters` (unless None), then the body cells.

    `parameters` is the cell's source as stored: text, or (for hostile notebooks) anything.
    """
    cells = []
    if parameters is not None:
        cells.append({"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": parameters,
                      "outputs": [], "execution_count": None})
    for source in JOB_BODY if body is None else body:
        cells.append({"cell_type": "code", "metadata": {}, "source": source, "outputs": [],
                      "execution_count": None})
    meta: dict = {"language_info": {"name": "python"}}
    if kernel:
        meta["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 4, "metadata": meta, "cells": cells}))
    return path


@dataclass
class Result:
    """What a command did: exit status, stdout, stderr (also unpacks as that triple)."""

    code: int
    out: str
    err: str

    def __iter__(self):
        return iter((self.code, self.out, self.err))


def run(*args: str, user: str | None = None, env: dict | None = None, timeout: float = 120) -> Result:
    """`python -m runtool ARGS...` as a real process (real argv, exit status, stderr)."""
    full_env = dict(os.environ, **(env or {}))
    if user:
        full_env["RUNTOOL_USER"] = user
    proc = subprocess.run([*RUNTOOL, *args], capture_output=True, text=True, env=full_env, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def runtool(home: Path, *args: str, **kw: Any) -> Result:
    """`python -m runtool --home HOME ARGS...` as a real process."""
    return run("--home", str(home), *args, **kw)


def cli(home: Path, *args: str) -> Result:
    """`runtool --home HOME ARGS...` in this process: no interpreter start, for the many
    input checks that need no real process (exit code, stdout, stderr as the CLI gives them)."""
    from runtool.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["--home", str(home), *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


def spawn(home: Path, *args: str, env: dict | None = None, log: Path | None = None, **kw) -> subprocess.Popen:
    """`runtool --home HOME ARGS...` started in the background; its output to pipes, or
    both streams to the file `log` (which a test can watch while it runs)."""
    full_env = dict(os.environ, **(env or {}))
    if log is None:
        return subprocess.Popen([*RUNTOOL, "--home", str(home), *args], env=full_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    with open(log, "wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([*RUNTOOL, "--home", str(home), *args], env=full_env, stdout=handle,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)


def files_of(q, run) -> Path:
    """Where the run's current attempt writes: its private folder on a shared store."""
    return Path(run.attempt_dir if q.store.shared else run.run_dir)


def markers(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "runtool.toml").write_text(text)


def text_of(markup: str) -> str:
    """The words of an HTML fragment, as a person reads them."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05, what: str = "condition"):
    """The first truthy value of `predicate()`, polled until `timeout`; AssertionError after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


#: Roles used by the permission and dashboard tests: one user per built-in role and a
#: custom one, who may delete runs of the kinds `job` (tests' job.ipynb) and `sleeper`
#: (the dashboard tests' notebook), but no others.
ROLES = """
[users]
alice = "admin"
bob = "operator"
carol = "viewer"
dora = "analyst"
"*" = "viewer"

[roles]
analyst = ["submit", "delete:job", "delete:sleeper"]
"""

#: A notebook that runs until stopped (60 s by default) and starts a `sleep 300`
#: grandchild whose pid it writes into its run folder: for cancel, kill and signal tests.
LONG_PARAMETERS = "run_dir = ''\nsleep = 60.0\nmarker = ''\nrun_id = 0"
LONG_BODY = [
    "import json, subprocess, time\nt0 = time.time()\n"
    "grandchild = subprocess.Popen(['sleep', '300'])\n"
    "open(run_dir + '/grandchild.pid', 'w').write(str(grandchild.pid))",
    "time.sleep(sleep)",
    "if marker:\n    open(marker, 'a').write(json.dumps({'run_id': run_id, 'start': t0, 'end': time.time()}) + '\\n')",
]


def kernel_started(q: Any, run_id: int):
    """The run of the long notebook once its kernel is up, its grandchild recorded and its
    output notebook says the sleep cell (the 4th of 5) is running; else None."""
    run = q.get(run_id)
    folder = files_of(q, run)
    grandchild = folder / "grandchild.pid"
    if not (run.kernel_pid and grandchild.exists() and grandchild.read_text()):
        return None
    try:  # papermill rewrites it as cells start and end: it may be caught half written
        cells = json.loads((folder / "output.ipynb").read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return None
    return run if cells[3]["metadata"].get("papermill", {}).get("status") == "running" else None


def clean_env(monkeypatch: Any, tmp_path_factory: Any) -> None:
    """No runtool setting from the environment the tests were started in (every test gets
    this; a fixture of a wider scope calls it itself, in a `pytest.MonkeyPatch.context()`)."""
    for var in ("RUNTOOL_HOME", "RUNTOOL_USER", "JUPYTERHUB_USER", "RUNTOOL_TEST_CRASH_AT", "RUNTOOL_DATABASE_URL",
                "RUNTOOL_MACHINE"):
        monkeypatch.delenv(var, raising=False)
    # A PostgreSQL home's executor lock is per machine in a local folder: one per test, so that
    # test sessions running side by side on this box never wait on one another's lock.
    monkeypatch.setenv("RUNTOOL_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
