import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from events.models import Environment, EventBase, EventGroup, EventInstance, OccurrenceBucket, Service
from events.services import capture_events
from grouping.registry import FILTERS, GROUPINGS, register_filter, register_grouping
from tests.conftest import EXAMPLE_EVENT, assert_totals_match_buckets, make_event, post_json

pytestmark = pytest.mark.django_db


def test_it_stores_the_users_example_event_and_returns_the_ids(client):
    response = post_json(client, "/capture", EXAMPLE_EVENT)

    assert response.status_code == 200
    body = response.json()
    base = EventBase.objects.get()
    instance = EventInstance.objects.get()
    assert body == {"event_base_id": base.id, "event_instance_id": instance.id, "event_group_id": 0}
    assert base.service.name == "WISH FE"
    assert base.environment.normalized_name == "prod"
    assert (base.event_type, base.event_name) == ("python", "ZeroDivisionError")
    frames = base.processed_data["raw_data"]["frames"]
    assert all("lineno" not in frame for frame in frames)
    assert instance.raw_data == EXAMPLE_EVENT["event_data"]
    assert instance.latest_message == "integer division or modulo by zero"
    bucket = OccurrenceBucket.objects.get()
    assert (bucket.count, bucket.bucket_start) == (1, datetime(2017, 12, 13, 21, 23, tzinfo=UTC))
    assert bucket.last_seen == datetime(2017, 12, 13, 21, 23, 10, tzinfo=UTC)


def test_it_answers_with_and_without_a_trailing_slash(client):
    assert post_json(client, "/capture/", make_event()).status_code == 200
    assert post_json(client, "/capture", make_event()).status_code == 200
    assert OccurrenceBucket.objects.get().count == 2


def test_it_accepts_any_content_type(client):
    response = client.post("/capture", data=json.dumps(make_event()), content_type="text/plain")
    assert response.status_code == 200


def test_it_keeps_the_instance_when_only_a_memory_address_in_vars_differs(capture):
    first = capture(make_event(vars={"obj": "<Foo object at 0x7f3a2c1b5d30>"}))
    second = capture(make_event(vars={"obj": "<Foo object at 0x7f00deadbeef>"}))
    assert second["event_instance_id"] == first["event_instance_id"]
    assert OccurrenceBucket.objects.get().count == 2


def test_it_keeps_the_base_but_makes_a_new_instance_when_only_line_numbers_differ(capture):
    first = capture(make_event(lineno=17))
    second = capture(make_event(lineno=99))
    assert second["event_base_id"] == first["event_base_id"]
    assert second["event_instance_id"] != first["event_instance_id"]


def test_it_makes_a_new_base_for_a_different_event_name(capture):
    first = capture(make_event())
    second = capture(make_event(event_name="ValueError"))
    assert second["event_base_id"] != first["event_base_id"]


def test_it_keeps_the_instance_when_only_the_message_differs_and_remembers_the_latest(capture):
    first = capture(make_event(message="one", timestamp="2020-01-01 00:00:00"))
    second = capture(make_event(message="two", timestamp="2020-01-01 00:00:30"))
    capture(make_event(message="older", timestamp="2019-01-01 00:00:00"))
    assert second["event_instance_id"] == first["event_instance_id"]
    instance = EventInstance.objects.get()
    assert instance.latest_message == "two"
    assert instance.first_seen == datetime(2019, 1, 1, tzinfo=UTC)
    assert EventBase.objects.get().latest_message == "two"


def test_one_request_with_occurrences_of_one_instance_keeps_the_latest_by_time_not_by_position(capture):
    capture(
        [
            make_event(message="late", timestamp="2020-01-01 00:00:40"),
            make_event(message="early", timestamp="2020-01-01 00:00:10"),
        ]
    )
    instance = EventInstance.objects.get()
    assert (instance.latest_message, instance.raw_data["message"]) == ("late", "late")
    assert (instance.first_seen.second, instance.last_seen.second) == (10, 40)
    base = EventBase.objects.get()
    assert (base.latest_message, base.first_seen.second, base.last_seen.second) == ("late", 10, 40)
    bucket = OccurrenceBucket.objects.get()
    assert (bucket.count, bucket.last_seen.second) == (2, 40)


