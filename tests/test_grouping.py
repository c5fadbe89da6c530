"""Filters, groupings and the hash: pure functions, tested without the database."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from grouping.eventsum_filters import ADDRESS_PLACEHOLDER
from grouping.hashing import canonical_hash, canonical_json
from grouping.pipeline import FilterFailed, grouping_counters, message_text, normalize
from grouping.registry import FILTERS, GROUPINGS, UnknownNameError, get_filter, register_filter
from grouping.search_text import static_search_text, trigrams_of

ROOT = Path(__file__).resolve().parent.parent


def frame(**fields):
    return {"function": "f", "module": "m", "filename": "m.py", "abs_path": "/srv/m.py", "lineno": 3, **fields}


def data(*frames, message="boom"):
    return {"message": message, "raw_data": {"frames": list(frames)}}


FILTER_CASES = [
    # (filter, input, expected output)
    (
        "exception_python_remove_line_no",
        data(frame(lineno=7)),
        data({k: v for k, v in frame().items() if k != "lineno"}),
    ),
    ("exception_python_remove_line_no", {"raw_data": {"stack": "text"}}, {"raw_data": {"stack": "text"}}),
    (
        "exception_python_remove_line_no",
        {"raw_data": {"frames": ["not a frame", 3]}},
        {"raw_data": {"frames": ["not a frame", 3]}},
    ),
    ("exception_python_remove_stack_vars", data(frame(vars={"a": 1})), data(frame())),
    ("exception_python_remove_stack_vars", data(frame()), data(frame())),
    (
        "exception_python_process_stack_vars",
        data(frame(vars={"o": "<Foo at 0x7f3a2c1b5d30>", "n": [{"x": "0xdeadbeef"}], "i": 12, "s": "0x1"})),
        data(
            frame(vars={"o": f"<Foo at {ADDRESS_PLACEHOLDER}>", "n": [{"x": ADDRESS_PLACEHOLDER}], "i": 12, "s": "0x1"})
        ),
    ),
    ("exception_python_process_stack_vars", data(frame()), data(frame())),
    ("remove_absolute_paths", data(frame()), data({k: v for k, v in frame().items() if k != "abs_path"})),
    (
        "remove_context_lines",
        data(frame(context_line="x", pre_context=["a"], post_context=["b"])),
        data(frame()),
    ),
    (
        "remove_memory_addresses",
        {"message": "at 0xffff1234", "x": ["0xABCDEF01"]},
        {"message": f"at {ADDRESS_PLACEHOLDER}", "x": [ADDRESS_PLACEHOLDER]},
    ),
    ("extra_args_keys_only", {"b": 1, "a": {"secret": 2}}, {"a": None, "b": None}),
    ("extra_args_keys_only", [1, 2], [1, 2]),
    ("extra_args_drop_private", {"_token": "s", "user": 1}, {"user": 1}),
    ("exception_python_remove_line_no", "just a string", "just a string"),
    ("exception_python_remove_stack_vars", None, None),
]


@pytest.mark.parametrize(("name", "given", "expected"), FILTER_CASES)
def test_filter_output(name, given, expected):
    assert get_filter(name)(given) == expected


@pytest.mark.parametrize(("name", "given", "expected"), FILTER_CASES)
def test_a_filter_never_mutates_its_input(name, given, expected):
    before = copy.deepcopy(given)
    get_filter(name)(given)
    assert given == before


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_builtin_filter_passes_unhandled_shapes_through(name):
    shapes = [5, [], "text", None, 2.5]
    if not name.startswith("extra_args_"):  # those handle every object
        shapes += [{}, {"raw_data": None}, {"raw_data": {"frames": None}}, {"raw_data": {"frames": {}}}]
    for shape in shapes:
        assert FILTERS[name](shape) == shape


def test_an_unknown_filter_name_fails_loudly_listing_the_registered_ones():
    with pytest.raises(UnknownNameError) as raised:
        get_filter("nope")
    assert "exception_python_remove_line_no" in str(raised.value)


def test_registering_a_different_function_under_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_filter("exception_python_remove_line_no")(lambda d: d)


def test_installed_apps_filters_are_discovered_at_start():
    # The built-ins live in the grouping app's own eventsum_filters module and are found by the same
    # autodiscovery that finds an application's; nothing imports them directly.
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'eventsum_project.settings'; django.setup(); "
        "from grouping.registry import FILTERS, GROUPINGS; print(sorted(FILTERS), sorted(GROUPINGS))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "'exception_python_remove_line_no'" in output and "['count_by_message']" in output


def test_applications_can_register_filters_from_an_installed_app():
    # tests/eventsum_filters.py is not autodiscovered (tests is not an app), so register directly and clean up.
    @register_filter("test_upper_message")
    def upper(d):
        return {**d, "message": d["message"].upper()}

    try:
        assert normalize({"message": "a"}, {}, {"instance": ["test_upper_message"]}).message == "a"
    finally:
        del FILTERS["test_upper_message"]


HASH_CASES = [
    (
        {"b": [1, 2.5, None, True], "a": "ü✓", "c": {}},
        "b9bc6a406785ff135e438ac858f55a9d2e73e1491c9c852b2b866f5b09729fae",
    ),
    ({}, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"),
]


@pytest.mark.parametrize(("value", "expected"), HASH_CASES)
def test_the_hash_is_sha256_of_canonical_json(value, expected):
    assert canonical_hash(value) == expected


def test_canonical_json_sorts_keys_without_spaces_or_ascii_escaping():
    assert canonical_json({"b": 1, "a": ["é", {"d": 1, "c": 2}]}) == '{"a":["é",{"c":2,"d":1}],"b":1}'


def test_the_hash_is_the_same_in_another_process():
    code = (
        "from grouping.hashing import canonical_hash; "
        "print(canonical_hash({'b': [1, 2.5, None, True], 'a': 'ü✓', 'c': {}}))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert output == HASH_CASES[0][1]


def test_normalize_removes_the_message_from_generic_data_and_applies_stages_in_order():
    event_data = data(frame(lineno=9, vars={"p": "0x7f3a2c1b5d30"}), message="hello")
    result = normalize(
        event_data,
        {"_secret": 1, "k": 2},
        {
            "instance": ["exception_python_process_stack_vars"],
            "base": ["exception_python_remove_line_no", "exception_python_remove_stack_vars"],
            "extra_args": ["extra_args_drop_private"],
        },
    )
    assert "message" not in result.generic_data
    assert result.generic_data["raw_data"]["frames"][0]["vars"] == {"p": ADDRESS_PLACEHOLDER}
    assert result.processed_data == {"raw_data": {"frames": [{k: v for k, v in frame().items() if k != "lineno"}]}}
    assert result.processed_details == {"k": 2}
    assert result.generic_data_hash == canonical_hash(result.generic_data)
    assert result.processed_data_hash == canonical_hash(result.processed_data)
    assert event_data["raw_data"]["frames"][0]["vars"] == {"p": "0x7f3a2c1b5d30"}


def test_a_failing_filter_is_reported_by_stage_and_name():
    @register_filter("test_explodes")
    def explodes(d):
        raise ValueError("no")

    try:
        with pytest.raises(FilterFailed, match="base filter 'test_explodes'"):
            normalize({"message": "m"}, {}, {"base": ["test_explodes"]})
    finally:
        del FILTERS["test_explodes"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [("text", "text"), (None, ""), (12, "12"), ({"b": 1, "a": [1, "é"]}, '{"b":1,"a":[1,"é"]}'), (True, "true")],
)
def test_message_text(message, expected):
    assert message_text({"message": message}) == expected


def test_count_by_message_counts_one_per_message():
    assert grouping_counters(["count_by_message"], {"message": "m"}) == {"count_by_message": {"m": 1}}


@pytest.mark.parametrize(
    "returned", [["not", "a", "dict"], {"k": "1"}, {"k": True}, {"k": float("nan")}, {"k": float("-inf")}, {1: 1}]
)
def test_a_grouping_returning_the_wrong_shape_is_refused(returned):
    GROUPINGS["test_bad_grouping"] = lambda event: returned
    try:
        with pytest.raises(FilterFailed, match="test_bad_grouping"):
            grouping_counters(["test_bad_grouping"], {"message": "m"})
    finally:
        del GROUPINGS["test_bad_grouping"]


def test_static_search_text_holds_type_name_and_frames_lower_cased():
    text = static_search_text("Python", "ZeroDivisionError", data(frame(function="Compute")))
    assert text.split("\n") == ["python", "zerodivisionerror", "compute", "m", "m.py"]


def test_every_piece_of_a_keyword_inside_the_text_is_among_its_trigrams():
    pieces = trigrams_of("zerodivisionerror test/server.py")
    assert trigrams_of("division") <= pieces
    assert trigrams_of("rver") <= pieces
    assert not trigrams_of("divisor") <= pieces


def test_bounded_memo_computes_each_key_once_and_stays_within_its_size():
    from grouping.memo import BoundedMemo

    memo, calls = BoundedMemo(2), []

    def compute(value):
        return lambda: calls.append(value) or value * 10

    assert memo.get("a", compute(1)) == 10
    assert memo.get("a", compute(99)) == 10  # remembered
    memo.get("b", compute(2))
    memo.get("c", compute(3))  # full: starts over
    assert memo.get("a", compute(4)) == 40
    assert calls == [1, 2, 3, 4]


def test_bounded_memo_with_a_budget_starts_over_before_it_and_keeps_no_giant():
    from grouping.memo import BoundedMemo

    memo = BoundedMemo(100, weigh=len, budget=160)  # a sixteenth: 10
    memo.put("giant", "x" * 11)
    assert memo.peek("giant") is None
    for index in range(16):
        memo.put(index, "y" * 10)
    assert [memo.peek(index) for index in (0, 15)] == ["y" * 10] * 2  # 160: full, not over
    memo.put("one more", "z")
    assert (memo.peek(0), memo.peek("one more")) == (None, "z")  # started over first
