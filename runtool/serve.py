"""`runtool dashboard`: serve the dashboard notebook of one home with Voila.

Voila serves files only from under the folder of the notebook it serves, and the output
notebooks and images of runs live in `<home>/runs/<id>/`. So the dashboard notebook is
copied into the home (`<home>/dashboard.ipynb`, from the repository's
notebooks/dashboard.ipynb when runtool is installed from a checkout, else from the copy
below) and Voila serves it with the home as root, allowing only files inside run folders.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

DASHBOARD_FILE = "dashboard.ipynb"
#: Files Voila may serve from the home: those directly inside a run folder.
FILE_ALLOWLIST = r"runs/[0-9]+/[^/]+"
#: ... except hidden ones.
FILE_DENYLIST = r"runs/[0-9]+/\..*"
#: Idle kernels (a closed tab) are shut down after 30 s, checked every 10 s.
CULL_OPTIONS = ["--MappingKernelManager.cull_interval=10", "--MappingKernelManager.cull_idle_timeout=30"]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
DASHBOARD_CODE = (
    "# The runtool dashboard: `runtool dashboard` serves this notebook with Voila.\n"
    "# In JupyterLab, run it (or `display(Dashboard(home=...))`) to get the same page.\n"
    "from runtool.widgets import open_dashboard\n\nopen_dashboard()"
)


def packaged_notebook() -> dict[str, Any]:
    """The dashboard notebook, for installs without the repository's notebooks/ folder."""
    return {
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                   "source": DASHBOARD_CODE.splitlines(keepends=True)}],
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                    "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 4,
    }


def repository_notebook() -> Path | None:
    """notebooks/dashboard.ipynb of the checkout runtool runs from (an editable install)."""
    import runtool

    path = Path(runtool.__file__).resolve().parent.parent / "notebooks" / DASHBOARD_FILE
    return path if path.is_file() else None


def stage_notebook(home: Path) -> Path:
    """Write the dashboard notebook into the home (only if its content changed)."""
    source = repository_notebook()
    text = source.read_text(encoding="utf-8") if source else json.dumps(packaged_notebook(), indent=1) + "\n"
    target = home / DASHBOARD_FILE
    try:
        current = target.read_text(encoding="utf-8")
    except OSError:
        current = None
    if current != text:
        target.write_text(text, encoding="utf-8")
    return target


def voila_command(notebook: Path, home: Path, host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "voila", str(notebook), "--no-browser",
        f"--port={port}", f"--Voila.ip={host}", "--Voila.port_retries=0",
        f"--Voila.root_dir={home}", "--VoilaConfiguration.show_tracebacks=True",
        f"--VoilaConfiguration.file_allowlist={FILE_ALLOWLIST}",
        f"--VoilaConfiguration.file_denylist={FILE_DENYLIST}",
        *CULL_OPTIONS,
    ]


def port_is_free(host: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError:
        return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def page_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT_S) -> bool:
    """True once Voila answers (its static script: no kernel started), False if it exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "voila/static/voila.js", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def serve_dashboard(home: Path, port: int = 8866, host: str = "127.0.0.1", open_browser: bool = True,
                    echo: Callable[[str], None] | None = None) -> int:
    """Serve the dashboard of `home` until interrupted; prints its URL. Returns an exit code."""
    say = echo or (lambda text: print(text, flush=True))
    home = Path(home).absolute()
    if port == 0:
        port = free_port(host)
    elif not port_is_free(host, port):
        print(f"runtool: port {port} on {host} is in use; pick another with --port", file=sys.stderr)
        return 1
    if not is_loopback(host):
        print(f"runtool: warning: on {host} everyone who reaches the page acts as this server's user "
              "(role and all); Voila does not ask who they are", file=sys.stderr)
    notebook = stage_notebook(home)
    env = dict(os.environ, RUNTOOL_HOME=str(home), RUNTOOL_DASHBOARD_ROOT=str(home),
               RUNTOOL_DASHBOARD_FILES="/voila/files/")
    proc = subprocess.Popen(voila_command(notebook, home, host, port), env=env, stdin=subprocess.DEVNULL)
    stopping = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        if proc.poll() is None:
            proc.terminate()  # Voila shuts its kernels down on SIGTERM

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        url = page_url(host, port)
        if not wait_until_up(url, proc):
            if stopping:
                return 0
            print(f"runtool: voila did not start on {host}:{port} (exit status {proc.poll()})",
                  file=sys.stderr)
            return 1
        say(f"runtool dashboard of {home} at {url}  (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(url)
        code = proc.wait()
        return 0 if stopping else (code and 1)
    finally:
        _stop(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
