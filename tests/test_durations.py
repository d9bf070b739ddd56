"""Durations (`90`, `90s`, `5m`, `2h`, `1d`) and times: plain functions, no home or kernel."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import hypothesis.strategies as st
import pytest
from hypothesis import given

from runtool.durations import MAX_DURATION_S, check_time, iso, parse_duration, parse_time
from runtool.errors import InvalidInput

UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@pytest.mark.parametrize("text, seconds", [
    ("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0), ("0", 0.0),
    ("1.5m", 90.0), (" 5M ", 300.0), ("0.25s", 0.25), ("36500d", 36500 * 86400.0),
])
def test_duration_texts(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("number", [0, 1, 2.5, MAX_DURATION_S])
def test_duration_numbers_are_seconds(number):
    assert parse_duration(number) == float(number)


@pytest.mark.parametrize("value, says", [
    ("", "expected e.g. 90, 90s, 5m, 2h, 1d"), ("5x", "expected e.g."), ("-3", "expected e.g."),
    ("1e3", "expected e.g."), ("5 m", "expected e.g."), ("inf", "expected e.g."), ("1h30m", "expected e.g."),
    (".5s", "expected e.g."), ("٣", "expected e.g."), ("36501d", "too long"), ("9" * 400, "too long"),
    (True, "expected e.g."), (-1, "must be a finite number >= 0"), (math.nan, "finite number"),
    (math.inf, "finite number"), (10**400, "finite number"), (MAX_DURATION_S + 1, "too long"),
])
def test_bad_durations_name_what_and_why(value, says):
    with pytest.raises(InvalidInput) as refused:
        parse_duration(value, "--timeout")
    assert str(refused.value).startswith("bad --timeout ") and says in str(refused.value)


@given(st.integers(0, 36500), st.sampled_from(sorted(UNITS)))
def test_whole_durations_round_trip(amount, unit):
    seconds = amount * UNITS[unit]
    if seconds > MAX_DURATION_S:
        with pytest.raises(InvalidInput, match="too long"):
            parse_duration(f"{amount}{unit}")
    else:
        assert parse_duration(f"{amount}{unit}") == seconds
        assert parse_duration(f"{amount}{unit.upper()}") == seconds


@given(st.decimals(0, 10**6, places=3, allow_nan=False, allow_infinity=False))
def test_decimal_seconds_round_trip(amount):
    text = f"{amount:f}"
    if "." not in text or not text.split(".")[0]:
        return
    assert parse_duration(text + "s") == pytest.approx(float(amount))


# -- times --------------------------------------------------------------------------------

def test_times_with_and_without_a_zone():
    assert parse_time("2026-11-28T18:00+00:00") == datetime(2026, 11, 28, 18, tzinfo=timezone.utc).timestamp()
    assert parse_time("2026-11-28T18:00+02:00") == datetime(2026, 11, 28, 16, tzinfo=timezone.utc).timestamp()
    local = datetime(2026, 11, 28, 18).astimezone().timestamp()  # no zone: local time
    assert parse_time(" 2026-11-28T18:00 ") == local


@pytest.mark.parametrize("text", ["tomorrow", "", "2026-13-01", "18:00"])
def test_bad_times(text):
    with pytest.raises(InvalidInput) as refused:
        parse_time(text)
    assert str(refused.value) == f"bad time {text!r}: expected ISO 8601, e.g. 2026-11-28T18:00"


OUT_OF_RANGE = ["0001-01-01T00:00+01:00", "9999-12-31T23:59:59-12:00"]


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_times_out_of_range(text):
    with pytest.raises(InvalidInput, match=r"^bad time .*: out of range \(years 1 to 9999\)$"):
        parse_time(text)


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_times_out_of_range_name_the_text_typed(text):
    with pytest.raises(InvalidInput) as refused:
        parse_time(text)
    assert str(refused.value).startswith(f"bad time {text!r}")


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.just(timezone.utc)).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)))
def test_times_round_trip_through_iso(moment):
    seconds = parse_time(moment.isoformat())
    assert seconds == pytest.approx(moment.timestamp(), abs=1e-3)
    assert datetime.fromisoformat(iso(seconds)) - moment < timedelta(milliseconds=1)
    assert iso(seconds).endswith("+00:00")


@pytest.mark.parametrize("value", [True, "1", None, math.nan, math.inf, -1e300, 1e300, 253402300800])
def test_check_time_refuses_what_cannot_be_shown(value):
    with pytest.raises(InvalidInput, match="out of range"):
        check_time(value, "--at")


def test_check_time_and_iso():
    assert check_time(0) == 0.0 and iso(0) == "1970-01-01T00:00:00+00:00"
    assert check_time(253402300799) == 253402300799.0  # 9999-12-31T23:59:59Z
    assert iso(None) is None
