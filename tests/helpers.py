"""Shared test helpers: notebooks written into tmp_path, and the CLI in a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable
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


def notebook(path: Path, parameters: str | None = JOB_PARAMETERS, body: list[str] | None = None,
             kernel: str | None = "python3") -> Path:
    """Write a notebook: a cell tagged `parameters` (unless None), then the body cells."""
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
    code: int
    out: str
    err: str


def runtool(home: Path, *args: str, user: str | None = None, env: dict | None = None,
            timeout: float = 120) -> Result:
    """Run `python -m runtool --home HOME ARGS...` as a real process."""
    full_env = dict(os.environ, **(env or {}))
    if user:
        full_env["RUNTOOL_USER"] = user
    proc = subprocess.run([PYTHON, "-m", "runtool", "--home", str(home), *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def spawn(home: Path, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.Popen([PYTHON, "-m", "runtool", "--home", str(home), *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def markers(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "runtool.toml").write_text(text)


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05, what: str = "condition"):
    """The first truthy value of `predicate()`, polled until `timeout`; AssertionError after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


#: Roles used by the permission tests: one user per built-in role and a custom one.
ROLES = """
[users]
alice = "admin"
bob = "operator"
carol = "viewer"
dora = "analyst"
"*" = "viewer"

[roles]
analyst = ["submit", "delete:job"]
"""
