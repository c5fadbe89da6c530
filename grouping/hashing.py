"""The canonical hash: SHA-256 of canonical JSON, identical across processes, restarts and versions."""

import hashlib
import json
from typing import Any


def canonical_json(data: Any) -> str:
    """Keys sorted, separators "," and ":", no ASCII escaping: the text the hash is taken over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_hash(data: Any) -> str:
    return hash_text(canonical_json(data))