def test_it_keeps_a_non_string_message_as_compact_json(capture):
    capture(make_event(message={"code": 7, "why": "ü"}))
    assert EventInstance.objects.get().latest_message == '{"code":7,"why":"ü"}'


def test_it_treats_spelling_variants_of_a_service_as_one_and_keeps_the_first_display_name(capture):
    for name in ("WISH FE", "wish_fe", "Wish-FE", "  wish - fe "):
        capture(make_event(service=name))
    service = Service.objects.get()
    assert (service.name, service.normalized_name) == ("WISH FE", "wish_fe")
    assert EventBase.objects.count() == 1


def test_a_worker_remembers_a_bounded_number_of_service_ids_and_still_resolves_every_name(capture, monkeypatch):
    # With auto-create on, a client can name new services without end: the ids a process remembers must
    # not grow with them, and a name it has forgotten must still find its own row.
    from events.services import _id_caches

    memo = _id_caches[Service]
    monkeypatch.setattr(memo, "size", 3)
    names = [f"svc {n}" for n in range(5)]
    for _ in range(2):
        results = capture([make_event(service=name) for name in names])["results"]
        assert len(memo._results) <= 3
    assert Service.objects.count() == 5
    by_base = dict(EventBase.objects.values_list("id", "service__name"))
    assert [by_base[result["event_base_id"]] for result in results] == names


def test_it_defaults_the_environment_and_normalizes_its_name(capture):
    capture(make_event(environment=None))
    capture(make_event(environment="Stage Two"))
    assert sorted(Environment.objects.values_list("normalized_name", flat=True)) == ["default", "stage_two"]


def test_it_refuses_unknown_names_when_auto_create_is_off(client, settings):
    Service.objects.create(name="Known Service")
    Environment.objects.create(name="prod")
    settings.EVENTSUM_AUTO_CREATE = False

    response = post_json(client, "/capture", make_event(service="Other"))

    assert response.status_code == 400
    message = response.json()["service"][0]
    assert "'Other'" in message and "Known Service" in message
    assert post_json(client, "/capture", make_event(service="known-service")).status_code == 200
    assert post_json(client, "/capture", make_event(environment="qa")).status_code == 400
    assert Service.objects.count() == 1


def test_with_auto_create_off_a_capture_naming_no_environment_gets_the_default_one(client, settings):
    # "default" is the service's own name for "none given", not one a client made up: refusing it would
    # refuse every capture without an environment until someone created it by hand.
    Service.objects.create(name="Known Service")
    settings.EVENTSUM_AUTO_CREATE = False

    assert post_json(client, "/capture", make_event(service="known service", environment=None)).status_code == 200
    assert post_json(client, "/capture", make_event(service="known service", environment="qa")).status_code == 400

    assert list(Environment.objects.values_list("normalized_name", flat=True)) == ["default"]
    assert OccurrenceBucket.objects.get().count == 1


def test_an_array_naming_unknown_names_when_auto_create_is_off_gets_them_per_index(client, settings):
    Service.objects.create(name="Known Service")
    Environment.objects.create(name="prod")
    settings.EVENTSUM_AUTO_CREATE = False
    events = [
        make_event(service="known service", environment="prod"),
        make_event(service="Other", environment="prod"),
        make_event(service="known-service", environment="qa"),
        make_event(service="Third", environment="Stage"),
    ]

    response = post_json(client, "/capture", events)

    assert response.status_code == 400
    errors = response.json()
    assert sorted(errors) == ["1", "2", "3"]
    assert list(errors["1"]) == ["service"] and list(errors["2"]) == ["environment"]
    assert "'Other'" in errors["1"]["service"][0] and "known: Known Service." in errors["1"]["service"][0]
    assert "'qa'" in errors["2"]["environment"][0] and "known: prod." in errors["2"]["environment"][0]
    assert "'Third'" in errors["3"]["service"][0] and "'Stage'" in errors["3"]["environment"][0]
    assert not OccurrenceBucket.objects.exists()


def test_the_known_names_listed_are_capped(client, settings):
    from events.quoting import ITEMS_LISTED

    Service.objects.bulk_create(Service(name=f"svc {n:03}", normalized_name=f"svc_{n:03}") for n in range(60))
    settings.EVENTSUM_AUTO_CREATE = False

    message = post_json(client, "/capture", make_event(service="Other")).json()["service"][0]

    listed = message.split("known: ")[1].split(", ")
    assert listed[:ITEMS_LISTED] == [f"svc {n:03}" for n in range(ITEMS_LISTED)]
    assert listed[-1] == "... (GET /services lists all 60). EVENTSUM_AUTO_CREATE is off."


