"""A bounded per-process memo for pure results computed from data that isn't itself hashable."""

from collections.abc import Callable, Hashable
from typing import Any


class BoundedMemo:
    """Remembers up to `size` results by key; when full it starts over (cheap, and the hot keys return).

    With `weigh` (a result's approximate size in bytes), it also starts over before its results would
    weigh more than `budget`, and never keeps one result heavier than a sixteenth of it: a few events with
    traces of hundreds of kilobytes must not take a worker's memory, nor keep emptying the memo of the
    small ones."""

    def __init__(self, size: int, *, weigh: Callable[[Any], int] | None = None, budget: int = 0):
        self.size = size
        self.weigh = weigh
        self.budget = budget
        self.weight = 0
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
        weight = 0
        if self.weigh is not None:
            weight = self.weigh(result)
            if weight > self.budget // 16:
                return
            if self.weight + weight > self.budget:
                self.clear()
        if len(self._results) >= self.size:
            self.clear()
        self._results[key] = result
        self.weight += weight  # a key put again counts twice: the memo only starts over a little sooner

    def clear(self) -> None:
        self._results.clear()
        self.weight = 0
