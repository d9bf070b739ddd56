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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text.encode(), 0)

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
