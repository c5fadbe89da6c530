"""Typed readers for settings taken from the environment.

Each refuses a bad value with ImproperlyConfigured naming the variable, so a typo stops the start
instead of running with a silently different configuration.
"""

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use true or false.")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at most {maximum}.")
    return value


def env_list(name: str) -> list[str]:
    raw = os.environ.get(name, "")
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if raw.strip() and not items:  # "," is a mistake, not "unset": for the ingest keys it would open /capture
        raise ImproperlyConfigured(f"{name}={raw!r} lists nothing; give comma-separated values or leave it unset.")
    return items


def env_time_format(name: str, default: str) -> str:
    """A format that reads back every time it writes, from the year 1 to 9999 (a two-digit year would read
    a first_seen of 1950 back as 2050)."""
    from datetime import UTC, datetime

    from events.timeparse import write_time

    value = os.environ.get(name, default)
    if "%" not in value:
        raise ImproperlyConfigured(f"{name}={value!r} has no strftime directive (e.g. %Y-%m-%d %H:%M:%S).")
    for sample in (
        datetime(2017, 12, 13, 21, 23, 10, tzinfo=UTC),
        datetime(1, 1, 2, 0, 0, 0, tzinfo=UTC),
        datetime(999, 11, 30, 9, 8, 7, tzinfo=UTC),
        datetime(1968, 2, 29, 12, 0, 59, tzinfo=UTC),
        datetime(9999, 12, 30, 23, 59, 58, tzinfo=UTC),
    ):
        try:
            if datetime.strptime(write_time(sample, value), value).replace(tzinfo=UTC) != sample:
                raise ValueError
        except ValueError:
            shown = write_time(sample, "%Y-%m-%d %H:%M:%S")
            raise ImproperlyConfigured(
                f"{name}={value!r} does not read back {shown} to the second; it needs a four-digit year (%Y), "
                "month, day, hour, minute and second."
            ) from None
    return value
