"""What `keywords` searches: a base's lower-cased name, type, frame functions, modules and filenames and
its messages, and the trigrams (three-character pieces of its words) that index them."""

import re

_WORD = re.compile(r"\w+")
FRAME_KEYS = ("function", "module", "filename")


def static_search_text(event_type: str, event_name: str, processed_data) -> str:
    parts = [event_type, event_name]
    raw_data = processed_data.get("raw_data") if isinstance(processed_data, dict) else None
    frames = raw_data.get("frames") if isinstance(raw_data, dict) else None
    if isinstance(frames, list):
        for frame in frames:
            if isinstance(frame, dict):
                parts.extend(value for key in FRAME_KEYS if isinstance(value := frame.get(key), str))
    return "\n".join(dict.fromkeys(parts)).lower()


def trigrams_of(text: str) -> frozenset[str]:
    """Every three-character piece of every word; a keyword inside the text has all of its pieces here."""
    pieces = set()
    for word in _WORD.findall(text.lower()):
        pieces.update(word[i : i + 3] for i in range(len(word) - 2))
    return frozenset(pieces)
