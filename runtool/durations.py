"""Parsing of durations (`90`, `90s`, `5m`, `2h`, `1d`) and points in time."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

from .errors import InvalidInput

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)")
MAX_DURATION_S = 100 * 365 * 86400.0
"""The longest duration accepted (delays, timeouts, ages) and the longest retry backoff."""


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """Seconds in `text`; raises InvalidInput naming `what` when it is not a duration."""
    if isinstance(text, bool):
        raise InvalidInput(f"bad {what} {text!r}: expected e.g. 90, 90s, 5m, 2h, 1d")
    if isinstance(text, (int, float)):
        try:
            seconds = float(text)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidInput(f"bad {what} {str(text)[:40]}: must be a finite number >= 0")
        if seconds > MAX_DURATION_S:
            raise InvalidInput(f"bad {what} {str(text)[:40]}: too long")
        return seconds
    match = _DURATION.fullmatch(str(text).strip().lower())
    if not match:
        raise InvalidInput(f"bad {what} {text!r}: expected e.g. 90, 90s, 5m, 2h, 1d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise InvalidInput(f"bad {what} {text!r}: too long")
    return seconds


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 time (`2026-11-28T18:00`, local time unless it names a zone)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"bad time {text!r}: expected ISO 8601, e.g. 2026-11-28T18:00") from None
    try:
        if moment.tzinfo is None:
            moment = moment.astimezone()
        return check_time(moment.timestamp(), "time")
    except (OverflowError, ValueError, OSError, InvalidInput):  # e.g. year 1 in a zone east of UTC
        raise InvalidInput(f"bad time {text!r}: out of range (years 1 to 9999)") from None


def check_time(value: object, what: str = "time") -> float:
    """Epoch seconds that can be stored and shown (years 1 to 9999, UTC); InvalidInput if not."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        seconds = float(value)
        iso(seconds)  # raises for NaN, infinities and years outside 1-9999
    except (TypeError, OverflowError, ValueError, OSError):
        raise InvalidInput(f"bad {what} {str(value)[:40]!r}: out of range (years 1 to 9999)") from None
    return seconds


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC text of epoch seconds, as every record shows times."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()