def test_it_stores_an_array_and_answers_in_the_same_order(client):
    events = [make_event(), make_event(event_name="KeyError"), make_event()]
    response = post_json(client, "/capture", events)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["event_base_id"] for r in results] == [results[0]["event_base_id"], results[1]["event_base_id"]] + [
        results[0]["event_base_id"]
    ]
    assert results[0]["event_base_id"] != results[1]["event_base_id"]
    assert sum(OccurrenceBucket.objects.values_list("count", flat=True)) == 3


def test_each_row_of_an_array_gets_its_own_events_data(capture):
    # Three bases of three instances each, every event with its own message, vars and extra_args: each stored
    # JSON column must belong to its own row, whatever order the array and the statement's inputs take.
    events = []
    for base in (2, 0, 1):
        for lineno in (3, 1, 2):
            event = make_event(lineno=lineno, vars={"self": f"<Account at 0x7f00{base}{lineno}00>"})
            event["event_data"]["raw_data"]["frames"][1]["function"] = f"func{base}"
            event["event_data"]["message"] = f"base {base} line {lineno}"
            event["extra_args"] = {"request": f"/pay/{base}/{lineno}", "_token": f"secret {base}{lineno}"}
            event["configurable_filters"]["extra_args"] = ["extra_args_drop_private"]
            events.append(event)

    results = capture(events)["results"]

    assert len({r["event_base_id"] for r in results}) == 3
    assert len({r["event_instance_id"] for r in results}) == 9
    for event, result in zip(events, results, strict=True):
        frames = event["event_data"]["raw_data"]["frames"]
        instance = EventInstance.objects.get(pk=result["event_instance_id"])
        assert instance.raw_data == event["event_data"]
        assert instance.raw_details == event["extra_args"]
        assert instance.processed_details == {"request": event["extra_args"]["request"]}
        assert instance.generic_data["raw_data"]["frames"][1]["lineno"] == frames[1]["lineno"]
        assert instance.generic_data["raw_data"]["frames"][1]["vars"] == {"self": "<Account at 0xADDRESS>"}
        base = EventBase.objects.get(pk=result["event_base_id"])
        assert base.processed_data["raw_data"]["frames"][1] == {
            key: value for key, value in frames[1].items() if key not in ("lineno", "vars")
        }


def test_an_array_with_one_bad_item_stores_nothing_and_names_the_index(client):
    events = [make_event(), make_event(event_type=5), make_event()]
    response = post_json(client, "/capture", events)
    assert response.status_code == 400
    assert response.json() == {"1": {"event_type": ["Expected a string, got a number."]}}
    assert not EventBase.objects.exists() and not Service.objects.exists()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"service": None}, "service", "may not be null"),
        ({"service": "   "}, "service", "blank"),
        ({"service": ["a"]}, "service", "string"),
        ({"event_name": ""}, "event_name", "blank"),
        ({"event_type": 3}, "event_type", "string"),
        ({"event_data": "text"}, "event_data", "object"),
        ({"event_data": None}, "event_data", "may not be null"),
        ({"extra_args": [1]}, "extra_args", "object"),
        ({"environment": 12}, "environment", "string"),
        ({"timestamp": "yesterday"}, "timestamp", "'yesterday'"),
        ({"timestamp": True}, "timestamp", "time"),
        ({"timestamp": 1e300}, "timestamp", "range"),
        ({"timestamp": "0001-01-01T00:00:00+14:00"}, "timestamp", "out of range"),  # before the year 1 in UTC
        ({"timestamp": "9999-12-31T23:30:00-12:00"}, "timestamp", "out of range"),  # after 9999
        ({"timestamp": "0001-01-01 23:59:59"}, "timestamp", "0001-01-02"),
        ({"timestamp": -62135596800}, "timestamp", "out of range"),
        ({"configurable_filters": ["a"]}, "configurable_filters", "object"),
        ({"configurable_filters": {"instance": "x"}}, "configurable_filters", "list"),
        ({"configurable_filters": {"everything": []}}, "configurable_filters", "'everything'"),
        ({"configurable_groupings": "count_by_message"}, "configurable_groupings", "list"),
        ({"event_name": "x" * 1025}, "event_name", "1024"),
        ({"servce": "typo"}, "non_field_errors", "servce"),
    ],
)
def test_it_answers_400_naming_the_bad_field(client, change, field, words):
    response = post_json(client, "/capture", make_event(**change))
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field], errors
    assert words in " ".join(errors[field])
    assert not EventBase.objects.exists()


