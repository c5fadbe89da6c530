"""The canonical hash: SHA-256 of canonical JSON, identical across processes, restarts and versions.

Canonical JSON: keys sorted, separators "," and ":", UTF-8, no ASCII escaping. orjson writes exactly
that, fast. A document holding an integer beyond 64 bits (which orjson refuses) takes the standard
library's encoder instead, whose floats read 1e-07 where orjson's read 1e-7: still one text per document.
"""

import hashlib
import json
from typing import Any

import orjson

_SORTED = orjson.OPT_SORT_KEYS


def canonical_json(data: Any) -> str:
    try:
        return orjson.dumps(data, option=_SORTED).decode()
    except orjson.JSONEncodeError:
        return json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse
        )


def compact_json(data: Any) -> str:
    """Compact JSON in the keys' own order: what is stored as sent."""
    try:
        return orjson.dumps(data).decode()
    except orjson.JSONEncodeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse)


def _refuse(value):
    raise TypeError(f"{type(value).__name__} is not JSON")


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_hash(data: Any) -> str:
    return hash_text(canonical_json(data))
