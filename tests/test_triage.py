import re
from datetime import UTC

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events.models import EventBase, EventGroup
from tests.conftest import make_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def base_ids(capture):
    return [capture(make_event(event_name=f"E{i}"))["event_base_id"] for i in range(3)]


@pytest.fixture
def groups(db):
    return [EventGroup.objects.create(name=f"team-{i}").id for i in range(2)]


def group_of(base_id: int) -> int:
    return EventBase.objects.get(id=base_id).event_group_id


class TestAssignGroup:
    def test_it_assigns_one_base(self, triager, base_ids, groups):
        response = triager.post("/assign_group", {"event_id": base_ids[0], "group_id": groups[0]}, format="json")
        assert response.status_code == 200
        assert response.json() == {"updated": 1}
        assert group_of(base_ids[0]) == groups[0]
        assert group_of(base_ids[1]) == 0

    def test_it_assigns_an_array_and_accepts_the_groupd_id_spelling(self, triager, base_ids, groups):
        body = [
            {"event_id": base_ids[0], "groupd_id": groups[0]},
            {"event_id": base_ids[1], "group_id": groups[1]},
            {"event_id": base_ids[2], "group_id": 0},  # already there: not counted as updated
        ]
        response = triager.post("/assign_group/", body, format="json")
        assert response.json() == {"updated": 2}
        assert [group_of(i) for i in base_ids] == [groups[0], groups[1], 0]

    def test_unknown_ids_are_a_400_naming_them_and_nothing_changes(self, triager, base_ids, groups):
        body = [{"event_id": base_ids[0], "group_id": groups[0]}, {"event_id": 999999, "group_id": 424242}]
        response = triager.post("/assign_group", body, format="json")
        assert response.status_code == 400
        assert response.json() == {
            "event_id": ["Unknown event base ids: 999999."],
            "group_id": ["Unknown group ids: 424242."],
        }
        assert group_of(base_ids[0]) == 0

    def test_unknown_ids_by_the_thousand_are_named_fifty_and_counted(self, triager, base_ids, groups):
        unknown = list(range(10**9, 10**9 + 3000))
        response = triager.post(
            "/assign_group", [{"event_id": i, "group_id": groups[0]} for i in unknown], format="json"
        )
        assert response.status_code == 400
        named = ", ".join(map(str, unknown[:50]))
        assert response.json() == {"event_id": [f"Unknown event base ids: {named} and 2950 more."]}
        twice = [{"event_id": i, "group_id": g} for i in unknown[:60] for g in (0, groups[0])]
        conflicts = triager.post("/assign_group", twice, format="json").json()["event_id"]
        assert len(conflicts) == 51 and conflicts[-1].startswith("... and 10 more event bases")

    def test_group_id_and_groupd_id_that_disagree_are_a_400(self, triager, base_ids, groups):
        body = [
            {"event_id": base_ids[0], "group_id": groups[0], "groupd_id": groups[0]},  # agreeing is fine
            {"event_id": base_ids[1], "group_id": groups[0], "groupd_id": groups[1]},
        ]
        response = triager.post("/assign_group", body, format="json")
        assert response.status_code == 400
        assert "groupd_id" in response.content.decode() and str(groups[1]) in response.content.decode()
        assert [group_of(i) for i in base_ids[:2]] == [0, 0]

    def test_a_base_named_with_two_groups_is_a_400_naming_both_and_nothing_changes(self, triager, base_ids, groups):
        body = [
            {"event_id": base_ids[0], "group_id": groups[0]},
            {"event_id": base_ids[1], "group_id": groups[1]},
            {"event_id": base_ids[1], "group_id": groups[0]},
        ]
        response = triager.post("/assign_group", body, format="json")
        assert response.status_code == 400
        low, high = sorted(groups)
        assert response.json() == {
            "event_id": [f"Event base {base_ids[1]} is assigned to more than one group ({low}, {high}): send one."]
        }
        assert [group_of(i) for i in base_ids[:2]] == [0, 0]

    def test_a_base_named_twice_with_the_same_group_is_one_assignment(self, triager, base_ids, groups):
        body = [{"event_id": base_ids[0], "group_id": groups[0]}, {"event_id": base_ids[0], "groupd_id": groups[0]}]
        response = triager.post("/assign_group", body, format="json")
        assert response.json() == {"updated": 1}
        assert group_of(base_ids[0]) == groups[0]

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            ({"event_id": 1}, "group_id"),
            ({"group_id": 1}, "event_id"),
            ({"event_id": "x", "group_id": 1}, "event_id"),
            ({"event_id": 2**63, "group_id": 0}, "event_id"),
            ([{"event_id": 1, "group_id": 2**70}], "group_id"),
            ({"event_id": 1, "groupd_id": 2**63}, "groupd_id"),
            ([], "Empty"),
            ("text", "non_field_errors"),
        ],
    )
    def test_malformed_bodies_are_a_400(self, triager, body, words):
        response = triager.post("/assign_group", body, format="json")
        assert response.status_code == 400
        assert words in response.content.decode()

    def test_each_change_is_recorded_in_the_admin_history(self, triager, base_ids, groups):
        triager.post("/assign_group", {"event_id": base_ids[1], "group_id": groups[1]}, format="json")
        entry = LogEntry.objects.get()
        assert entry.object_id == str(base_ids[1])
        assert entry.user.username == "triager"
        assert "team-1" in entry.change_message