@pytest.mark.parametrize("field", ["service", "event_name", "event_type", "event_data"])
def test_a_required_field_left_out_is_named_as_required(client, field):
    event = make_event()
    del event[field]
    response = post_json(client, "/capture", event)
    assert response.status_code == 400
    assert response.json() == {field: ["This field is required."]}


def test_an_unknown_filter_lists_the_unknown_and_the_registered_names(client):
    event = make_event(configurable_filters={"base": ["exception_python_remove_line_no", "no_such_filter"]})
    response = post_json(client, "/capture", event)
    assert response.status_code == 400
    message = response.json()["configurable_filters"][0]
    assert "Unknown filters: 'no_such_filter'." in message
    assert "exception_python_remove_stack_vars" in message


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"timestamp": "x" * 500_000}, "timestamp", f"{'x' * 100!r}… (500,000 characters) is not a time"),
        (
            {"configurable_filters": {"instance": ["f" * 500_000]}},
            "configurable_filters",
            f"Unknown filters: {'f' * 100!r}… (500,000 characters). Registered filters: ",
        ),
        (
            {"configurable_filters": {"s" * 500_000: []}},
            "configurable_filters",
            f"Unknown stage {'s' * 100!r}… (500,000 characters); use ",
        ),
        (
            {f"field {n:05}": 1 for n in range(30_000)},
            "non_field_errors",
            "Unknown fields: 'field 00000', 'field 00001', ",
        ),
    ],
)
def test_an_error_quotes_the_start_of_a_long_value_and_the_first_fifty_of_many(client, change, field, expected):
    # A 1 MB body can send a value of a million characters or thousands of names: the answer names them
    # without echoing them all.
    response = post_json(client, "/capture", {**make_event(), **change})
    assert response.status_code == 400
    assert len(response.content) < 2_000
    message = response.json()[field][0]
    assert message.startswith(expected)
    if field == "non_field_errors":
        assert message.endswith("'field 00049' and 29950 more.")


def test_an_unknown_grouping_lists_the_registered_ones(client):
    response = post_json(client, "/capture", make_event(configurable_groupings=["count_by_colour"]))
    assert response.status_code == 400
    message = response.json()["configurable_groupings"][0]
    assert "count_by_colour" in message and "count_by_message" in message


@pytest.fixture
def failing_filter():
    @register_filter("test_always_fails")
    def always_fails(data):
        raise KeyError("boom")

    yield "test_always_fails"
    del FILTERS["test_always_fails"]


def test_a_filter_failing_on_the_payload_is_a_400_naming_it(client, failing_filter):
    response = post_json(client, "/capture", make_event(configurable_filters={"instance": [failing_filter]}))
    assert response.status_code == 400
    assert "test_always_fails" in response.json()["configurable_filters"][0]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "Invalid JSON"),
        (b"", "body is empty"),
        (b" \r\n", "body is empty"),
        (b"42", "number"),
        (b'"text"', "string"),
        (b"null", "null"),
        (b"[]", "Empty array"),
        (b"\xff\xfe\xfa{}", "UTF-8"),
        (b'{"service": NaN}', "NaN"),
        (b'{"a": 1e999}', "out of range"),
        (b"[" * 100000 + b"]" * 100000, "deeply"),
    ],
)
def test_hostile_bodies_get_a_400_never_a_500(client, body, words):
    response = client.post("/capture", data=body, content_type="application/json")
    assert response.status_code == 400
    assert words in response.json()["detail"]


def test_a_batch_over_the_maximum_is_refused(client, settings):
    settings.EVENTSUM_MAX_BATCH = 2
    response = post_json(client, "/capture", [make_event()] * 3)
    assert response.status_code == 400
    assert "EVENTSUM_MAX_BATCH=2" in response.json()["detail"]


