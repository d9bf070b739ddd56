"""Who may do what: roles from `runtool.toml`, checked by `RunQueue` for every interface."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

from .errors import PermissionDenied

#: Each permission and the action it allows, as refusals name it.
PERMISSIONS = {
    "submit": "submit runs",
    "cancel": "cancel runs",
    "retry": "retry runs",
    "delete": "delete runs",
    "force-cancel": "force-cancel a processing run",
    "purge": "purge finished runs",
    "pause": "pause or resume queues",
    "grant": "grant database roles",
    "migrate": "move the runs to another store",
}
_OPERATOR = frozenset({"submit", "cancel", "retry", "delete"})
BUILTIN_ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset(),
    "operator": _OPERATOR,
    "admin": _OPERATOR | {"force-cancel", "purge", "pause", "grant", "migrate"},
}


def role_problems(roles: Mapping[str, tuple[str, ...]], users: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key, reason) for each custom role or user's role that runtool cannot honour."""
    problems = []
    for role, perms in roles.items():
        if role in BUILTIN_ROLES:
            problems.append((f"roles.{role}", "redefines a built-in role"))
        for perm in perms:
            base, _, kind = perm.partition(":")
            if base not in PERMISSIONS or (kind and base != "delete") or (":" in perm and not kind):
                problems.append((f"roles.{role}", f"unknown permission {perm!r}"))
    known = set(BUILTIN_ROLES) | set(roles)
    for user, role in users.items():
        if role not in known:
            problems.append((f"users.{user}", f"unknown role {role!r}"))
    return problems


def role_of(user: str, users: Mapping[str, str], home: Path) -> str:
    """The user's role: from `[users]` (else its "*", else viewer); without one, the home's
    owner is admin and everyone else operator."""
    if users:
        return users.get(user, users.get("*", "viewer"))
    return "admin" if user == _owner(home) else "operator"


def permissions_of(role: str, roles: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    if role in BUILTIN_ROLES:
        return BUILTIN_ROLES[role]
    return frozenset(roles.get(role, ()))


def allowed(perms: frozenset[str], permission: str, kind: str | None = None) -> bool:
    if permission in perms:
        return True
    return permission == "delete" and kind is not None and f"delete:{kind}" in perms


def require(user: str, role: str, perms: frozenset[str], permission: str, kind: str | None = None) -> None:
    if not allowed(perms, permission, kind):
        action = PERMISSIONS[permission] + (f" of kind {kind}" if permission == "delete" and kind else "")
        raise PermissionDenied(user, action, permission, role)


def _owner(home: Path) -> str:
    uid = os.stat(home).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
