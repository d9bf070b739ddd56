"""Homes, notebooks and runs for the dashboard tests (widgets and browser).

Runs are made for real: tiny notebooks submitted through the API and executed by
`runtool drain` / `runtool worker` subprocesses (real papermill and kernels). Only the
widget tests' "processing" run is held by the test process itself: it takes the executor
lock and claims the run as a worker would, so reconcile rightly sees it as alive.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from helpers import RUNTOOL, ROLES, notebook, runtool, wait_for

from runtool.api import RunQueue
from runtool.lock import ExecutorLock
from runtool.processes import TOKEN_VAR
from runtool.models import Claimant
from runtool.serve import free_port

#: A 2x2 PNG, written by the sleeper notebook into its run folder as its "preview".
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAADAAAAAgCAIAAADbtmxLAAAAyklEQVR4nM3OwRWDMAwDUNWLsAZjMCpjZA0moVdeSJzYltPqpoP0/ucu2M6C"
    "tFzHbvqX7SzXseeBrP/i2Fhj+hfHxpH5f3FsfJn8l2f5B5NU/eemGjSzCUb/b4CGm3iU/zZI31DS+++ClA0rzX8N1NsQ8/4fgJobbqr/Mei9oef5"
    "PwXCQtMsCKtMBhCWmGwg5JvMICSbPCBkmpwgpJn8IOSYQiAkmKIgsE0EEKgmDgg8Ew0EkokJAsNEBiFs4oMQM6WAEDBlgeA1fQEuWpI1xWrhAAAA"
    "AABJRU5ErkJggg==")


def make_notebooks(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    png = base64.b64encode(PNG).decode()
    return {
        "sleeper": notebook(
            folder / "sleeper.ipynb",
            'n = 1  # how many\nsleep = 0.0  # seconds to sleep\nlabel = "x"\nflag = False\n'
            'sizes = [1, 2]\nrun_dir = ""\n', [
                "import time\nprint('sleeping', sleep)",
                "time.sleep(sleep)",
                "import base64, pathlib\nif run_dir:\n"
                f"    pathlib.Path(run_dir, 'preview.png').write_bytes(base64.b64decode('{png}'))",
            ]),
        "failing": notebook(folder / "failing.ipynb", "n = 1\n", [
            "print('about to fail')",
            "raise RuntimeError(f'boom {n}\\nsecond line')",
        ]),
    }


@dataclass
class Runs:
    """Ids of the runs of a prepared home, by what they are meant to show."""

    succeeded: int
    failed: int
    retrying: int
    cancelled: int
    processing: int
    waiting: int
    scheduled: int
    awaiting: int


def prepare_home(home: Path, notebooks: dict[str, Path]) -> Runs:
    """A home with one run of every label; the `processing` run is left waiting (see hold_processing)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "runtool.toml").write_text(ROLES, encoding="utf-8")
    with RunQueue(home, user="alice") as q:
        ok = q.submit(notebooks["sleeper"], {"n": 7}, tags={"team": "vision"})
        bad = q.submit(notebooks["failing"], {"n": 3}, retries=0)
        flaky = q.submit(notebooks["failing"], {"n": 4}, retries=1)
        gone = q.submit(notebooks["sleeper"], {"n": 5})
        q.cancel(gone.id, reason="not needed")
    done = runtool(home, "drain")
    assert done.code == 0, done.err
    with RunQueue(home, user="bob") as q:
        proc = q.submit(notebooks["sleeper"], {"n": 8, "sleep": 60.0}, queue="long", priority="high")
        waiting = q.submit(notebooks["sleeper"], {"n": 9}, queue="hold")
        scheduled = q.submit(notebooks["sleeper"], {"n": 10}, delay="1h")
        awaiting = q.submit(notebooks["sleeper"], {"n": 11}, after=waiting.id, queue="hold")
    return Runs(ok.id, bad.id, flaky.id, gone.id, proc.id, waiting.id, scheduled.id, awaiting.id)


def copy_home(template: Path, target: Path) -> Path:
    shutil.copytree(template, target, symlinks=True)
    return target


class HeldRun:
    """Claims a run in this process and holds the executor lock, as a worker executing it."""

    def __init__(self, home: Path, run_id: int, progress: tuple[int, int] | None = (2, 5)) -> None:
        self.lock = ExecutorLock(home / "executor.lock")
        assert self.lock.try_acquire("test")
        me = psutil.Process()
        with RunQueue(home, user="alice") as q:
            run = q.store.claim(["long"], Claimant(f"test:{me.pid}", me.pid, me.create_time(), "test"))
            assert run is not None and run.id == run_id, run
            if progress:
                q.store.heartbeat(run.id, run.attempt, progress)

    def release(self) -> None:
        self.lock.release()