def test_a_body_over_the_size_limit_is_a_413(client, settings):
    settings.EVENTSUM_MAX_BODY_BYTES = 2000
    event = make_event(extra_args={"blob": "x" * 3000})
    response = post_json(client, "/capture", event)
    assert response.status_code == 413
    assert "EVENTSUM_MAX_BODY_BYTES=2000" in response.json()["detail"]
    assert not EventBase.objects.exists()


def test_nul_characters_and_lone_surrogates_are_stored_as_replacement_characters(client):
    body = json.dumps(make_event(message="a\u0000b", extra_args={"k\u0000": "\ud800x"}))
    response = client.post("/capture", data=body, content_type="application/json")
    assert response.status_code == 200
    instance = EventInstance.objects.get()
    assert instance.latest_message == "a\ufffdb"
    assert instance.raw_details == {"k\ufffd": "\ufffdx"}


UNSTORABLE = {"nul": "\x00", "lone-surrogate": "\ud800"}


@pytest.fixture
def own_registrations():
    """Filters and groupings a test registers are gone after it."""
    before = dict(FILTERS), dict(GROUPINGS)
    yield
    for registry, kept in zip((FILTERS, GROUPINGS), before, strict=True):
        registry.clear()
        registry.update(kept)


@pytest.mark.parametrize("char", UNSTORABLE.values(), ids=UNSTORABLE)
@pytest.mark.parametrize(
    ("stage", "stored"),
    [
        ("instance", lambda instance: instance.generic_data),
        ("base", lambda instance: instance.event_base.processed_data),
        ("extra_args", lambda instance: instance.processed_details),
    ],
    ids=["instance", "base", "extra_args"],
)
def test_a_filter_bringing_a_character_postgresql_cant_store_has_it_stored_replaced(
    client, reader, own_registrations, char, stage, stored
):
    # Input has NUL and lone surrogates replaced when parsed; a filter is application code and can add them.
    name = f"test_adds_{stage}_{ord(char)}"  # one name per function: processed data is remembered per name
    register_filter(name)(lambda data: {**data, f"key{char}": (f"value{char}",)})  # a tuple is stored as a list
    response = post_json(client, "/capture", make_event(configurable_filters={stage: [name]}))
    assert response.status_code == 200, response.content
    assert stored(EventInstance.objects.get())["key\ufffd"] == ["value\ufffd"]
    assert reader.get("/detail", {"event_id": response.json()["event_instance_id"]}).status_code == 200


@pytest.mark.parametrize("char", UNSTORABLE.values(), ids=UNSTORABLE)
def test_a_groupings_key_postgresql_cant_store_is_counted_under_its_replacement(client, own_registrations, char):
    name = f"test_counts_{ord(char)}"
    register_grouping(name)(lambda event: {f"k{char}": 1, "k\ufffd": 2})
    for _ in range(2):
        assert post_json(client, "/capture", make_event(configurable_groupings=[name])).status_code == 200
    assert OccurrenceBucket.objects.get().counters == {name: {"k\ufffd": 6}}


def test_a_filter_whose_output_is_not_json_is_a_400_and_nothing_is_stored(client, own_registrations):
    register_filter("test_adds_a_set")(lambda data: {**data, "tags": {"a", "b"}})
    response = post_json(client, "/capture", make_event(configurable_filters={"instance": ["test_adds_a_set"]}))
    assert response.status_code == 400
    assert response.json() == {"configurable_filters": ["The filters produced data that is not JSON: set is not JSON"]}
    assert not EventBase.objects.exists()


def test_huge_integers_and_deep_but_legal_nesting_are_stored(client):
    nested = current = {}
    for _ in range(200):
        current["n"] = {}
        current = current["n"]
    event = make_event(extra_args={"big": 10**300, "nested": nested})
    assert post_json(client, "/capture", event).status_code == 200
    assert EventInstance.objects.get().raw_details["big"] == 10**300


