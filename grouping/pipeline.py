"""The normalization pipeline of SPEC section 2: one pure function, used by the capture path and by the
models' save hooks alike."""

import json
import math
from dataclasses import dataclass

from grouping.hashing import canonical_json, compact_json, hash_text
from grouping.memo import BoundedMemo
from grouping.registry import get_filter, get_grouping

# Bump when a built-in filter changes what it produces; stored on each base so a change never silently
# regroups stored events without anyone being able to tell which rules made a base.
NORMALIZATION_VERSION = 1

STAGES = ("instance", "base", "extra_args")


class FilterFailed(Exception):
    def __init__(self, stage: str, name: str, error: Exception):
        self.stage = stage
        self.name = name
        super().__init__(f"{stage} filter {name!r} failed on this payload: {type(error).__name__}")


@dataclass(frozen=True, slots=True)
class Normalized:
    message: str
    generic_data: dict
    generic_data_json: str
    generic_data_hash: str
    processed_data_json: str
    processed_data_hash: str
    processed_details: dict
    processed_details_json: str

    @property
    def processed_data(self) -> dict:
        return json.loads(self.processed_data_json)


def message_text(event_data: dict) -> str:
    """A message that is not a string is kept as its compact JSON text; no message is the empty string."""
    message = event_data.get("message") if isinstance(event_data, dict) else None
    if message is None:
        return ""
    if isinstance(message, str):
        return message
    return compact_json(message)


def sanitize(value):
    """NUL can't be stored by PostgreSQL and lone surrogates can't be encoded: both become U+FFFD."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {sanitize(key): sanitize(item) for key, item in value.items()}
    if isinstance(value, list | tuple):  # a tuple only from a filter: JSON writes it as an array
        return [sanitize(item) for item in value]
    return value


def storable_json(data, dumps, *, filtered: bool) -> tuple:
    """`data` and its JSON text from `dumps`, with any NUL or lone surrogate made U+FFFD first. A capture's
    input has them replaced when it is parsed, so only a filter or a grouping (application code) can bring
    them back: the text is checked only when a filter made `data`. Stored as they are, PostgreSQL would
    refuse the whole capture. Checking the text costs a scan; walking the data would cost much more, and is
    done only when the text holds one."""
    text = dumps(data)
    if filtered and ("\\u0000" in text or (not text.isascii() and not _encodes(text))):
        data = sanitize(data)
        text = dumps(data)
    return data, text


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which the standard library's encoder writes as it is
        return False
    return True


def run_filters(stage: str, names: list[str], data):
    for name in names:
        function = get_filter(name)
        try:
            data = function(data)
        except RecursionError:
            raise
        except Exception as error:  # a filter is application code: its failure is the payload's 400
            raise FilterFailed(stage, name, error) from error
    return data


# Filters are pure, so the processed data of a generic data is always the same: each process remembers
# the recent ones, and an instance seen again skips its base filters and their hashing.
# Entries are text only: a parsed trace is hundreds of objects that every full garbage collection walks
# (1,000 of them made a worker's full collection 50 ms instead of 20, a pause every request behind it
# waited out).
_processed_memo = BoundedMemo(1_000, weigh=lambda entry: len(entry[0]), budget=32 * 2**20)


def _processed(generic_data: dict, generic_hash: str, base_filters: tuple[str, ...]) -> tuple[str, str]:
    def compute() -> tuple[str, str]:
        processed = run_filters("base", base_filters, generic_data)
        _, processed_json = storable_json(processed, canonical_json, filtered=bool(base_filters))
        return processed_json, hash_text(processed_json)

    return _processed_memo.get((generic_hash, base_filters), compute)


def normalize(event_data: dict, extra_args: dict, filters: dict[str, list[str]]) -> Normalized:
    instance_data = run_filters("instance", filters.get("instance", ()), event_data)
    if isinstance(instance_data, dict):
        generic_data = {key: value for key, value in instance_data.items() if key != "message"}
    else:
        generic_data = {"raw_data": instance_data}
    generic_data, generic_json = storable_json(generic_data, canonical_json, filtered=bool(filters.get("instance")))
    generic_hash = hash_text(generic_json)
    processed_json, processed_hash = _processed(generic_data, generic_hash, tuple(filters.get("base", ())))
    details = run_filters("extra_args", filters.get("extra_args", ()), extra_args)
    details, details_json = storable_json(details, compact_json, filtered=bool(filters.get("extra_args")))
    return Normalized(
        message=message_text(event_data),
        generic_data=generic_data,
        generic_data_json=generic_json,
        generic_data_hash=generic_hash,
        processed_data_json=processed_json,
        processed_data_hash=processed_hash,
        processed_details=details,
        processed_details_json=details_json,
    )


def grouping_counters(names: list[str], event: dict) -> dict[str, dict[str, float]]:
    """Each grouping's counter increments for one occurrence: {grouping name: {key: number}}."""
    counters = {}
    for name in names:
        function = get_grouping(name)
        try:
            increments = function(event)
        except Exception as error:
            raise FilterFailed("grouping", name, error) from error
        if not isinstance(increments, dict) or not all(
            isinstance(key, str) and is_finite_number(value) for key, value in increments.items()
        ):
            raise FilterFailed("grouping", name, TypeError("must return {str: finite number}"))
        counters[name] = storable = {}
        for key, value in increments.items():
            key = sanitize(key)  # a NUL or lone surrogate, as in filters' output; two keys may become one
            storable[key] = storable.get(key, 0) + value
    return counters


def is_finite_number(value) -> bool:
    # NaN and infinities have no JSON form: stored, they became null and the counter was lost.
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)
