"""Time strings in and out: EVENTSUM_TIME_FORMAT (UTC), ISO 8601 with an offset, or Unix epoch seconds."""

import math
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.conf import settings

from events.quoting import quoted

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Python's datetimes end with the years 1 and 9999. A day's margin at each end leaves room for what is
# computed from a time: its bucket's start (EVENTSUM_TIME_INTERVAL is at most a day) and /search's
# default one-hour window.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
# "…T10:00:00 02:00": an offset whose "+" a URL query turned into a space.
UNESCAPED_PLUS = re.compile(r"\d\d:\d\d(:\d\d(\.\d+)?)? \d\d:?\d\d$")


def parse_time(value) -> datetime:
    """An aware UTC datetime from EARLIEST to LATEST, or ValueError with a message a client can act on."""
    try:
        moment = _parse(value)
    except OverflowError:  # an offset that carries it past the year 1 or 9999
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        raise ValueError(f"{quoted(value)} is out of range: times run from 0001-01-02 to 9999-12-30 (UTC)")
    return moment


def _parse(value) -> datetime:
    if isinstance(value, bool) or value is None:
        raise ValueError("expected a time string or Unix epoch seconds")
    if isinstance(value, (int, float)):
        return _from_epoch(value)
    if not isinstance(value, str):
        raise ValueError("expected a time string or Unix epoch seconds")
    text = value.strip()
    try:
        return datetime.strptime(text, settings.EVENTSUM_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return _from_epoch(seconds)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        hint = " (a '+' in a URL query must be sent as %2B)" if UNESCAPED_PLUS.search(text) else ""
        raise ValueError(
            f"{quoted(value)} is not a time: use {settings.EVENTSUM_TIME_FORMAT!r} (UTC), ISO 8601 with an offset, "
            f"or Unix epoch seconds{hint}"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _from_epoch(seconds: float) -> datetime:
    if not math.isfinite(seconds):
        raise ValueError("epoch seconds must be finite")
    try:
        return EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        hint = " (milliseconds? send seconds)" if abs(seconds) >= 1e11 else ""
        raise ValueError(f"epoch seconds {seconds:g} is out of range{hint}") from None


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return write_time(value, settings.EVENTSUM_TIME_FORMAT)


@lru_cache(maxsize=4096)  # a /search writes 200 times, mostly the same ones request after request
def write_time(value: datetime, time_format: str) -> str:
    value = value.astimezone(UTC)
    if value.year < 1000:  # the C library writes the year 999 as "999", which %Y can't read back
        time_format = DIRECTIVE.sub(lambda found: _four_digit_years(found, value), time_format)
    return value.strftime(time_format)


DIRECTIVE = re.compile("%.")  # left to right, so "%%Y" is a literal "%" and "Y"


def _four_digit_years(directive: re.Match, value: datetime) -> str:
    year = {"%Y": value.year, "%G": value.isocalendar().year}.get(directive.group())
    return directive.group() if year is None else f"{year:04d}"


def bucket_seconds() -> int:
    return settings.EVENTSUM_TIME_INTERVAL * 60


def bucket_start(moment: datetime, size: int | None = None) -> datetime:
    """The start of the epoch-aligned bucket of `size` seconds (default: the setting) holding `moment`."""
    size = size or bucket_seconds()
    seconds = (moment - EPOCH) // timedelta(seconds=1)
    return EPOCH + timedelta(seconds=seconds - seconds % size)


def to_unix_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)
