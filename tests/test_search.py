import json
from datetime import UTC, datetime, timedelta

import pytest

from events.models import EventBase, EventInstance, Service
from tests.conftest import make_event

pytestmark = pytest.mark.django_db

HOUR = {"start_time": "2024-05-01 12:00:00", "end_time": "2024-05-01 13:00:00"}


def ms(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)


def search(client, expected_status=200, **params):
    response = client.get("/search", params)
    assert response.status_code == expected_status, response.content
    return response.json()


@pytest.fixture
def service_id(capture):
    """Service `WISH FE` with a ZeroDivisionError base: 2 at 12:00, 1 at 12:01, 1 at 12:05 (one instance each line)."""
    for timestamp, line in [("12:00:10", 17), ("12:00:50", 17), ("12:01:30", 18), ("12:05:00", 17)]:
        capture(make_event(timestamp=f"2024-05-01 {timestamp}", lineno=line))
    return Service.objects.get().id


def test_it_counts_occurrences_in_the_window_with_zero_filled_datapoints(reader, service_id):
    (event,) = search(reader, service_id=service_id, **HOUR)["events"]

    base = EventBase.objects.get()
    assert event["id"] == base.id
    assert event["total_count"] == 4
    assert event["hash"] == base.processed_data_hash
    assert event["processed_data"] == base.processed_data
    assert event["instance_ids"] == sorted(EventInstance.objects.values_list("id", flat=True))
    assert (event["event_type"], event["event_name"]) == ("python", "ZeroDivisionError")
    assert (event["service_id"], event["event_environment_id"], event["event_group_id"]) == (
        service_id,
        base.environment_id,
        0,
    )
    assert (event["first_seen"], event["last_seen"]) == ("2024-05-01 12:00:10", "2024-05-01 12:05:00")
    assert event["message"] == "integer division or modulo by zero"
    points = event["datapoints"]
    assert len(points) == 60
    assert points[0] == {"count": 2, "start": ms("2024-05-01 12:00:00")}
    assert [p["count"] for p in points[:6]] == [2, 1, 0, 0, 0, 1]
    assert [p["start"] for p in points] == [ms("2024-05-01 12:00:00") + 60_000 * i for i in range(60)]


def test_a_long_window_has_at_most_200_points_whose_step_is_a_multiple_of_the_bucket(reader, service_id):
    (event,) = search(reader, service_id=service_id, start_time="2024-05-01 00:00:00", end_time="2024-05-02 00:00:00")[
        "events"
    ]
    points = event["datapoints"]
    steps = {b["start"] - a["start"] for a, b in zip(points, points[1:], strict=False)}
    assert len(points) <= 200
    assert steps == {8 * 60_000}  # 1440 one-minute buckets in 180 points
    assert sum(p["count"] for p in points) == event["total_count"] == 4
    assert points[90] == {"count": 4, "start": ms("2024-05-01 12:00:00")}  # 12:00 to 12:08 holds all four
    assert points[89]["count"] == points[91]["count"] == 0


@pytest.mark.parametrize("sort", ["count", "recent", "increased"])
def test_the_widest_window_accepted_answers(reader, service_id, sort):
    widest = {"start_time": "0001-01-02 00:00:00", "end_time": "9999-12-30 00:00:00"}
    events = search(reader, service_id=service_id, sort=sort, **widest)["events"]
    if sort == "increased":  # all four occurrences fall in the window's earlier half
        assert events == []
    else:
        (event,) = events
        assert len(event["datapoints"]) <= 200
        assert sum(p["count"] for p in event["datapoints"]) == event["total_count"] == 4


def test_bases_without_occurrences_in_the_window_are_left_out(reader, service_id):
    assert search(reader, service_id=service_id, start_time="2024-05-01 12:06:00", end_time="2024-05-01 13:00:00") == {
        "events": []
    }
    (event,) = search(reader, service_id=service_id, start_time="2024-05-01 12:01:00", end_time="2024-05-01 12:02:00")[
        "events"
    ]
    assert event["total_count"] == 1
    assert len(event["instance_ids"]) == 1