class TestGroups:
    def test_it_lists_groups_with_base_counts(self, reader, triager, base_ids, groups):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        triager.post("/assign_group", {"event_id": base_ids[0], "group_id": groups[1]}, format="json")
        with CaptureQueriesContext(connection) as queries:
            listed = reader.get("/groups").json()
        # Counted per group in one pass over the bases, not by joining each base to its group (2.3 s a list
        # at a million bases against 0.16).
        assert not [query["sql"] for query in queries if 'JOIN "events_eventbase"' in query["sql"]]
        assert [(g["id"], g["name"], g["base_count"]) for g in listed] == [
            (0, "default", 2),
            (groups[0], "team-0", 0),
            (groups[1], "team-1", 1),
        ]

    def test_it_creates_one_or_many(self, triager):
        one = triager.post("/groups", {"name": "payments"}, format="json")
        assert one.status_code == 201
        assert one.json()["name"] == "payments" and one.json()["base_count"] == 0
        many = triager.post("/groups/", [{"name": "search"}, {"name": "checkout"}], format="json")
        assert many.status_code == 201
        assert [g["name"] for g in many.json()] == ["search", "checkout"]
        assert EventGroup.objects.count() == 4

    def test_many_groups_are_created_in_statements_that_do_not_grow_with_them(self, triager, groups):
        # A query per group (DRF's uniqueness check) and an INSERT per group: 20,000 groups took 32 s.
        with CaptureQueriesContext(connection) as queries:
            response = triager.post("/groups", [{"name": f"team {i}"} for i in range(300)], format="json")
        assert response.status_code == 201
        assert [g["name"] for g in response.json()] == [f"team {i}" for i in range(300)]
        assert len(queries) < 12
        assert LogEntry.objects.filter(change_message="Created via API.").count() == 300
        taken = triager.post("/groups", [{"name": "new"}, {"name": "team 7"}, {"name": "team-1"}], format="json")
        assert taken.json() == {
            "1": {"name": ["An event group named 'team 7' already exists."]},
            "2": {"name": ["An event group named 'team-1' already exists."]},
        }

    @pytest.mark.parametrize(
        "body", [{"name": "team-0"}, [{"name": "fresh"}, {"name": "team-0"}], [{"name": "x"}, {"name": "x"}]]
    )
    def test_a_duplicate_name_is_a_400_and_nothing_is_created(self, triager, groups, body):
        before = EventGroup.objects.count()
        response = triager.post("/groups", body, format="json")
        assert response.status_code == 400
        assert "name" in response.content.decode()
        assert EventGroup.objects.count() == before

    def test_names_given_twice_in_one_array_are_named_quoted_and_the_first_fifty_only(self, triager, groups):
        before = EventGroup.objects.count()
        body = [{"name": name} for name in ["a, b", "c", "a, b", "c"]]
        answer = triager.post("/groups", body, format="json").json()
        assert answer == {"name": ["Named more than once: 'a, b', 'c'."]}  # quoted: a name may hold a comma
        many = [{"name": f"g{i:03}"} for i in range(120)] * 2
        message = triager.post("/groups", many, format="json").json()["name"][0]
        assert message.startswith("Named more than once: 'g000', 'g001', ")
        assert message.endswith(", 'g049' and 70 more.")
        assert EventGroup.objects.count() == before

    @pytest.mark.parametrize(
        ("method", "body", "got"),
        [
            ("post", b'{"name": 1e400}', "a number"),
            ("post", b'{"name": 7}', "a number"),
            ("patch", b'{"name": []}', "an array"),
        ],
    )
    def test_a_name_that_is_not_a_string_is_a_400_and_changes_nothing(self, triager, groups, method, body, got):
        before = list(EventGroup.objects.order_by("id").values_list("id", "name"))
        path = "/groups" if method == "post" else f"/groups/{groups[0]}"
        response = getattr(triager, method)(path, body, content_type="application/json")
        assert response.status_code == 400
        assert response.json() == {"name": [f"Expected a string, got {got}."]}
        assert list(EventGroup.objects.order_by("id").values_list("id", "name")) == before

    def test_times_are_written_in_the_configured_format(self, triager, settings):
        created = triager.post("/groups", {"name": "payments"}, format="json").json()["created_at"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created)
        settings.EVENTSUM_TIME_FORMAT = "%d/%m/%Y %H.%M"
        listed = {g["name"]: g["created_at"] for g in triager.get("/groups").json()}
        stored = EventGroup.objects.get(name="payments").created_at.astimezone(UTC)
        assert listed["payments"] == stored.strftime("%d/%m/%Y %H.%M")
        assert created == stored.strftime("%Y-%m-%d %H:%M:%S")

    def test_it_retrieves_and_renames(self, triager, groups):
        assert triager.get(f"/groups/{groups[0]}").json()["name"] == "team-0"
        response = triager.patch(f"/groups/{groups[0]}/", {"name": "renamed"}, format="json")
        assert response.status_code == 200
        assert EventGroup.objects.get(id=groups[0]).name == "renamed"

    def test_an_unknown_group_is_a_404(self, triager):
        assert triager.get("/groups/4242").json() == {"detail": "No group with id '4242'."}
        for call, path in [
            (triager.get, f"/groups/{2**70}"),
            (triager.delete, f"/groups/{2**63}"),
            (triager.get, "/groups/abc"),
        ]:
            response = call(path)
            assert response.status_code == 404
            assert response.json()["detail"] == f"No group with id {path.rsplit('/', 1)[1]!r}."

    def test_deleting_a_group_moves_its_bases_to_group_0(self, triager, base_ids, groups):
        triager.post("/assign_group", [{"event_id": i, "group_id": groups[0]} for i in base_ids[:2]], format="json")
        response = triager.delete(f"/groups/{groups[0]}")
        assert response.status_code == 204
        assert not EventGroup.objects.filter(id=groups[0]).exists()
        assert [group_of(i) for i in base_ids] == [0, 0, 0]
        assert LogEntry.objects.filter(change_message__contains="2 bases moved to group 0").exists()

    def test_a_big_group_moves_to_group_0_in_batches_then_goes(self, triager, capture, groups, monkeypatch):
        # Each batch is its own transaction, so a capture of one of the bases waits for one batch at most.
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        monkeypatch.setattr("events.triage.MOVE_BATCH", 2)
        ids = [capture(make_event(event_name=f"Batch{i}"))["event_base_id"] for i in range(5)]
        EventBase.objects.filter(id__in=ids).update(event_group_id=groups[0])
        with CaptureQueriesContext(connection) as queries:
            assert triager.delete(f"/groups/{groups[0]}").status_code == 204
        batches = [query["sql"] for query in queries if "locked AS MATERIALIZED" in query["sql"]]
        assert len(batches) == 3  # 2 + 2 + 1 bases
        assert [group_of(i) for i in ids] == [0] * 5
        assert (
            LogEntry.objects.get(object_id=str(groups[0])).change_message
            == "Deleted via API; 5 bases moved to group 0."
        )

    def test_creations_and_renames_are_recorded_in_the_admin_history(self, triager):
        created = triager.post("/groups", [{"name": "search"}, {"name": "checkout"}], format="json").json()
        triager.patch(f"/groups/{created[0]['id']}", {"name": "find"}, format="json")
        triager.patch(f"/groups/{created[1]['id']}", {"name": "checkout"}, format="json")  # no change
        entries = [
            (e.user.username, e.action_flag, e.object_id, e.object_repr, e.change_message)
            for e in LogEntry.objects.order_by("id")
        ]
        assert entries == [
            ("triager", ADDITION, str(created[0]["id"]), "search", "Created via API."),
            ("triager", ADDITION, str(created[1]["id"]), "checkout", "Created via API."),
            ("triager", CHANGE, str(created[0]["id"]), "find", "Renamed from 'search' to 'find' via API."),
        ]

    def test_group_0_can_be_neither_deleted_nor_renamed(self, triager):
        response = triager.delete("/groups/0")
        assert response.status_code == 400
        assert "Group 0" in response.json()["detail"]
        response = triager.patch("/groups/0", {"name": "other"}, format="json")
        assert response.status_code == 400
        assert "renamed" in response.json()["name"][0]
        assert EventGroup.objects.get(id=0).name == "default"