class TestIngestKeys:
    @pytest.fixture(autouse=True)
    def keys(self, settings):
        settings.EVENTSUM_INGEST_KEYS = ["key-one", "key-two"]

    def test_it_answers_401_without_a_key(self, client):
        response = post_json(client, "/capture", make_event())
        assert response.status_code == 401
        assert "X-Eventsum-Key" in response.json()["detail"]

    def test_it_answers_401_with_a_wrong_key(self, client):
        assert post_json(client, "/capture", make_event(), HTTP_X_EVENTSUM_KEY="key-three").status_code == 401

    def test_it_stores_with_any_valid_key(self, client):
        assert post_json(client, "/capture", make_event(), HTTP_X_EVENTSUM_KEY="key-two").status_code == 200


class TestTimestamps:
    def test_it_accepts_iso_8601_with_an_offset(self, capture):
        capture(make_event(timestamp="2021-03-04T10:00:30+02:00"))
        assert OccurrenceBucket.objects.get().last_seen == datetime(2021, 3, 4, 8, 0, 30, tzinfo=UTC)

    def test_it_accepts_unix_epoch_seconds(self, capture):
        capture(make_event(timestamp=1600000000))
        capture(make_event(timestamp="1600000001.5"))
        bucket = OccurrenceBucket.objects.get()
        assert bucket.count == 2
        assert bucket.last_seen == datetime(2020, 9, 13, 12, 26, 41, 500000, tzinfo=UTC)

    def test_it_clamps_a_timestamp_far_in_the_future_to_receive_time(self, capture):
        future = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
        capture(make_event(timestamp=future))
        assert OccurrenceBucket.objects.get().last_seen <= datetime.now(UTC)

    def test_it_defaults_to_receive_time(self, capture):
        event = make_event()
        del event["timestamp"]
        before = datetime.now(UTC)
        capture(event)
        assert before <= OccurrenceBucket.objects.get().last_seen <= datetime.now(UTC)

    @pytest.mark.parametrize("interval", [1, 7, 1440])
    def test_the_earliest_time_accepted_has_a_bucket_whatever_the_interval(self, capture, settings, interval):
        settings.EVENTSUM_TIME_INTERVAL = interval
        capture(make_event(timestamp="0001-01-02T00:00:00Z"))  # the latest is clamped to receive time
        start = OccurrenceBucket.objects.get().bucket_start
        assert start <= datetime(1, 1, 2, tzinfo=UTC) < start + timedelta(minutes=interval)

    def test_buckets_follow_the_configured_interval(self, capture, settings):
        settings.EVENTSUM_TIME_INTERVAL = 5
        capture(make_event(timestamp="2020-01-01 00:07:59"))
        capture(make_event(timestamp="2020-01-01 00:05:00"))
        capture(make_event(timestamp="2020-01-01 00:10:00"))
        starts = list(OccurrenceBucket.objects.order_by("bucket_start").values_list("bucket_start", "count"))
        assert starts == [
            (datetime(2020, 1, 1, 0, 5, tzinfo=UTC), 2),
            (datetime(2020, 1, 1, 0, 10, tzinfo=UTC), 1),
        ]


def test_count_by_message_counts_per_message_across_requests_and_arrays(client, capture):
    def event(message):
        return make_event(message=message, configurable_groupings=["count_by_message"], timestamp="2020-01-01 00:00:01")

    capture(event("a"))
    capture([event("a"), event("b"), event("a")])
    assert OccurrenceBucket.objects.get().counters == {"count_by_message": {"a": 3, "b": 1}}


def test_instances_and_bases_keep_running_totals_of_their_buckets(capture):
    counted = {"configurable_groupings": ["count_by_message"]}
    capture(make_event(message="a", timestamp="2020-01-01 00:00:01", **counted))  # the one-row statement
    capture(  # the batch statement: two instances, one of them over two buckets
        [make_event(message=m, timestamp=f"2020-01-01 00:0{i % 2}:30", **counted) for i, m in enumerate("abab")]
        + [make_event(lineno=99, timestamp="2020-01-01 00:00:30")]
    )
    assert assert_totals_match_buckets() == 2
    first, second = EventInstance.objects.order_by("id")
    assert (first.total_count, first.has_counters) == (5, True)
    assert (second.total_count, second.has_counters) == (1, False)
    assert EventBase.objects.get().total_count == 6


