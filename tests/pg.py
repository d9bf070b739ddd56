"""A throwaway PostgreSQL server for the tests, and a fresh database per test.

$RUNTOOL_TEST_DATABASE_URL (a role that may create databases and roles) if set, else
Debian's PostgreSQL started here with initdb + pg_ctl in a temporary folder (as the
`postgres` user when running as root: initdb refuses root), fsync off, on loopback.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg


def bindir() -> Path | None:
    """Where initdb and pg_ctl are: pg_config's bindir, else Debian's newest."""
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A PostgreSQL server the tests may create databases and roles on."""

    url: str  # of its maintenance database, as a superuser
    data: Path | None = None  # set when started here (so it can be restarted)
    bindir: Path | None = None
    log: Path | None = None

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def url_for(self, dbname: str, user: str | None = None) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.url)
        info["dbname"] = dbname
        if user:
            info["user"] = user
            info.pop("password", None)
        host, port = info.pop("host", "127.0.0.1"), info.pop("port", "5432")
        who = info.pop("user", "")
        db = info.pop("dbname")
        rest = "&".join(f"{k}={v}" for k, v in info.items())
        return f"postgresql://{who}@{host}:{port}/{db}" + (f"?{rest}" if rest else "")

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url_for(name)

    def _as_owner(self, *args: str) -> list[str]:
        return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + list(args)

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every session is ended, the server comes back."""
        assert self.data and self.bindir, "only a server started by the tests can be restarted"
        subprocess.run(self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast",
                                      "-l", str(self.log), "restart"), check=True, capture_output=True)

    def stop(self) -> None:
        if self.data and self.bindir:
            subprocess.run(self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                          "stop"), capture_output=True)
            shutil.rmtree(self.data.parent, ignore_errors=True)


_shared: Server | None = None
_failure: str | None = None


def shared() -> Server:
    """The session's server, started on first use and stopped when the tests end; under CI
    (`CI` set) a server that cannot start fails the test, elsewhere it skips it."""
    global _shared, _failure
    if _shared is None and _failure is None:
        try:
            _shared = start()
            atexit.register(_shared.stop)
        except (RuntimeError, OSError) as exc:
            _failure = f"PostgreSQL server cannot start: {exc}"
    if _shared is None:
        import pytest

        if os.environ.get("CI"):
            pytest.fail(_failure or "no server")
        pytest.skip(_failure or "no server")
    return _shared


def prepare_home(home: Path) -> None:
    """A home whose runtool.toml selects a fresh database of the shared server."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "runtool.toml").write_text(f'[store]\nurl = "{shared().new_database()}"\n')


def start(fsync: bool = False, where: str | None = None, listen: str = "127.0.0.1",
          hba: tuple[str, ...] = ()) -> Server:
    """The server of $RUNTOOL_TEST_DATABASE_URL, else a new one (in a temporary folder of
    `where`; fsync off unless asked: the benchmarks want it on; also listening on `listen`,
    with `hba` lines added to pg_hba.conf); RuntimeError if none can start."""
    if os.environ.get("RUNTOOL_TEST_DATABASE_URL") and where is None and not hba:
        return Server(os.environ["RUNTOOL_TEST_DATABASE_URL"])
    bin_ = bindir()
    if bin_ is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="runtool-pg-", dir=where))
    folder.chmod(0o777)
    data, log, port = folder / "data", folder / "log", free_port()
    server = Server(f"postgresql://postgres@127.0.0.1:{port}/postgres", data, bin_, log)
    init = server._as_owner(str(bin_ / "initdb"), "-D", str(data), "-A", "trust", "--no-sync", "-U", "postgres")
    done = subprocess.run(init, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"initdb failed: {done.stderr.strip()[-500:]}")
    if hba:
        with open(data / "pg_hba.conf", "a") as conf:
            conf.write("".join(f"{line}\n" for line in hba))
    options = (f"-p {port} -k {folder} -c listen_addresses={listen} -c fsync={'on' if fsync else 'off'}"
               " -c max_connections=200")
    done = subprocess.run(server._as_owner(str(bin_ / "pg_ctl"), "-D", str(data), "-w", "-l", str(log), "-o",
                                           options, "start"), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()[-500:]} {log.read_text()[-500:]}")
    return server
