"""Defaults, the home folder, the current user and `runtool.toml`.

Every setting has its default here, in one place; `runtool.toml` at the top of the home
overrides them, and per-run flags override those.
"""

from __future__ import annotations

import getpass
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .durations import parse_duration
from .errors import ConfigError, InvalidInput
from .permissions import role_problems

QUEUE_NAME = re.compile(r"[a-z0-9_-]{1,64}")
CONFIG_FILE = "runtool.toml"
DB_FILE = "runtool.db"
LOCK_FILE = "executor.lock"
#: Where a machine's executor lock lives with a shared (PostgreSQL) store: a local folder,
#: never the shared home, since file locks on network file systems cannot be trusted.
LOCK_DIR_VAR = "RUNTOOL_LOCK_DIR"
RUNS_DIR = "runs"
#: The files runtool writes into a run folder.
OUTPUT_FILE = "output.ipynb"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
LOG_FILES = (STDOUT_FILE, STDERR_FILE)
ERROR_FILE = "error.txt"
#: Numbers a notebook records for its run (top-level numeric values become `metrics`).
METRICS_FILE = "metrics.json"
#: What the `on_finish` hook printed, and how it ended.
HOOK_LOG_FILE = "hook.log"
#: Error types a retry cannot cure: the code or the environment must change first.
NO_RETRY = ("SyntaxError", "IndentationError", "NameError", "ImportError", "ModuleNotFoundError",
            "UsageError")
_ERROR_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}")
#: How long the row of a worker or drain that went away without leaving (killed, its machine
#: lost) stays in `workers`, shown as gone by `runtool workers`; then the next worker start,
#: hourly worker pass or `runtool purge` removes it.
GONE_WORKER_KEPT_S = 86_400.0
#: A run folder's private folders of attempts not yet recorded (shared stores): `.attempt-<n>-<ms>`.
ATTEMPT_PREFIX = ".attempt-"
#: The example notebooks (training, detection, dashboard) beside the package.
NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"


DATABASE_URL_VAR = "RUNTOOL_DATABASE_URL"
#: How runtool knows who acts: the environment ($RUNTOOL_USER, ...) or the database's session_user.
IDENTITIES = ("os", "database")


@dataclass(frozen=True)
class StoreSettings:
    """The `[store]` table: where runs are recorded (section 11 of DESIGN.md)."""

    url: str | None = None
    """A PostgreSQL URL (libpq); None: `runtool.db` in the home (SQLite)."""
    identity: str = "os"
    """"database": the acting user is the database's session_user (PostgreSQL only)."""