def test_the_orm_save_path_derives_the_same_hashes_as_the_capture_path(capture):
    result = capture(EXAMPLE_EVENT)
    captured = EventInstance.objects.get(pk=result["event_instance_id"])
    base = captured.event_base

    copy = EventInstance(
        event_base=base,
        raw_data=EXAMPLE_EVENT["event_data"],
        raw_details={},
        filters=captured.filters,
        first_seen=captured.first_seen,
        last_seen=captured.last_seen,
    )
    # A different base row so the unique constraint does not stop the save; only derived fields matter.
    other = EventBase(
        service=base.service,
        environment=base.environment,
        event_type="other",
        event_name=base.event_name,
        processed_data=base.processed_data,
        first_seen=base.first_seen,
        last_seen=base.last_seen,
    )
    other.save()
    copy.event_base = other
    copy.save()

    assert copy.generic_data_hash == captured.generic_data_hash
    assert copy.generic_data == captured.generic_data
    assert other.processed_data_hash == base.processed_data_hash
    assert other.event_group_id == EventGroup.objects.get(name="default").id == 0


@pytest.mark.parametrize("number", [2**62, 2**64 + 1, -(2**70), 123456789012345678, 0.1, 1e-7, -0.0])
def test_numbers_are_stored_exactly_whichever_parser_reads_them(client, number):
    response = post_json(client, "/capture", make_event(extra_args={"n": number}))
    assert response.status_code == 200
    stored = EventInstance.objects.get().raw_details["n"]
    assert stored == number and type(stored) is type(number)


def test_the_per_process_memos_hold_nothing_the_garbage_collector_must_walk(client):
    # Full collections walk every tracked object; memo entries of parsed traces made each one ~50 ms.
    import gc

    from events.services import _static_search_memo
    from grouping.pipeline import _processed_memo

    _processed_memo._results.clear()
    _static_search_memo._results.clear()
    for index in range(3):
        assert post_json(client, "/capture", make_event(event_name=f"Memo{index}")).status_code == 200
    gc.collect()  # untracks tuples that hold only strings: the inner ones on the first pass,
    gc.collect()  # the entries holding them on the next (the order the collector meets them in)
    # One generic data (the same event_data) and three bases (three names).
    assert (len(_processed_memo._results), len(_static_search_memo._results)) == (1, 3)
    entries = [*_processed_memo._results.values(), *_static_search_memo._results.values()]
    assert not [entry for entry in entries if gc.is_tracked(entry)]


def test_the_per_process_memos_keep_within_their_memory_budgets(reader, monkeypatch):
    # Traces of hundreds of kilobytes (a RecursionError's thousand frames) took ~0.45 MB of a worker for each
    # base, kept until 1,000 to 2,000 of them: 300 such bases put a worker at 312 MB.
    from events.selectors import _processed_texts
    from events.services import _static_search_memo
    from grouping.pipeline import _processed_memo

    memos = (_processed_memo, _static_search_memo, _processed_texts)
    for memo in memos:
        memo.clear()
        monkeypatch.setattr(memo, "budget", 2 * 2**20)
    frames = [{"filename": f"app/m{k}.py", "function": f"f{k}", "context_line": "x" * 60} for k in range(800)]
    events = []
    for index in range(40):  # ~100 KB of processed data each: 4 MB in all, twice the budgets
        event = make_event(event_name=f"Deep{index}")
        event["event_data"]["raw_data"]["frames"] = [{**frame, "lineno": index} for frame in frames]
        events.append(event)
    capture_events(events)
    assert reader.get("/search", {"service": "WISH FE", "start_time": "2000-01-01", "limit": 40}).status_code == 200
    kept = [
        sum(len(text) for text, _ in _processed_memo._results.values()),
        sum(len(text) for text, _ in _static_search_memo._results.values()),
        sum(len(text) for _, text in _processed_texts._results.values()),
    ]
    assert all(0 < size <= 2 * 2**20 for size in kept), kept


