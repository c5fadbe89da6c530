"""How an error names what a client sent: quoted, and cut short when it is long or there are many."""

# What an error quotes of a client's values: a 1 MB body can send a value of a million characters, or
# ~30,000 ids or names, and an answer (or a log line) echoing them all helps no one.
CHARACTERS_QUOTED = 100
ITEMS_LISTED = 50


def quoted(value) -> str:
    """A value as an error names it: its repr, or for a long one the repr of its first CHARACTERS_QUOTED
    characters and its length."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= CHARACTERS_QUOTED:
        return repr(value)
    return f"{text[:CHARACTERS_QUOTED]!r}… ({len(text):,} characters)"


def listed(items: list, show=str) -> str:
    """The ids or names an error names: the first ITEMS_LISTED, and how many more."""
    shown = ", ".join(map(show, items[:ITEMS_LISTED]))
    return shown if len(items) <= ITEMS_LISTED else f"{shown} and {len(items) - ITEMS_LISTED} more"
