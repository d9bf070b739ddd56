"""Test hooks: crash points where a process kills itself when the fault tests ask it to."""

from __future__ import annotations

import os
import signal

CRASH_VAR = "RUNTOOL_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    """Fault tests only: die here with SIGKILL when RUNTOOL_TEST_CRASH_AT names this point."""
    if os.environ.get(CRASH_VAR) == name:
        os.kill(os.getpid(), signal.SIGKILL)
