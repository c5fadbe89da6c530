"""A bounded per-process memo for pure results computed from data that isn't itself hashable."""

from collections.abc import Callable, Hashable
from typing import Any


class BoundedMemo:
    """Remembers up to `size` results by key; when full it starts over (cheap, and the hot keys return)."""

    def __init__(self, size: int):
        self.size = size
        self._results: dict[Hashable, Any] = {}

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        try:
            return self._results[key]
        except KeyError:
            pass
        if len(self._results) >= self.size:
            self._results.clear()
        result = self._results[key] = compute()
        return result
