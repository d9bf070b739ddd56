"""The executor lock: an OS file lock held while a run executes, freed by the OS if the holder dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class ExecutorLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, note: str = "") -> bool:
        """Take the lock without waiting; True if this object now holds it."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except PermissionError:  # another user's lock file (a machine-wide lock): flock needs no write
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.note(note)
        return True

    def note(self, text: str) -> None:
        """Write who holds the lock and for what into the lock file (for people reading it)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, text.encode(), 0)
            except OSError:
                pass  # opened read-only: the note is for people, the lock holds all the same

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def is_free(self) -> bool:
        """True if nobody holds the lock (checked by taking and dropping it at once)."""
        probe = ExecutorLock(self.path)
        if probe.try_acquire():
            probe.release()
            return True
        return False
