"""The registry of named filters and groupings.

A filter is a pure function `dict -> dict`: it returns new data and never mutates its argument, and passes
through unchanged any data whose shape it does not handle. A grouping is a function `(event) -> dict of
counter increments` ({key: number}) that the capture path adds into the occurrence bucket's counters
under the grouping's name. Applications register their own with the decorators below, from an
`eventsum_filters` module in any installed app.
"""

from collections.abc import Callable
from typing import Any

Filter = Callable[[dict], dict]
Grouping = Callable[[dict], dict]

FILTERS: dict[str, Filter] = {}
GROUPINGS: dict[str, Grouping] = {}


class UnknownNameError(LookupError):
    def __init__(self, kind: str, unknown: list[str], registered: list[str]):
        self.kind = kind
        self.unknown = unknown
        self.registered = registered
        super().__init__(f"unknown {kind} {', '.join(unknown)}; registered: {', '.join(registered)}")


def register_filter(name: str) -> Callable[[Filter], Filter]:
    return _register(FILTERS, "filter", name)


def register_grouping(name: str) -> Callable[[Grouping], Grouping]:
    return _register(GROUPINGS, "grouping", name)


def _register(table: dict[str, Any], kind: str, name: str):
    def decorator(function):
        existing = table.get(name)
        if existing is not None and existing is not function:
            raise ValueError(f"{kind} {name!r} is already registered by {existing.__module__}")
        table[name] = function
        return function

    return decorator


def unknown_filters(names: list[str]) -> list[str]:
    return [name for name in names if name not in FILTERS]


def unknown_groupings(names: list[str]) -> list[str]:
    return [name for name in names if name not in GROUPINGS]


def get_filter(name: str) -> Filter:
    try:
        return FILTERS[name]
    except KeyError:
        raise UnknownNameError("filter", [name], sorted(FILTERS)) from None


def get_grouping(name: str) -> Grouping:
    try:
        return GROUPINGS[name]
    except KeyError:
        raise UnknownNameError("grouping", [name], sorted(GROUPINGS)) from None