def test_services_and_environments_list_ids_and_names(reader, capture):
    capture(make_event(service="Wish FE", environment="PROD"))
    capture(make_event(service="merchant-be", environment=None))
    services = reader.get("/services").json()
    assert [(s["name"], s["normalized_name"]) for s in services] == [
        ("Wish FE", "wish_fe"),
        ("merchant-be", "merchant_be"),
    ]
    environments = reader.get("/environments/").json()
    assert [e["normalized_name"] for e in environments] == ["prod", "default"]


@pytest.mark.parametrize(("method", "path"), [("post", "/assign_group"), ("post", "/groups"), ("patch", "/groups/{}")])
def test_a_body_nested_too_deeply_is_a_400_and_changes_nothing(triager, groups, method, path):
    before = list(EventGroup.objects.order_by("id").values_list("id", "name"))
    body = "[" * 100_000 + "]" * 100_000
    response = getattr(triager, method)(path.format(groups[0]), body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
    assert list(EventGroup.objects.order_by("id").values_list("id", "name")) == before


@pytest.mark.parametrize("path", ["/assign_group", "/groups"])
def test_a_compressed_body_is_a_415_and_one_over_the_limit_a_413(triager, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048  # EVENTSUM_MAX_BODY_BYTES
    before = EventGroup.objects.count()
    compressed = triager.post(path, b"\x1f\x8b...", content_type="application/json", HTTP_CONTENT_ENCODING="gzip")
    assert compressed.status_code == 415
    assert compressed.json() == {"detail": "Content-Encoding 'gzip' is not supported: send the body uncompressed."}
    big = triager.post(path, [{"name": f"group {i}"} for i in range(200)], format="json")
    assert big.status_code == 413
    assert big.json() == {"detail": "The request body is over 2048 bytes."}
    assert EventGroup.objects.count() == before


HOSTILE_BODIES = [
    b"",
    b"\xef\xbb\xbf{}",  # a byte order mark
    b"\xff\xfe{}",  # not UTF-8
    b'{"name": "a\\ud800"}',
    b'{"name": "a\\u0000"}',
    b'{"event_id": 1e999, "group_id": 0}',
    b'{"event_id": NaN, "group_id": 0}',
    b'{"name": ' + b"9" * 5000 + b"}",
    b"[" * 3000 + b"]" * 3000,
    b'{"name": {"name": "x"}}',
    b"null",
    b"[[[]]]",
    b"{",
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_bodies_on_every_write_are_json_4xx_and_change_nothing(triager, groups, body):
    # A PATCH naming no field it knows (b"", {"event_id": ...}) is a partial update of nothing: a 200.
    before = list(EventGroup.objects.order_by("id").values_list("id", "name"))
    for method, path, lowest in [
        ("post", "/assign_group", 400),
        ("post", "/groups", 400),
        ("patch", f"/groups/{groups[0]}", 200),
    ]:
        response = getattr(triager, method)(path, body, content_type="application/json")
        assert lowest <= response.status_code < 500, (method, path, response.status_code)
        assert response["Content-Type"] == "application/json"
        assert response.json()
    assert list(EventGroup.objects.order_by("id").values_list("id", "name")) == before
