"""Built-in filters and groupings.

Frame filters understand `raw_data.frames` (the Python client's shape: a list of frame objects with
function, module, filename, abs_path, lineno, context_line, pre_context, post_context and vars). Every
function copies only what it changes and returns anything else untouched, so inputs are never mutated.
"""

import re
from collections.abc import Callable

from grouping.registry import register_filter, register_grouping

MEMORY_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,16}")
ADDRESS_PLACEHOLDER = "0xADDRESS"


def map_frames(data: dict, change_frame: Callable[[dict], dict]) -> dict:
    """Return `data` with every frame of raw_data.frames passed through `change_frame` (a copying function)."""
    if not isinstance(data, dict):
        return data
    raw_data = data.get("raw_data")
    if not isinstance(raw_data, dict) or not isinstance(raw_data.get("frames"), list):
        return data
    frames = [change_frame(frame) if isinstance(frame, dict) else frame for frame in raw_data["frames"]]
    return {**data, "raw_data": {**raw_data, "frames": frames}}


def without_keys(frame: dict, keys: tuple[str, ...]) -> dict:
    present = [key for key in keys if key in frame]
    if not present:
        return frame
    copy = frame.copy()  # shallow: the values are shared, never changed
    for key in present:
        del copy[key]
    return copy


def replace_addresses(value):
    if isinstance(value, str):
        return MEMORY_ADDRESS.sub(ADDRESS_PLACEHOLDER, value) if "0x" in value else value
    if isinstance(value, dict):
        return {key: replace_addresses(item) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_addresses(item) for item in value]
    return value


@register_filter("exception_python_remove_line_no")
def exception_python_remove_line_no(data: dict) -> dict:
    """Drops `lineno` from every frame, so a base survives edits that only move code around."""
    return map_frames(data, lambda frame: without_keys(frame, ("lineno",)))


@register_filter("exception_python_remove_stack_vars")
def exception_python_remove_stack_vars(data: dict) -> dict:
    """Drops `vars` from every frame."""
    return map_frames(data, lambda frame: without_keys(frame, ("vars",)))


@register_filter("exception_python_process_stack_vars")
def exception_python_process_stack_vars(data: dict) -> dict:
    """Replaces memory addresses (0x7f3a...) inside the string values of every frame's `vars`."""

    def change(frame: dict) -> dict:
        if "vars" not in frame:
            return frame
        return {**frame, "vars": replace_addresses(frame["vars"])}

    return map_frames(data, change)


@register_filter("remove_absolute_paths")
def remove_absolute_paths(data: dict) -> dict:
    """Drops `abs_path` from every frame, so the same code deployed under different roots groups together."""
    return map_frames(data, lambda frame: without_keys(frame, ("abs_path",)))


@register_filter("remove_context_lines")
def remove_context_lines(data: dict) -> dict:
    """Drops `context_line`, `pre_context` and `post_context`, so comment and blank-line edits don't split a base."""
    return map_frames(data, lambda frame: without_keys(frame, ("context_line", "pre_context", "post_context")))


@register_filter("remove_memory_addresses")
def remove_memory_addresses(data: dict) -> dict:
    """Replaces memory addresses in every string anywhere in the data (any language, any shape)."""
    return replace_addresses(data)


@register_filter("extra_args_keys_only")
def extra_args_keys_only(data: dict) -> dict:
    """For extra_args: keeps which keys were sent and drops their values (useful with secrets or big blobs)."""
    if not isinstance(data, dict):
        return data
    return {key: None for key in sorted(data)}


@register_filter("extra_args_drop_private")
def extra_args_drop_private(data: dict) -> dict:
    """For extra_args: drops keys starting with an underscore."""
    if not isinstance(data, dict):
        return data
    return {key: value for key, value in data.items() if not key.startswith("_")}


@register_grouping("count_by_message")
def count_by_message(event: dict) -> dict:
    """Counts occurrences per message text."""
    return {event["message"]: 1}