def test_only_the_services_own_occurrences_from_start_inclusive_to_end_exclusive(reader, capture):
    # Services on either side of the searched one's id, all with occurrences at the window's edges.
    for service in ("before", "searched", "after"):
        for timestamp in ("11:59:59", "12:00:00", "12:30:00", "12:59:59", "13:00:00"):
            capture(make_event(service=service, timestamp=f"2024-05-01 {timestamp}"))
    searched = Service.objects.get(normalized_name="searched")
    assert sorted(Service.objects.values_list("id", flat=True)) == [searched.id - 1, searched.id, searched.id + 1]

    (event,) = search(reader, service_id=searched.id, **HOUR)["events"]

    assert event["service_id"] == searched.id
    assert event["total_count"] == 3  # 12:00:00, 12:30:00 and 12:59:59: not 11:59:59, not 13:00:00
    assert sum(point["count"] for point in event["datapoints"]) == 3
    # The other orders rank from the same window (increased: 1 in the first half, 2 in the second).
    for sort in ("recent", "increased"):
        (ranked,) = search(reader, service_id=searched.id, sort=sort, **HOUR)["events"]
        assert (ranked["service_id"], ranked["total_count"]) == (searched.id, 3)


def test_the_window_defaults_to_the_last_hour(reader, capture):
    now = datetime.now(UTC)
    capture(make_event(timestamp=(now - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")))
    capture(make_event(timestamp=(now - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S")))
    (event,) = search(reader, service_id=Service.objects.get().id)["events"]
    assert event["total_count"] == 1


def test_the_window_accepts_iso_8601_and_epoch_seconds(reader, service_id):
    start = int(datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp())
    (event,) = search(reader, service_id=service_id, start_time=str(start), end_time="2024-05-01T15:00:00+02:00")[
        "events"
    ]
    assert event["total_count"] == 4
    assert len(event["datapoints"]) == 60


@pytest.fixture
def three_bases(capture):
    """Three bases in service `shop`: A 5 early, B 4 late, C 1 early and 2 late (last seen latest)."""
    plan = {"A": ["12:01"] * 5, "B": ["12:40"] * 4, "C": ["12:10", "12:31", "12:50"]}
    ids = {}
    for name, minutes in plan.items():
        for minute in minutes:
            ids[name] = capture(make_event(service="shop", event_name=name, timestamp=f"2024-05-01 {minute}:00"))[
                "event_base_id"
            ]
    return ids


def names(answer) -> list[str]:
    return [event["event_name"] for event in answer["events"]]


def test_the_default_order_is_by_count_descending(reader, three_bases):
    assert names(search(reader, service="shop", **HOUR)) == ["A", "B", "C"]


def test_sort_recent_orders_by_last_seen(reader, three_bases):
    assert names(search(reader, service="shop", sort="recent", **HOUR)) == ["C", "B", "A"]


def test_sort_increased_keeps_only_growing_bases_by_growth(reader, three_bases):
    # halves: [12:00, 12:30) and [12:30, 13:00). A: 5 -> 0, B: 0 -> 4, C: 1 -> 2
    assert names(search(reader, service="shop", sort="increased", **HOUR)) == ["B", "C"]


def test_limit_caps_the_results(reader, three_bases):
    assert names(search(reader, service="shop", limit=2, **HOUR)) == ["A", "B"]


def test_service_by_name_accepts_any_spelling(reader, three_bases):
    assert len(search(reader, service="SHOP", **HOUR)["events"]) == 3


def test_filters_by_hash_group_and_environment(reader, triager, capture, three_bases):
    capture(make_event(service="shop", event_name="A", environment="stage", timestamp="2024-05-01 12:02:00"))
    base_a = EventBase.objects.get(id=three_bases["A"])
    shop = base_a.service_id

    by_hash = search(reader, service_id=shop, hash=base_a.processed_data_hash, **HOUR)
    assert len(by_hash["events"]) == 4  # the same processed data in every base of the fixture
    assert search(reader, service_id=shop, hash=base_a.processed_data_hash.upper(), **HOUR) == by_hash

    by_env = search(reader, service_id=shop, environment="Stage", **HOUR)
    assert names(by_env) == ["A"]
    assert search(reader, service_id=shop, env_id=base_a.environment_id, **HOUR)["events"][0]["total_count"] == 5

    group = triager.post("/groups", {"name": "later"}, format="json").json()
    triager.post("/assign_group", {"event_id": three_bases["B"], "group_id": group["id"]}, format="json")
    assert names(search(reader, service_id=shop, group_id=group["id"], **HOUR)) == ["B"]
    assert "B" not in names(search(reader, service_id=shop, group_id=0, **HOUR))


class TestKeywords:
    @pytest.fixture
    def bases(self, capture):
        capture(make_event(service="kw", timestamp="2024-05-01 12:00:00"))
        capture(
            make_event(
                service="kw",
                event_type="go",
                event_name="NilPointer",
                message="nil map write in handler",
                event_data={
                    "message": "nil map write in handler",
                    "raw_data": {"frames": [{"function": "ServeHTTP", "module": "net/http", "filename": "server.go"}]},
                },
                timestamp="2024-05-01 12:00:00",
            )
        )
        capture(make_event(service="kw", event_name="KeyError", message="'user_id'", timestamp="2024-05-01 12:00:00"))

    @pytest.mark.parametrize(
        ("keywords", "expected"),
        [
            ("ZeroDivision", ["ZeroDivisionError"]),  # name, a part of it
            ("division", ["ZeroDivisionError"]),  # message (and name)
            ("GO", ["NilPointer"]),  # type, case-insensitive
            ("servehttp", ["NilPointer"]),  # frame function
            ("net/http", ["NilPointer"]),  # frame module
            ("server.go", ["NilPointer"]),  # frame filename
            ("func4", ["KeyError", "ZeroDivisionError"]),  # frame function of the example
            ("map handler", ["NilPointer"]),  # every word required, in any order
            ("map zero", []),
            ("user_id", ["KeyError"]),
            ("py", ["KeyError", "ZeroDivisionError"]),  # shorter than a trigram: still matched
            ("100%", []),
        ],
    )
    def test_keywords_match_every_word_in_name_type_messages_and_frames(self, reader, bases, keywords, expected):
        answer = search(reader, service="kw", keywords=keywords, **HOUR)
        assert sorted(names(answer)) == expected

    def test_an_older_message_of_a_base_is_still_searchable(self, reader, capture, bases):
        capture(make_event(service="kw", event_name="KeyError", message="'order_id'", timestamp="2024-05-01 12:01:00"))
        assert names(search(reader, service="kw", keywords="user_id", **HOUR)) == ["KeyError"]
        assert names(search(reader, service="kw", keywords="order_id", **HOUR)) == ["KeyError"]

    def test_a_long_message_is_searched_in_its_first_8000_characters_and_the_texts_stop_growing(
        self, reader, capture, bases
    ):
        from events.models import EventBaseSearch

        long = "start " + "日本語のテキスト" * 5000 + " finish"  # 40,000 characters, ~8 distinct trigrams each
        capture(make_event(service="kw", event_name="Long", message=long, timestamp="2024-05-01 12:00:00"))
        capture(make_event(service="kw", event_name="Long", message="later", timestamp="2024-05-01 12:01:00"))
        assert names(search(reader, service="kw", keywords="start", **HOUR)) == ["Long"]
        assert names(search(reader, service="kw", keywords="finish", **HOUR)) == []
        assert names(search(reader, service="kw", keywords="later", **HOUR)) == []  # past the cap already
        row = EventBaseSearch.objects.get(event_base__event_name="Long")
        assert len(row.messages_text) == 8000

    def test_a_message_is_lower_cased_as_the_keywords_are(self, reader, capture, bases):
        # By Python, not by the database, whose lower() follows its locale: Greek's final sigma, or under
        # the C locale no letter outside ASCII at all.
        capture(make_event(service="kw", event_name="Greek", message="ΟΔΟΣ ÜBER", timestamp="2024-05-01 12:00:00"))
        for keywords in ("οδος", "ΟΔΟΣ", "über", "ÜBER"):
            assert names(search(reader, service="kw", keywords=keywords, **HOUR)) == ["Greek"], keywords

    def test_messages_stored_upper_case_are_lower_cased_by_the_migration(self, reader, bases):
        from importlib import import_module

        from django.apps import apps

        from events.models import EventBaseSearch

        # As PostgreSQL's lower() under the C locale left them.
        EventBaseSearch.objects.filter(event_base__event_name="KeyError").update(messages_text="'user_id'\nÜBER ΟΔΟΣ")
        assert names(search(reader, service="kw", keywords="über", **HOUR)) == []
        import_module("events.migrations.0017_messages_lowered_by_python").lower_messages(apps, None)
        assert EventBaseSearch.objects.get(event_base__event_name="KeyError").messages_text == "'user_id'\nüber οδος"
        assert names(search(reader, service="kw", keywords="über", **HOUR)) == ["KeyError"]


class TestKeywordsWithSortsAndLimit:
    """Keywords and `sort=recent` are decided on the bases after the window's ranking: the limit counts only
    matching bases, and `recent` is the base's own last_seen, over all time."""

    @pytest.fixture
    def bases(self, capture):
        plan = {  # name: minutes of 12:xx in the window
            "PaymentError": ["05"] * 6 + ["20"],  # the most, not a checkout
            "CheckoutError": ["02"] * 5 + ["45"],  # checkout: 5 early, 1 late
            "CheckoutTimeout": ["10", "40", "41", "42"],  # checkout: 1 early, 3 late
            "CheckoutLag": ["35", "50"],  # checkout: 0 early, 2 late, seen last in the window
        }
        for name, minutes in plan.items():
            capture([make_event(service="mix", event_name=name, timestamp=f"2024-05-01 12:{m}:00") for m in minutes])
        # seen again after the window: the latest last_seen of all, though early inside the window
        capture(make_event(service="mix", event_name="CheckoutError", timestamp="2024-05-01 18:00:00"))

    def test_the_limit_counts_only_matching_bases(self, reader, bases):
        assert names(search(reader, service="mix", keywords="checkout", limit=2, **HOUR)) == [
            "CheckoutError",
            "CheckoutTimeout",
        ]

    def test_recent_orders_matching_bases_by_their_own_last_seen(self, reader, bases):
        answer = search(reader, service="mix", keywords="checkout", sort="recent", limit=2, **HOUR)
        assert names(answer) == ["CheckoutError", "CheckoutLag"]
        assert answer["events"][0]["last_seen"] == "2024-05-01 18:00:00"
        assert answer["events"][0]["total_count"] == 6  # counted inside the window only

    def test_recent_without_keywords(self, reader, bases):
        assert names(search(reader, service="mix", sort="recent", **HOUR)) == [
            "CheckoutError",
            "CheckoutLag",
            "CheckoutTimeout",
            "PaymentError",
        ]

    def test_increased_keeps_only_growing_matching_bases(self, reader, bases):
        # halves [12:00, 12:30) and [12:30, 13:00): Timeout +2, Lag +2 (the larger id first), Error -4
        answer = search(reader, service="mix", keywords="checkout", sort="increased", **HOUR)
        assert names(answer) == ["CheckoutLag", "CheckoutTimeout"]
        assert [event["total_count"] for event in answer["events"]] == [2, 4]

    def test_keywords_that_match_nothing_in_the_window(self, reader, bases):
        assert search(reader, service="mix", keywords="checkout refund", sort="recent", **HOUR) == {"events": []}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "service_id"),
        ({"service_id": "abc"}, "service_id"),
        ({"service_id": 1, "start_time": "soon"}, "start_time"),
        ({"service_id": 1, "end_time": "2024-13-45 00:00:00"}, "end_time"),
        ({"service_id": 1, "start_time": "2024-05-01 13:00:00", "end_time": "2024-05-01 12:00:00"}, "start_time"),
        ({"service_id": 1, "start_time": "2024-05-01 12:00:00", "end_time": "2024-05-01 12:00:00"}, "start_time"),
        ({"service_id": 1, "limit": 1001}, "limit"),
        ({"service_id": 1, "limit": 0}, "limit"),
        ({"service_id": 1, "limit": "ten"}, "limit"),
        ({"service_id": 1, "limit": "2.5"}, "limit"),
        ({"service_id": "1.5"}, "service_id"),
        ({"service_id": 1, "env_id": "2.5"}, "env_id"),
        ({"service_id": 1, "group_id": "0.5"}, "group_id"),
        ({"service_id": 1, "sort": "oldest"}, "sort"),
        ({"service_id": 1, "group_id": "x"}, "group_id"),
        ({"service_id": 1, "env_id": "-"}, "env_id"),
        ({"service_id": 2**63}, "service_id"),
        ({"service_id": 1, "env_id": 2**70}, "env_id"),
        ({"service_id": 1, "group_id": 2**63}, "group_id"),
        ({"service_id": 1, "end_time": "0001-01-01 00:30:00"}, "end_time"),
        ({"service_id": 1, "start_time": "0001-01-01T00:00:00+14:00"}, "start_time"),
        ({"service_id": 1, "end_time": "9999-12-31T23:30:00-12:00"}, "end_time"),
        ({"service_id": 1, "hash": "zz"}, "hash"),
        ({"service_id": 1, "hash": "a" * 63}, "hash"),
        ({"service_id": 1, "hash": "a" * 63 + "g"}, "hash"),
        ({"service_id": 1, "hash": "a" * 64 + "\n"}, "hash"),
    ],
)
def test_a_malformed_parameter_is_a_400_naming_it(reader, params, field):
    answer = search(reader, 400, **params)
    assert field in answer, answer


def test_a_parameter_given_twice_with_different_values_is_a_400_naming_it(reader, service_id):
    answer = search(reader, 400, service_id=[service_id, service_id + 1], limit=[5, 5])
    assert answer == {
        "service_id": [f"Given more than once with different values ('{service_id}', '{service_id + 1}'): send one."]
    }
    # the same value twice is one value
    assert search(reader, service_id=[service_id, service_id], **HOUR)["events"]


def test_an_id_and_a_name_that_name_different_rows_are_a_400_naming_the_name(reader, service_id):
    env_id = EventBase.objects.get().environment_id
    assert search(reader, 400, service_id=service_id, service="checkout", **HOUR) == {
        "service": [f"service 'checkout' is not service_id {service_id}: send one of them."]
    }
    assert search(reader, 400, service_id=service_id, env_id=env_id, environment="stage", **HOUR) == {
        "environment": [f"environment 'stage' is not env_id {env_id}: send one of them."]
    }
    # Any spelling of the same row agrees.
    answer = search(reader, service_id=service_id, service="wish-fe", env_id=env_id, environment=" Prod", **HOUR)
    assert [event["total_count"] for event in answer["events"]] == [4]


@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_the_users_example_url_verbatim(reader, capture):
    capture(make_event(timestamp="2017-12-13 21:23:10"))
    response = reader.get("/search?service_id=1&start_time=2006-01-02 15:04:05&end_time=2020-01-02 15:04:05")
    assert response.status_code == 200
    (event,) = response.json()["events"]
    assert event["total_count"] == 1
    assert len(event["datapoints"]) <= 200
    detail = reader.get(f"/detail?event_id={event['instance_ids'][0]}")
    assert detail.status_code == 200


def test_the_query_count_does_not_grow_with_the_number_of_results(reader, capture, django_assert_max_num_queries):
    capture([make_event(service="many", event_name=f"E{i}", timestamp="2024-05-01 12:00:00") for i in range(50)])
    service = Service.objects.get(normalized_name="many").id

    with django_assert_max_num_queries(6) as one:
        assert len(search(reader, service_id=service, limit=1, **HOUR)["events"]) == 1
    with django_assert_max_num_queries(6) as fifty:
        assert len(search(reader, service_id=service, limit=50, **HOUR)["events"]) == 50
    assert len(one.captured_queries) == len(fifty.captured_queries)


def test_an_unknown_service_name_finds_nothing(reader, three_bases):
    assert search(reader, service="no such service", **HOUR) == {"events": []}


def test_a_base_whose_processed_data_changed_is_answered_with_the_new_data(reader, service_id):
    # Each process remembers the processed data it answered, by base id and hash; a base saved with other
    # processed data gets another hash, and the next search must not answer the remembered text.
    (before,) = search(reader, service_id=service_id, **HOUR)["events"]
    base = EventBase.objects.get()
    base.processed_data = {"raw_data": {"frames": [{"function": "edited"}]}}
    base.save()
    (after,) = search(reader, service_id=service_id, **HOUR)["events"]
    assert after["processed_data"] == {"raw_data": {"frames": [{"function": "edited"}]}} != before["processed_data"]
    assert after["hash"] == base.processed_data_hash != before["hash"]
    (again,) = search(reader, service_id=service_id, **HOUR)["events"]  # now from the process's memory
    assert again["processed_data"] == after["processed_data"]


@pytest.mark.parametrize(
    ("query", "hint"),
    [
        # A dashboard that reuses the datapoints' milliseconds.
        ("start_time=1714564800000&end_time=1714568400", "milliseconds? send seconds"),
        # An offset sent unescaped: the query string's "+" arrives as a space.
        ("start_time=2024-05-01T12:00:00+02:00&end_time=2024-05-01T13:00:00%2B02:00", "%2B"),
    ],
)
def test_a_time_sent_in_a_common_wrong_way_gets_a_hint(reader, query, hint):
    response = reader.get(f"/search?service_id=1&{query}")
    assert response.status_code == 400
    (message,) = response.json()["start_time"]
    assert hint in message, message
    assert "end_time" not in response.json()


def test_a_time_without_an_offset_gets_no_offset_hint(reader):
    (message,) = search(reader, 400, service_id=1, start_time="2024-05-01 25:00")["start_time"]
    assert "%2B" not in message and "'2024-05-01 25:00' is not a time" in message


@pytest.mark.django_db(transaction=True)  # the process remembers only what committed
class TestRememberedSearchText:
    """A capture whose message this process has already written into the same base's search row skips that
    row; one whose base was deleted and created again elsewhere falls back to writing it."""

    @staticmethod
    def sent_search_texts(send) -> list:
        from django.db import connection

        sent = []

        def record(execute, sql, params, many, context):
            sent.extend(
                row["static_text"]
                for param in params or ()
                if isinstance(param, str) and '"search_id"' in param
                for row in json.loads(param)
            )
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):
            send()
        return sent

    def test_a_known_message_sends_no_search_text_and_a_new_one_does(self, reader, capture):
        event = make_event(service="kw", message="first words", timestamp="2024-05-01 12:00:00")
        assert self.sent_search_texts(lambda: capture(event)) != [None]
        assert self.sent_search_texts(lambda: capture(event)) == [None]
        later = make_event(service="kw", message="second words", timestamp="2024-05-01 12:01:00")
        assert self.sent_search_texts(lambda: capture(later)) != [None]
        for keywords in ("first", "second", "func4"):
            assert names(search(reader, service="kw", keywords=keywords, **HOUR)) == ["ZeroDivisionError"]

    def test_a_base_created_again_under_another_id_gets_the_message_all_the_same(self, reader, capture, monkeypatch):
        from events import services
        from grouping.memo import BoundedMemo

        event = make_event(service="kw", message="remembered words", timestamp="2024-05-01 12:00:00")
        capture(event)
        first_id = EventBase.objects.get().id
        EventBase.objects.all().delete()
        # Another process, which remembers nothing, creates the base again with another message.
        with monkeypatch.context() as other_process:
            other_process.setattr(services, "_stored_rows", BoundedMemo(10))
            other_process.setattr(services, "_written_searches", BoundedMemo(10))
            capture(make_event(service="kw", message="other words", timestamp="2024-05-01 12:00:30"))
        assert EventBase.objects.get().id != first_id

        capture(event)  # this process remembers the message under the old id
        assert names(search(reader, service="kw", keywords="remembered", **HOUR)) == ["ZeroDivisionError"]
        assert names(search(reader, service="kw", keywords="other", **HOUR)) == ["ZeroDivisionError"]
        assert EventBase.objects.get().total_count == 2