@dataclass(frozen=True)
class Settings:
    retries: int = 3
    """Retries after a failed attempt (max_attempts = retries + 1)."""
    retry_base_delay: float = 60.0
    """Seconds before the first retry; doubled for each further attempt."""
    poll: float = 1.0
    """Longest time an idle worker goes without looking for runnable runs."""
    timeout: float = 0.0
    """Seconds a whole run may take; 0 means no limit."""
    queues: tuple[str, ...] | None = None
    """The worker's queue order when --queue is not given; None: all queues by priority."""
    users: dict[str, str] = field(default_factory=dict)
    """User name (or "*") -> role name."""
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Custom role name -> permissions."""
    retention: dict[str, float] = field(default_factory=dict)
    """Finished status -> seconds after which the worker purges such runs (off when empty)."""
    prestart: bool = True
    """Keep one kernel started ahead for the next run (about 50 MB while it waits)."""
    no_retry: tuple[str, ...] = NO_RETRY
    """Error types that fail a run at once instead of retrying it."""
    on_finish: str | None = None
    """Shell command run once per finished run ([hooks] on_finish); None: none."""
    hook_timeout: float = 60.0
    """Seconds the on_finish hook may take before it is ended ([hooks] timeout)."""
    store: StoreSettings = field(default_factory=StoreSettings)
    """Where runs are recorded; $RUNTOOL_DATABASE_URL overrides its url."""
    stale_after: float = 60.0
    """Seconds without a heartbeat after which another machine takes a run over (beats every quarter)."""


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidInput(f"bad queue name {name!r}: expected 1-64 of a-z 0-9 _ -")
    return name


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """--home, else $RUNTOOL_HOME, else ~/.runtool; created on first use."""
    chosen = home or os.environ.get("RUNTOOL_HOME") or Path.home() / ".runtool"
    path = Path(chosen).expanduser().absolute()
    try:
        (path / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"home {path}: cannot create: {exc.strerror}") from None
    return path


def current_machine() -> str:
    """$RUNTOOL_MACHINE, else the host name."""
    return os.environ.get("RUNTOOL_MACHINE") or os.uname().nodename


def lock_path(home: Path, shared: bool, machine: str) -> Path:
    """The executor lock: `executor.lock` in a SQLite home (the home is one machine), else
    `executor-<machine>.lock` in $RUNTOOL_LOCK_DIR, else in `<temp dir>/runtool` (local)."""
    if not shared:
        return home / LOCK_FILE
    folder = Path(os.environ.get(LOCK_DIR_VAR) or Path(tempfile.gettempdir()) / "runtool")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.environ.get(LOCK_DIR_VAR) and folder.stat().st_uid == os.getuid():
            folder.chmod(0o1777)  # every user of the machine shares its one lock
    except OSError as exc:
        raise InvalidInput(f"lock folder {folder}: cannot create: {exc.strerror}") from None
    return folder / f"executor-{re.sub(r'[^A-Za-z0-9._-]', '_', machine)}.lock"


def current_user() -> str:
    """$RUNTOOL_USER, else $JUPYTERHUB_USER, else the OS login."""
    for var in ("RUNTOOL_USER", "JUPYTERHUB_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def load_settings(home: Path) -> Settings:
    """Settings of `home`, from its runtool.toml if there is one."""
    path = home / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None
    return _settings_from(data, str(path))


def _settings_from(data: dict[str, Any], path: str) -> Settings:
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "retries":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
                raise ConfigError(path, key, "expected a whole number from 0 to 100")
            values[key] = value
        elif key in ("retry_base_delay", "poll", "timeout", "stale_after"):
            values[key] = _duration(path, key, value)
            if key == "poll" and not 0.01 <= values[key] <= 3600:
                raise ConfigError(path, key, "expected a duration from 0.01s to 1h")
            if key == "stale_after" and not 1 <= values[key] <= 86400:
                raise ConfigError(path, key, "expected a duration from 1s to 1d")
        elif key == "queues":
            if not isinstance(value, list) or not value:
                raise ConfigError(path, key, "expected a non-empty list of queue names")
            try:
                values[key] = tuple(check_queue_name(q) for q in value)
            except InvalidInput as exc:
                raise ConfigError(path, key, str(exc)) from None
        elif key == "users":
            values[key] = _string_table(path, key, value)
        elif key == "roles":
            values[key] = _roles(path, value)
        elif key == "retention":
            values[key] = _retention(path, value)
        elif key == "prestart":
            if not isinstance(value, bool):
                raise ConfigError(path, key, "expected true or false")
            values[key] = value
        elif key == "no_retry":
            if not isinstance(value, list) or not all(isinstance(v, str) and _ERROR_TYPE.fullmatch(v)
                                                      for v in value):
                raise ConfigError(path, key, "expected a list of error type names such as \"NameError\"")
            values[key] = tuple(value)
        elif key == "hooks":
            values.update(_hooks(path, value))
        elif key == "store":
            values[key] = _store(path, value)
        else:
            raise ConfigError(path, key, "unknown setting")
    settings = Settings(**values)
    for key, reason in role_problems(settings.roles, settings.users):
        raise ConfigError(path, key, reason)
    return settings


def _duration(path: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(path, key, "expected a duration such as 90s, 5m, 2h")
    try:
        return parse_duration(value, key)
    except InvalidInput as exc:
        raise ConfigError(path, key, str(exc)) from None


def _string_table(path: str, key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(path, key, "expected a table")
    for name, role in value.items():
        if not isinstance(role, str):
            raise ConfigError(path, f"{key}.{name}", "expected a role name")
    return dict(value)


def _roles(path: str, value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ConfigError(path, "roles", "expected a table")
    roles = {}
    for name, perms in value.items():
        if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
            raise ConfigError(path, f"roles.{name}", "expected a list of permissions")
        roles[name] = tuple(perms)
    return roles


def _retention(path: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(path, "retention", "expected a table")
    result = {}
    for status, age in value.items():
        if status not in ("succeeded", "failed", "cancelled"):
            raise ConfigError(path, f"retention.{status}", "expected succeeded, failed or cancelled")
        result[status] = _duration(path, f"retention.{status}", age)
    return result


def _hooks(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, "hooks", "expected a table")
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key == "on_finish":
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(path, "hooks.on_finish", "expected a shell command")
            result["on_finish"] = item
        elif key == "timeout":
            result["hook_timeout"] = _duration(path, "hooks.timeout", item)
            if not 0 < result["hook_timeout"] <= 86400:
                raise ConfigError(path, "hooks.timeout", "expected a duration from 1s to 1d")
        else:
            raise ConfigError(path, f"hooks.{key}", "unknown setting (expected on_finish or timeout)")
    return result


def _store(path: str, value: Any) -> StoreSettings:
    if not isinstance(value, dict):
        raise ConfigError(path, "store", "expected a table")
    url, identity = value.get("url"), value.get("identity", "os")
    for key in value:
        if key not in ("url", "identity"):
            raise ConfigError(path, f"store.{key}", "unknown setting")
    if url is not None:
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(path, "store.url", "expected a PostgreSQL URL (postgresql://...)")
        if _has_password(url):
            raise ConfigError(path, "store.url", "holds a password: use ~/.pgpass or PGPASSWORD instead")
    if identity not in IDENTITIES:
        raise ConfigError(path, "store.identity", "expected \"os\" or \"database\"")
    if identity == "database" and url is None and not os.environ.get(DATABASE_URL_VAR):
        raise ConfigError(path, "store.identity", "\"database\" needs a PostgreSQL store (store.url)")
    return StoreSettings(url=url, identity=identity)


def _has_password(url: str) -> bool:
    """Whether a libpq URL carries a password (user:password@ or password=)."""
    rest = url.split("://", 1)[1]
    userinfo = rest.split("@", 1)[0] if "@" in rest.split("/", 1)[0] else ""
    return ":" in userinfo or re.search(r"[?&]password=", url) is not None


def database_url(settings: Settings) -> str | None:
    """$RUNTOOL_DATABASE_URL, else `[store] url`; None: the SQLite store."""
    return os.environ.get(DATABASE_URL_VAR) or settings.store.url
