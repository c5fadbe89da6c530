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
        result = compute()
        self.put(key, result)
        return result

    def peek(self, key: Hashable) -> Any:
        """The remembered result, or None."""
        return self._results.get(key)

    def put(self, key: Hashable, result: Any) -> None:
        if len(self._results) >= self.size:
            self._results.clear()
        self._results[key] = result

    def clear(self) -> None:
        self._results.clear()
