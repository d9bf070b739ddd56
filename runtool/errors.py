"""Every error runtool raises on purpose, each with the fields a caller needs.

`exit_code` follows the command-line contract: 1 for a valid request that is refused
(run not found, wrong status, permission denied), 2 for invalid input.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """`text` with its line breaks escaped: a file name may hold one, an error may not."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class RuntoolError(Exception):
    """Base of every error runtool raises on purpose; its str() is one line."""

    exit_code = 1

    def __str__(self) -> str:
        return one_line(super().__str__())


class InvalidInput(RuntoolError):
    """Bad option, unreadable notebook, unknown parameter, bad value or bad duration."""

    exit_code = 2


class ConfigError(InvalidInput):
    """`runtool.toml` has an unknown key or a bad value."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        self.path, self.key, self.reason = path, key, reason
        super().__init__(f"{path}: {key}: {reason}" if key else f"{path}: {reason}")


class Refused(RuntoolError):
    """A valid request that cannot be carried out now."""

    exit_code = 1


class RunNotFound(Refused):
    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id}: not found")


class IllegalTransition(Refused):
    """The run's status does not allow the action; nothing was changed."""

    def __init__(self, run_id: int, status: str, action: str, reason: str = "") -> None:
        self.run_id, self.status, self.action = run_id, status, action
        why = reason or f"not allowed while {status}"
        super().__init__(f"run {run_id}: cannot {action}: {why}")


class PermissionDenied(Refused):
    def __init__(self, user: str, action: str, permission: str, role: str) -> None:
        self.user, self.action, self.permission, self.role = user, action, permission, role
        super().__init__(
            f"user {user!r} (role {role}) may not {action}: missing permission {permission!r}"
        )


class StoreUnavailable(RuntoolError):
    """The database cannot be read or written (locked too long, read-only, disk full)."""

    exit_code = 1
