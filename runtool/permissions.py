"""Who may do what: roles from `runtool.toml`, checked by the library for every interface."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from .config import Settings
from .errors import ConfigError, PermissionDenied

PERMISSIONS = ("submit", "cancel", "retry", "delete", "force-cancel", "purge", "pause")
_OPERATOR = frozenset({"submit", "cancel", "retry", "delete"})
BUILTIN_ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset(),
    "operator": _OPERATOR,
    "admin": _OPERATOR | {"force-cancel", "purge", "pause"},
}
ACTIONS = {
    "submit": "submit runs",
    "cancel": "cancel runs",
    "retry": "retry runs",
    "delete": "delete runs",
    "force-cancel": "force-cancel a processing run",
    "purge": "purge finished runs",
    "pause": "pause or resume queues",
}


def check_roles(settings: Settings, path: str) -> None:
    """Raise ConfigError for a custom permission or a user's role that does not exist."""
    for role, perms in settings.roles.items():
        if role in BUILTIN_ROLES:
            raise ConfigError(path, f"roles.{role}", "redefines a built-in role")
        for perm in perms:
            base, _, kind = perm.partition(":")
            if base not in PERMISSIONS or (kind and base != "delete") or (":" in perm and not kind):
                raise ConfigError(path, f"roles.{role}", f"unknown permission {perm!r}")
    known = set(BUILTIN_ROLES) | set(settings.roles)
    for user, role in settings.users.items():
        if role not in known:
            raise ConfigError(path, f"users.{user}", f"unknown role {role!r}")


def role_of(user: str, settings: Settings, home: Path) -> str:
    if settings.users:
        return settings.users.get(user, settings.users.get("*", "viewer"))
    return "admin" if user == _owner(home) else "operator"


def permissions_of(role: str, settings: Settings) -> frozenset[str]:
    if role in BUILTIN_ROLES:
        return BUILTIN_ROLES[role]
    return frozenset(settings.roles.get(role, ()))


def allowed(perms: frozenset[str], permission: str, kind: str | None = None) -> bool:
    if permission in perms:
        return True
    return permission == "delete" and kind is not None and f"delete:{kind}" in perms


def require(user: str, role: str, perms: frozenset[str], permission: str, kind: str | None = None) -> None:
    if not allowed(perms, permission, kind):
        action = ACTIONS[permission] + (f" of kind {kind}" if permission == "delete" and kind else "")
        raise PermissionDenied(user, action, permission, role)


def _owner(home: Path) -> str:
    uid = os.stat(home).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
