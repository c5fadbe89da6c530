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
    from datetime import datetime

    value = os.environ.get(name, default)
    if "%" not in value:
        raise ImproperlyConfigured(f"{name}={value!r} has no strftime directive (e.g. %Y-%m-%d %H:%M:%S).")
    try:
        sample = datetime(2017, 12, 13, 21, 23, 10)
        if datetime.strptime(sample.strftime(value), value) != sample:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={value!r} does not round-trip a time to the second; it needs year, month, day, hour, minute "
            "and second directives."
        ) from None
    return value
