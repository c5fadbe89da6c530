from datetime import UTC, datetime

import pytest

from events.models import EventBase, EventInstance
from tests.conftest import make_event

pytestmark = pytest.mark.django_db


def test_detail_returns_the_instance_its_latest_raw_data_and_its_base(reader, capture):
    grouped = {"configurable_groupings": ["count_by_message"]}
    capture(make_event(message="first", extra_args={"user": 1}, timestamp="2024-05-01 12:00:00", **grouped))
    capture(make_event(message="second", extra_args={"user": 2}, timestamp="2024-05-01 12:30:00", **grouped))
    result = capture(make_event(message="first", extra_args={"user": 3}, timestamp="2024-05-01 12:10:00", **grouped))

    response = reader.get("/detail", {"event_instance_id": result["event_instance_id"]})

    assert response.status_code == 200
    detail = response.json()
    instance = EventInstance.objects.get()
    base = EventBase.objects.get()
    assert detail == {
        "event_instance_id": instance.id,
        "event_base_id": base.id,
        "event_group_id": 0,
        "event_environment_id": base.environment_id,
        "service_id": base.service_id,
        "event_type": "python",
        "event_name": "ZeroDivisionError",
        "message": "second",
        "raw_data": make_event(message="second")["event_data"],
        "raw_details": {"user": 2},
        "generic_data": instance.generic_data,
        "processed_data": base.processed_data,
        "processed_details": {"user": 2},
        "first_seen": "2024-05-01 12:00:00",
        "last_seen": "2024-05-01 12:30:00",
        "total_count": 3,
        "counters": {"count_by_message": {"first": 2, "second": 1}},
    }
    assert "message" not in detail["generic_data"]


def test_the_raw_data_and_details_come_back_as_sent_key_order_included(reader, capture):
    # Stored as json, the text as sent (events.models.JSONTextField); jsonb would sort the keys (shortest first).
    event = make_event(extra_args={"zeta": 1, "alpha": {"yy": 2, "b": 3}})
    event["event_data"] = {"raw_data": {"zz_frames_last": [], "frames": []}, "message": "order"}
    instance_id = capture(event)["event_instance_id"]

    body = reader.get("/detail", {"event_id": instance_id}).content.decode()

    assert '"raw_data":{"raw_data":{"zz_frames_last":[],"frames":[]},"message":"order"}' in body
    assert '"raw_details":{"zeta":1,"alpha":{"yy":2,"b":3}}' in body
    assert EventInstance.objects.get().raw_details == {"zeta": 1, "alpha": {"yy": 2, "b": 3}}  # read by the ORM


def test_event_id_is_an_alias_and_the_slash_is_optional(reader, capture):
    instance_id = capture(make_event())["event_instance_id"]
    assert reader.get(f"/detail/?event_id={instance_id}").json()["event_instance_id"] == instance_id


def test_an_unknown_instance_is_a_404_naming_it(reader):
    response = reader.get("/detail", {"event_id": 987654})
    assert response.status_code == 404
    assert "987654" in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "event_instance_id"),
        ({"event_id": "abc"}, "event_id"),
        ({"event_instance_id": "-3"}, "event_instance_id"),
        ({"event_id": str(2**70)}, "event_id"),
    ],
)
def test_a_missing_or_malformed_id_is_a_400_naming_it(reader, params, field):
    response = reader.get("/detail", params)
    assert response.status_code == 400
    assert field in response.json()


def test_a_long_id_is_named_by_its_start_and_its_length(reader):
    response = reader.get("/detail", {"event_id": "7" * 5_000})
    assert response.json() == {"event_id": [f"{'7' * 100!r}… (5,000 characters) is not a valid id."]}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("event_id={a}&event_id={b}", "Given more than once with different values ('{a}', '{b}'): send one."),
        (
            "event_instance_id={a}&event_id={b}",
            "event_instance_id '{a}' and event_id '{b}' disagree: send one of them.",
        ),
    ],
)
def test_two_different_ids_are_a_400_naming_both(reader, capture, query, message):
    a, b = (capture(make_event(lineno=line))["event_instance_id"] for line in (1, 2))
    response = reader.get("/detail?" + query.format(a=a, b=b))
    assert response.status_code == 400
    assert response.json() == {"event_id": [message.format(a=a, b=b)]}
    # the same id under both names, or twice, is one id
    assert reader.get(f"/detail?event_instance_id={a}&event_id={a}&event_id={a}").json()["event_instance_id"] == a


def test_counters_sum_only_the_buckets_that_have_them(reader, capture):
    grouped = {"configurable_groupings": ["count_by_message"]}
    capture(make_event(message="plain", timestamp="2024-05-01 11:00:00"))
    capture(make_event(message="a", timestamp="2024-05-01 12:00:00", **grouped))
    instance_id = capture(make_event(message="a", timestamp="2024-05-01 13:00:00", **grouped))["event_instance_id"]
    ungrouped_id = capture(make_event(lineno=7, message="plain"))["event_instance_id"]

    detail = reader.get("/detail", {"event_id": instance_id}).json()
    assert (detail["total_count"], detail["counters"]) == (3, {"count_by_message": {"a": 2}})
    ungrouped = reader.get("/detail", {"event_id": ungrouped_id}).json()
    assert (ungrouped["total_count"], ungrouped["counters"]) == (1, {})


@pytest.mark.parametrize("time_format", ["%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M:%S (%%Y)", "%G-W%V-%u %H:%M:%S"])
def test_times_before_the_year_1000_come_back_in_a_form_the_api_reads(reader, capture, settings, time_format):
    settings.EVENTSUM_TIME_FORMAT = time_format
    moment = datetime(999, 3, 4, 5, 6, tzinfo=UTC)  # a bucket's start, which a window starts at
    instance_id = capture(make_event(timestamp=moment.isoformat()))["event_instance_id"]

    first_seen = reader.get("/detail", {"event_id": instance_id}).json()["first_seen"]

    assert "0999" in first_seen
    found = reader.get("/search", {"service": "WISH FE", "start_time": first_seen, "end_time": "2000-01-01T00:00:00Z"})
    assert found.status_code == 200, found.json()
    assert [event["first_seen"] for event in found.json()["events"]] == [first_seen]
