from __future__ import annotations

import os
import threading
from pathlib import Path

import psutil
import pytest

import pg
from helpers import clean_env, notebook
from stores import STORE_KINDS

from runtool import RunQueue


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    clean_env(monkeypatch, tmp_path_factory)


@pytest.fixture(scope="session")
def pg_server() -> pg.Server:
    """A throwaway PostgreSQL server for the session (tests/pg.py): skipped when none can
    start, except under CI (`CI` set), where that fails the tests that need it."""
    return pg.shared()


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """"sqlite", or each of STORE_KINDS for tests marked `both_stores`."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url(request: pytest.FixtureRequest, store_kind: str, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """For the postgres store, a fresh database, selected by $RUNTOOL_DATABASE_URL (which
    the commands the test starts inherit); None for SQLite."""
    if store_kind != "postgres":
        return None
    url = request.getfixturevalue("pg_server").new_database()
    monkeypatch.setenv("RUNTOOL_DATABASE_URL", url)
    return url


@pytest.fixture
def home(tmp_path: Path, database_url: str | None) -> Path:
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
    config.addinivalue_line("markers", "kernel: starts a Jupyter kernel (executes runs, workers, Voila)")
    config.addinivalue_line("markers", "both_stores: runs once on SQLite and once on PostgreSQL")
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    if os.environ.get("RUNTOOL_TEST_NO_KERNEL"):
        _KERNEL_WATCH.start()


class _KernelWatch:
    """With RUNTOOL_TEST_NO_KERNEL=1 (`make test-fast`): notes every ipykernel process that
    any test starts, directly or through a `runtool` child, and fails the session if one did,
    naming the test, so that an unmarked test that starts kernels cannot hide in the quick set."""

    def __init__(self) -> None:
        self.current = ""
        self.seen: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.05):  # a kernel lives 0.75 s at the least
            for child in me.children(recursive=True):
                if child.pid in self.seen:
                    continue
                try:
                    cmdline = " ".join(child.cmdline())
                except psutil.Error:
                    continue
                if "ipykernel" in cmdline:
                    self.seen[child.pid] = self.current


_KERNEL_WATCH = _KernelWatch()


def pytest_runtest_setup(item: pytest.Item) -> None:
    _KERNEL_WATCH.current = item.nodeid


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _KERNEL_WATCH.stop()
    if _KERNEL_WATCH.seen:
        tests = sorted(set(_KERNEL_WATCH.seen.values()))
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"RUNTOOL_TEST_NO_KERNEL: kernels started by {tests} (mark them kernel)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


#: Fixtures that execute runs (or serve Voila) to prepare a home: a test using one starts kernels.
KERNEL_FIXTURES = {"template", "guarded", "homes", "served"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_stores"):
        metafunc.parametrize("store_kind", STORE_KINDS, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests using a kernel fixture are marked `kernel`. Browser tests need Debian's
    chromium: skipped without it, unless CI requires them."""
    for item in items:
        if KERNEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kernel)
    if Path("/usr/bin/chromium").exists() or os.environ.get("RUNTOOL_REQUIRE_BROWSER"):
        return
    skip = pytest.mark.skip(reason="/usr/bin/chromium missing (make chromium installs it)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)
