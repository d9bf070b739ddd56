from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from helpers import notebook
from runtool import RunQueue


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RUNTOOL_HOME", "RUNTOOL_USER", "JUPYTERHUB_USER", "RUNTOOL_TEST_CRASH_AT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def job(tmp_path: Path) -> Path:
    return notebook(tmp_path / "job.ipynb")


@pytest.fixture
def q(home: Path):
    queue = RunQueue(home)
    yield queue
    queue.close()


@pytest.fixture
def no_leftovers():
    """Fail the test if it leaves a process of its own behind (kernels, sleeps)."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    me = psutil.Process()
    left = [p for p in me.children(recursive=True) if p.pid not in before]
    for p in left:
        p.kill()
    assert not left, f"processes left behind: {[p.cmdline() for p in left]}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the dashboard in headless Chromium")
    config.addinivalue_line("markers", "slow: long-running concurrency or crash test")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests need Debian's chromium: skipped without it, unless CI requires them."""
    if Path("/usr/bin/chromium").exists() or os.environ.get("RUNTOOL_REQUIRE_BROWSER"):
        return
    skip = pytest.mark.skip(reason="/usr/bin/chromium missing (make chromium installs it)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)
