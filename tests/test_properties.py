"""Property tests of the pipeline and of /capture (hypothesis)."""

import copy
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from events.services import KNOWN_FIELDS
from grouping.hashing import canonical_hash, canonical_json
from grouping.registry import FILTERS
from tests.conftest import make_event

BUILTIN_FILTERS = sorted(name for name in FILTERS if not name.startswith("test_"))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["0x7f3a2c1b5d30", "<Foo at 0xdeadbeef>", "0xADDRESS"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
frames = st.fixed_dictionaries(
    {},
    optional={
        "function": json_values,
        "module": json_values,
        "filename": json_values,
        "abs_path": json_values,
        "lineno": json_values,
        "context_line": json_values,
        "pre_context": json_values,
        "post_context": json_values,
        "vars": json_values,
    },
)
event_data = json_values | st.fixed_dictionaries(
    {"raw_data": json_values | st.fixed_dictionaries({"frames": st.lists(frames | json_values, max_size=4)})},
    optional={"message": json_values},
)


@pytest.mark.parametrize("name", BUILTIN_FILTERS)
@settings(max_examples=150, deadline=None)
@given(data=event_data)
def test_a_builtin_filter_never_mutates_never_raises_and_is_idempotent(name, data):
    before = copy.deepcopy(data)
    once = FILTERS[name](data)
    assert data == before
    assert FILTERS[name](once) == once
    json.dumps(once)  # still JSON


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_the_hash_is_stable_through_copies_and_json_round_trips(value):
    assert canonical_hash(value) == canonical_hash(copy.deepcopy(value))
    assert canonical_hash(json.loads(canonical_json(value))) == canonical_hash(value)


plain_values = st.recursive(
    st.none() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(first=plain_values, second=plain_values)
def test_the_hash_differs_when_the_data_differs(first, second):
    assume(first != second)
    assert canonical_hash(first) != canonical_hash(second)


FIELDS = sorted(KNOWN_FIELDS)


@pytest.mark.django_db
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4), body=json_values)
def test_capture_answers_200_or_4xx_for_any_json_in_any_field(client, changes, body):
    event = make_event(**{key: value for key, value in changes.items() if key != "timestamp"})
    if "timestamp" in changes:
        event["timestamp"] = changes["timestamp"]
    for payload in (event, [event, event], body):
        response = client.post("/capture", data=json.dumps(payload), content_type="application/json")
        assert response.status_code in (200, 400), (payload, response.content)
        assert response["Content-Type"] == "application/json"