# -- background processes ----------------------------------------------------------------

def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def descendants(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop(proc: subprocess.Popen[bytes], signals: int = 1, timeout: float = 30) -> None:
    """SIGTERM (`signals` times), wait; then kill whatever of its tree is left."""
    tree = descendants(proc)
    for _ in range(signals):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(tree, timeout=10)
    for leftover in alive:
        leftover.kill()
    assert not alive, f"left running: {[p.pid for p in alive]}"


def run_processes(token_prefix: str = "") -> list[psutil.Process]:
    """Processes carrying a run token (a run's kernel and children), e.g. left by a test."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            token = proc.environ().get(TOKEN_VAR)
        except (psutil.Error, OSError):
            continue
        if token and token.startswith(token_prefix):
            found.append(proc)
    return found


def no_run_processes_left(home: Path) -> None:
    """After a served home's tests: none of its runs' processes is left (any found are killed,
    then the check fails naming them)."""
    left = run_processes(str(home / "runs"))
    for proc in left:
        proc.kill()
    assert not left, f"run processes left: {left}"


# -- browsers and Jupyter servers ------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    if Path(CHROMIUM).exists() and shutil.which("chromium"):
        return
    if os.environ.get("RUNTOOL_REQUIRE_BROWSER"):
        pytest.fail(f"{CHROMIUM} is missing and RUNTOOL_REQUIRE_BROWSER is set")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")


def jupyter_env(base: Path, user: str) -> dict[str, str]:
    """Jupyter's writable folders in tmp; the venv's kernelspec stays findable via sys.prefix."""
    folders = {var: base / name for var, name in (("JUPYTER_DATA_DIR", "data"),
               ("JUPYTER_RUNTIME_DIR", "runtime"), ("TMPDIR", "tmp"), ("IPYTHONDIR", "ipython"))}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **{var: str(path) for var, path in folders.items()}}
    env.update(RUNTOOL_USER=user, PYTHONWARNINGS="ignore")
    env.pop("JUPYTER_CONFIG_DIR", None)
    return env


def serve_dashboard(home: Path, folder: Path, user: str) -> tuple[subprocess.Popen[bytes], str]:
    """`runtool dashboard` (Voila) of `home` as `user` on a free port, with its Jupyter folders
    and log in `folder`: the server process (end it with `stop`) and its page's URL, once it listens."""
    log = folder / f"dashboard-{user}.log"
    server = start([*RUNTOOL, "--home", str(home), "dashboard", "--port", str(free_port()), "--no-browser"],
                   jupyter_env(folder / f"jupyter-{user}", user), log)
    try:
        line = wait_for(lambda: re.search(r"at (http://\S+)", log.read_text()), 60,
                        what=f"the dashboard of {user} to print its URL")
    except BaseException:
        stop(server)
        raise
    return server, line.group(1)


@contextmanager
def chromium(profile: Path, width: int = 1360, height: int = 1000) -> Iterator[Any]:
    """A Playwright context of Debian's headless chromium with its profile in `profile`;
    requests to outside hosts are refused (Voila links a CDN stylesheet)."""
    from playwright.sync_api import sync_playwright

    manager = sync_playwright().start()
    try:
        context = manager.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        context.route("https://**/*", lambda route: route.abort())
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()
    finally:
        manager.stop()


def screenshot(page: Any, folder: Path, name: str) -> None:
    """A screenshot of the window into `folder` (the test's tmp_path), copied into
    $RUNTOOL_DASHBOARD_SCREENSHOTS (docs/img) when it is set."""
    page.screenshot(path=str(folder / name))
    target = os.environ.get("RUNTOOL_DASHBOARD_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / name, Path(target) / name)


#: In the page: every element from `root` down (and its ancestors up to the document) that
#: scrolls sideways or sticks out of `root` on the right, described for an assert message.
SIDEWAYS_JS = """root => {
  const found = [];
  const name = el => el.tagName.toLowerCase() + (el.className && typeof el.className === 'string'
      ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const right = root.getBoundingClientRect().right;
  const scrolls = el => {
    const style = getComputedStyle(el);
    return ['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1;
  };
  for (let el = root; el; el = el.parentElement) {
    if (scrolls(el)) found.push('scrolls sideways: ' + name(el) + ' ' + el.scrollWidth + '>' + el.clientWidth);
  }
  for (const el of root.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (scrolls(el)) found.push('scrolls sideways: ' + name(el) + ' ' + el.scrollWidth + '>' + el.clientWidth);
    else if (box.right > right + 1) found.push('sticks out: ' + name(el) + ' right ' + box.right + ' > ' + right);
  }
  return found.slice(0, 10);
}"""