class TestUnchangingDataIsSentOnce:
    """A base's processed data and an instance's generic data never change, so after a row's first
    occurrence they are not sent again but read from the row; a row deleted since gets them again."""

    @staticmethod
    def capture_and_count_bytes_sent(capture, event) -> tuple[dict, int]:
        sent = []

        def record(execute, sql, params, many, context):
            if sql.startswith("EXECUTE eventsum_upsert"):
                sent.extend(params)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):
            answer = capture(event)
        return answer, sum(len(str(value)) for value in sent if value is not None)

    def test_a_repeated_occurrence_leaves_its_processed_and_generic_data_out(self, capture):
        event = make_event()
        first, first_bytes = self.capture_and_count_bytes_sent(capture, event)
        second, second_bytes = self.capture_and_count_bytes_sent(capture, event)

        assert second == first
        base, instance = EventBase.objects.get(), EventInstance.objects.get()
        compact = {"separators": (",", ":"), "ensure_ascii": False}
        unchanging = len(json.dumps(base.processed_data, **compact)) + len(json.dumps(instance.generic_data, **compact))
        assert first_bytes - second_bytes >= unchanging - 2 * len("null")  # each text is sent as null instead
        assert OccurrenceBucket.objects.get().count == 2

    def test_a_base_deleted_since_is_stored_again_in_full(self, capture):
        event = make_event()
        first = capture(event)
        processed = EventBase.objects.get().processed_data
        generic = EventInstance.objects.get().generic_data
        EventBase.objects.all().delete()  # as retention or a hand in SQL would, behind this process's back

        second = capture(event)

        assert second["event_base_id"] != first["event_base_id"]
        assert EventBase.objects.get(pk=second["event_base_id"]).processed_data == processed
        assert EventInstance.objects.get(pk=second["event_instance_id"]).generic_data == generic
        assert OccurrenceBucket.objects.get().count == 1

    def test_in_an_array_only_the_deleted_instance_is_stored_again_and_nothing_is_counted_twice(self, capture):
        kept, deleted = make_event(lineno=1), make_event(lineno=2)  # one base, two instances
        first = capture([kept, deleted])["results"]
        generic = EventInstance.objects.get(pk=first[1]["event_instance_id"]).generic_data
        EventInstance.objects.filter(pk=first[1]["event_instance_id"]).delete()

        second = capture([kept, deleted])["results"]

        assert second[0] == first[0]
        assert second[1]["event_base_id"] == first[1]["event_base_id"]
        assert EventInstance.objects.get(pk=second[1]["event_instance_id"]).generic_data == generic
        counts = dict(OccurrenceBucket.objects.values_list("event_instance_id", "count"))
        assert counts == {first[0]["event_instance_id"]: 2, second[1]["event_instance_id"]: 1}


def test_recount_totals_recomputes_the_running_totals_from_the_buckets(capture):
    from io import StringIO

    from django.core.management import call_command
    from django.db import connection

    counted = {"configurable_groupings": ["count_by_message"]}
    capture([make_event(message=m, timestamp=f"2020-01-01 00:0{i}:00", **counted) for i, m in enumerate("aab")])
    capture([make_event(event_name="Other", lineno=n) for n in (1, 2, 2)])
    with connection.cursor() as cursor:  # as rows stored before the columns existed, or totals gone wrong
        cursor.execute("UPDATE events_eventinstance SET total_count = 0, has_counters = false")
        cursor.execute("UPDATE events_eventbase SET total_count = 0")
    out = StringIO()
    call_command("recount_totals", stdout=out)
    assert "Recounted the running totals" in out.getvalue()
    assert assert_totals_match_buckets() == 3
    assert EventInstance.objects.get(event_base__event_name="ZeroDivisionError").has_counters
    assert EventBase.objects.get(event_name="Other").total_count == 3


@pytest.mark.parametrize("size", ["0", str(2**70)])
def test_recount_totals_refuses_a_batch_size_out_of_range(capture, capsys, size):
    from django.core.management import call_command

    with pytest.raises(SystemExit) as exit:
        call_command("recount_totals", "--batch-size", size)
    assert exit.value.code == 2
    assert "--batch-size must be from 1 to 1000000" in capsys.readouterr().err


def test_the_raw_data_is_compressed_with_lz4_where_the_server_has_it(capture):
    # tests/test_postgres_versions.py runs this on a server built with lz4 too.
    big = {f"var{n}": f"<object at 0x7f00{n:08x}> " * 20 for n in range(40)}  # ~30 KB: compressed
    capture(make_event(vars=big))
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        has_lz4 = cursor.fetchone()[0]
        cursor.execute(
            "SELECT pg_column_compression(raw_data), pg_column_compression(generic_data) FROM events_eventinstance"
        )
        method = "lz4" if has_lz4 else "pglz"
        assert cursor.fetchall() == [(method, method)]
