"""runtool: run parameterized notebooks one at a time from a SQLite queue."""

from .api import RunQueue
from .errors import (
    IllegalTransition, InvalidInput, PermissionDenied, Refused, RunNotFound, RuntoolError,
    StoreUnavailable,
)
from .models import Run, Status

__version__ = "0.1.0"
__all__ = [
    "IllegalTransition", "InvalidInput", "PermissionDenied", "Refused", "Run", "RunNotFound",
    "RunQueue", "RuntoolError", "Status", "StoreUnavailable", "__version__",
]
