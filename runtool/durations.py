"""Parsing of durations (`90`, `90s`, `5m`, `2h`, `1d`) and points in time."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

from .errors import InvalidInput

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """Seconds in `text`; raises InvalidInput naming `what` when it is not a duration."""
    if isinstance(text, bool):
        raise InvalidInput(f"bad {what} {text!r}: expected e.g. 90, 90s, 5m, 2h, 1d")
    if isinstance(text, (int, float)):
        if not math.isfinite(text) or text < 0:
            raise InvalidInput(f"bad {what} {text!r}: must be a finite number >= 0")
        return float(text)
    match = _DURATION.fullmatch(str(text).strip().lower())
    if not match:
        raise InvalidInput(f"bad {what} {text!r}: expected e.g. 90, 90s, 5m, 2h, 1d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds > 100 * 365 * 86400:
        raise InvalidInput(f"bad {what} {text!r}: too long")
    return seconds


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 time (`2026-11-28T18:00`, local time unless it names a zone)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"bad time {text!r}: expected ISO 8601, e.g. 2026-11-28T18:00") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC text of epoch seconds, as every record shows times."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()
