"""The admin dashboard through Django's test client: permissions, the bulk action, history, query counts."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events.admin_views import svg_chart
from events.models import Environment, EventBase, EventGroup, RateWindow, Service
from events.services import capture_events, delete_unused
from tests.conftest import make_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    User.objects.create_superuser("boss", password="pw")
    client.login(username="boss", password="pw")
    return client


def capture_bases(count: int, **changes) -> list[int]:
    results = capture_events([make_event(event_name=f"E{i}", **changes) for i in range(count)])
    return [result.event_base_id for result in results]


@pytest.mark.parametrize(
    ("password", "refused"),
    [("abc", True), ("password1", True), ("19283746", True), ("glacier-tonic-87-umber", False)],
)
def test_a_password_set_in_the_admin_must_pass_djangos_checks(staff, password, refused):
    user = User.objects.get(username="boss")
    page = staff.post(f"/admin/auth/user/{user.pk}/password/", {"password1": password, "password2": password})
    user.refresh_from_db()
    assert user.check_password(password) is not refused
    assert ("errorlist" in page.content.decode()) is refused


def test_a_non_staff_user_is_refused(client):
    User.objects.create_user("reader", password="pw")
    client.login(username="reader", password="pw")
    response = client.get("/admin/events/eventbase/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_base_list_shows_counts_and_charts(staff):
    capture_events([make_event(event_name="Hot")] * 3)
    response = staff.get("/admin/events/eventbase/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Hot" in html and 'aria-label="last 24 hours: 3 occurrences"' in html
    assert "<title>3 (0h ago)</title></rect></svg>" in html  # this hour, the last bar
    assert '<td class="field-total">3</td>' in html


def test_the_base_list_query_count_does_not_grow_with_rows(staff, django_assert_max_num_queries):
    capture_bases(2)
    with django_assert_max_num_queries(12) as few:
        staff.get("/admin/events/eventbase/")
    capture_bases(40, service="other")
    with django_assert_max_num_queries(12) as many:
        staff.get("/admin/events/eventbase/")
    assert len(many.captured_queries) == len(few.captured_queries)
    sql = [query["sql"] for query in many.captured_queries]
    assert any("LIMIT 10001) AS capped" in statement for statement in sql)  # the count stops early
    assert not any('COUNT(*) AS "__count" FROM "events_eventbase"' in statement for statement in sql)


def test_search_finds_by_words_and_by_hash(staff):
    capture_events([make_event(event_name="PaymentDeclined", message="card 4242 declined"), make_event()])
    payment = EventBase.objects.get(event_name="PaymentDeclined")
    assert "PaymentDeclined" in staff.get("/admin/events/eventbase/", {"q": "declined CARD"}).content.decode()
    body = staff.get("/admin/events/eventbase/", {"q": "declined zero"}).content.decode()
    assert "0 event bases" in body
    by_hash = staff.get("/admin/events/eventbase/", {"q": payment.processed_data_hash}).content.decode()
    assert "PaymentDeclined" in by_hash and "ZeroDivisionError" in by_hash  # the same processed data


def test_the_bulk_action_asks_for_the_group_then_assigns_and_records_history(staff):
    ids = capture_bases(3)
    selection = {"action": "assign_to_group", "_selected_action": ids[:2]}
    ask = staff.post("/admin/events/eventbase/", selection)
    assert ask.status_code == 200
    assert "Assign event bases to a group" in ask.content.decode()

    invalid = staff.post("/admin/events/eventbase/", {**selection, "apply": "1"})
    assert "Pick an existing group or name a new one" in invalid.content.decode()

    done = staff.post("/admin/events/eventbase/", {**selection, "apply": "1", "new_group": "Mobile"})
    assert done.status_code == 302
    group = EventGroup.objects.get(name="Mobile")
    assert sorted(EventBase.objects.filter(event_group=group).values_list("id", flat=True)) == sorted(ids[:2])
    assert LogEntry.objects.get(object_id=str(group.id), object_repr="Mobile").change_message == "Created via admin."
    assert LogEntry.objects.filter(object_id__in=[str(i) for i in ids[:2]], user__username="boss").count() == 2

    again = staff.post("/admin/events/eventbase/", {**selection, "apply": "1", "group": 0})
    assert again.status_code == 302
    assert EventBase.objects.filter(event_group_id=0).count() == 3


def test_a_group_choice_that_is_no_group_says_so_alone(staff):
    ids = capture_bases(1)
    chosen = {"action": "assign_to_group", "_selected_action": ids, "apply": "1", "group": "abc"}
    page = staff.post("/admin/events/eventbase/", chosen).content.decode()
    assert "Select a valid choice" in page
    assert "Pick an existing group or name a new one" not in page  # it was picked, wrongly


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/admin/events/eventbase/", "assign_to_group"),
        ("/admin/events/eventgroup/", "delete_selected"),
        ("/admin/auth/user/", "delete_selected"),
    ],
)
@pytest.mark.parametrize("selected", ["abc", "\x00", "²", str(2**63)])
def test_an_action_on_rows_that_are_no_ids_is_a_400_naming_them(staff, path, action, selected):
    ids = capture_bases(1)
    EventGroup.objects.create(name="kept")
    before = (list(EventBase.objects.values_list("id", "event_group_id")), EventGroup.objects.count())
    response = staff.post(path, {"action": action, "_selected_action": [ids[0], selected], "post": "yes"})
    assert response.status_code == 400
    assert response.json() == {"_selected_action": [f"Not row ids: {selected!r}."]}
    assert (list(EventBase.objects.values_list("id", "event_group_id")), EventGroup.objects.count()) == before
    assert User.objects.filter(username="boss").exists()


@pytest.mark.parametrize("count", [3, 60])
def test_the_bulk_action_over_a_whole_filtered_list_moves_it_in_statements_of_one_size(staff, count, monkeypatch):
    # "Select all" in a list filtered to one service, 2 bases a page: every base of that service moves,
    # with its history, and nothing else; the statements don't grow with the selection (sending every id
    # and building every history entry in Python took 13 s and 220 MB for 100,000 bases).
    monkeypatch.setattr("events.triage.MOVE_BATCH", 25)
    chosen = capture_bases(count, service="payments")
    others = capture_bases(2, service="search")
    group = EventGroup.objects.create(name="Payments")
    service_id = EventBase.objects.get(id=chosen[0]).service_id
    with CaptureQueriesContext(connection) as queries:
        done = staff.post(
            f"/admin/events/eventbase/?service__id__exact={service_id}",
            {
                "action": "assign_to_group",
                "select_across": "1",
                "index": "0",
                "_selected_action": chosen[:1],
                "apply": "1",
                "group": group.id,
            },
        )
    assert done.status_code == 302
    assert sorted(EventBase.objects.filter(event_group=group).values_list("id", flat=True)) == sorted(chosen)
    assert EventBase.objects.filter(id__in=others, event_group_id=0).count() == 2
    entries = LogEntry.objects.filter(user__username="boss", change_message__contains="'Payments'")
    assert sorted(int(entry.object_id) for entry in entries) == sorted(chosen)
    assert max(len(query["sql"]) for query in queries) < 2500
    # In batches of MOVE_BATCH bases, each its own transaction (a capture of one waits for one batch at most).
    assert sum("locked AS MATERIALIZED" in query["sql"] for query in queries) == -(-count // 25)


def test_changing_the_group_on_a_base_page_is_recorded_once(staff):
    (base_id,) = capture_bases(1)
    group = EventGroup.objects.create(name="Backend")
    response = staff.post(
        f"/admin/events/eventbase/{base_id}/change/",
        {
            "event_group": group.id,
            "instances-TOTAL_FORMS": "1",
            "instances-INITIAL_FORMS": "1",
            "instances-MIN_NUM_FORMS": "0",
            "instances-MAX_NUM_FORMS": "1000",
            "instances-0-id": EventBase.objects.get(id=base_id).instances.get().id,
            "instances-0-event_base": base_id,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert EventBase.objects.get(id=base_id).event_group_id == group.id
    (entry,) = LogEntry.objects.filter(object_id=str(base_id))
    assert "Backend" in entry.change_message


def test_deleting_a_group_in_the_admin_moves_its_bases_and_group_0_cannot_be_deleted(staff):
    ids = capture_bases(2)
    group = EventGroup.objects.create(name="Temp")
    EventBase.objects.filter(id__in=ids).update(event_group=group)
    response = staff.post(f"/admin/events/eventgroup/{group.id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not EventGroup.objects.filter(id=group.id).exists()
    assert EventBase.objects.filter(event_group_id=0).count() == 2
    assert staff.get("/admin/events/eventgroup/0/delete/").status_code == 403


@pytest.mark.parametrize("way", ["delete view", "delete action"])
def test_a_group_deletion_is_confirmed_without_reading_its_bases(staff, way):
    # Django's own confirmation read every base of the group (a million rows for a big one) to list them.
    ids = capture_bases(3)
    group = EventGroup.objects.create(name="Big")
    EventBase.objects.filter(id__in=ids).update(event_group=group)
    with CaptureQueriesContext(connection) as queries:
        if way == "delete view":
            response = staff.get(f"/admin/events/eventgroup/{group.id}/delete/")
        else:
            chosen = [group.id, 0]
            response = staff.post(
                "/admin/events/eventgroup/", {"action": "delete_selected", "_selected_action": chosen}
            )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Big</a> (its" in page and "3 bases</a> move to group 0)" in page
    assert "Event groups: 1" in page
    assert ("Group 0 (default) is kept" in page) == (way == "delete action")  # selected there too
    assert not [query["sql"] for query in queries if 'FROM "events_eventbase"' in query["sql"]]
    assert EventBase.objects.filter(event_group=group).count() == 3


@pytest.mark.parametrize(("model", "field"), [(Service, "service"), (Environment, "environment")])
def test_a_service_or_environment_without_bases_can_be_deleted_in_the_admin_and_a_used_one_cannot(staff, model, field):
    # With auto-create on, a client can make up names: those with no events can go; those with events
    # keep them, and the confirmation doesn't read their bases to say so.
    capture_bases(2, **{field: "real"})
    capture_events(
        [make_event(service="junk a", environment="junk a"), make_event(service="junk b", environment="junk b")]
    )
    junk = model.objects.filter(normalized_name__startswith="junk").order_by("id")
    EventBase.objects.filter(**{f"{field}__in": junk}).delete()  # as prune leaves them
    real = model.objects.get(normalized_name="real")
    path = f"/admin/events/{model._meta.model_name}/"

    assert staff.get(f"{path}{real.pk}/delete/").status_code == 403
    with CaptureQueriesContext(connection) as queries:
        refused = staff.post(
            path, {"action": "delete_selected", "_selected_action": [real.pk, *junk.values_list("pk", flat=True)]}
        )
    assert f"{model._meta.verbose_name.capitalize()} {real} has event bases" in refused.content.decode()
    assert not [query["sql"] for query in queries if 'SELECT "events_eventbase"."id"' in query["sql"]]

    first, second = junk
    assert staff.post(f"{path}{first.pk}/delete/", {"post": "yes"}).status_code == 302
    chosen = {"action": "delete_selected", "_selected_action": [second.pk], "post": "yes"}
    assert staff.post(path, chosen).status_code == 302
    assert list(model.objects.values_list("normalized_name", flat=True)) == ["real"]
    assert EventBase.objects.filter(**{field: real}).count() == 2
    assert LogEntry.objects.filter(action_flag=DELETION, object_id__in=[first.pk, second.pk]).count() == 2


@pytest.mark.parametrize("model", [Service, Environment])
def test_a_service_or_environment_is_added_in_the_admin_and_only_respelled_never_made_another(staff, model):
    # With auto-create off, the admin is where services are added. A name another one already normalizes
    # to was a 500 (the unique normalized name); a rename to another identity would leave captures, and
    # the ids web processes remember, pointing at the old one.
    path = f"/admin/events/{model._meta.model_name}/"
    assert staff.post(f"{path}add/", {"name": "Checkout API"}).status_code == 302
    added = model.objects.get()
    assert (added.name, added.normalized_name) == ("Checkout API", "checkout_api")

    kind = model._meta.verbose_name
    taken = staff.post(f"{path}add/", {"name": "checkout-api"})
    assert taken.status_code == 200
    assert (
        f"The {kind} &#x27;Checkout API&#x27; already has this name (&#x27;checkout_api&#x27;)."
        in taken.content.decode()
    )
    renamed = staff.post(f"{path}{added.pk}/change/", {"name": "Orders"})
    assert renamed.status_code == 200
    assert (
        f"Captures name this {kind} &#x27;checkout_api&#x27;; &#x27;Orders&#x27; would be another"
        in renamed.content.decode()
    )
    assert staff.post(f"{path}{added.pk}/change/", {"name": "CHECKOUT-API"}).status_code == 302
    assert list(model.objects.values_list("name", "normalized_name")) == [("CHECKOUT-API", "checkout_api")]


def test_deleting_unused_names_counts_the_names_not_the_rate_windows_that_go_with_them(settings):
    settings.EVENTSUM_RATE_LIMIT = 1_000
    capture_events([make_event(service="a"), make_event(service="b"), make_event(service="c")])
    EventBase.objects.exclude(service__normalized_name="c").delete()
    assert RateWindow.objects.count() == 3
    assert delete_unused(Service, Service.objects.values("pk")) == 2
    assert list(Service.objects.values_list("normalized_name", flat=True)) == ["c"]
    assert RateWindow.objects.count() == 1


@pytest.mark.django_db(transaction=True)  # the foreign key is checked at commit, as in production
@pytest.mark.parametrize(("model", "field"), [(Service, "service"), (Environment, "environment")])
def test_a_name_deleted_in_the_admin_is_made_anew_by_a_process_that_remembered_its_id(staff, model, field):
    capture_events([make_event(**{field: "gone"})])  # this process now remembers the name's id
    EventBase.objects.all().delete()
    old = model.objects.get(normalized_name="gone")
    assert staff.post(f"/admin/events/{model._meta.model_name}/{old.pk}/delete/", {"post": "yes"}).status_code == 302
    result = capture_events([make_event(**{field: "gone"})])[0]
    new = model.objects.get(normalized_name="gone")
    assert new.pk != old.pk
    assert getattr(EventBase.objects.get(id=result.event_base_id), f"{field}_id") == new.pk


def test_a_group_is_created_and_renamed_in_the_admin_but_a_deleted_one_is_not_saved_again(staff, monkeypatch):
    assert staff.post("/admin/events/eventgroup/add/", {"name": "Mobile"}).status_code == 302
    group = EventGroup.objects.get(name="Mobile")
    assert staff.post(f"/admin/events/eventgroup/{group.id}/change/", {"name": "Apps"}).status_code == 302
    assert EventGroup.objects.get(id=group.id).name == "Apps"

    from events.admin import EventGroupAdmin

    read = EventGroupAdmin.get_object

    def read_then_lose_it(self, request, object_id, from_field=None):  # deleted by someone else meanwhile
        found = read(self, request, object_id, from_field)
        EventGroup.objects.filter(id=object_id).delete()
        return found

    monkeypatch.setattr(EventGroupAdmin, "get_object", read_then_lose_it)
    assert staff.post(f"/admin/events/eventgroup/{group.id}/change/", {"name": "Back"}).status_code == 404
    # Saved, it would have been inserted again as "Back". (The 404 rolls the admin's transaction back, this
    # test's deletion included, so the group is there as it was.)
    assert not EventGroup.objects.filter(name="Back").exists()


def test_groups_services_and_environments_link_to_their_bases(staff):
    capture_bases(2)
    for path, parameter in [
        ("eventgroup", "event_group__id__exact=0"),
        ("service", "service__id__exact="),
        ("environment", "environment__id__exact="),
    ]:
        html = staff.get(f"/admin/events/{path}/").content.decode()
        assert parameter in html and "2 bases" in html


def test_base_and_instance_pages_render_the_trace(staff):
    capture_events([make_event(vars={"user": "<User at 0x7f00deadbeef>"}, extra_args={"host": "web-1"})])
    base = EventBase.objects.get()
    base_page = staff.get(f"/admin/events/eventbase/{base.id}/change/").content.decode()
    assert 'class="line failing"' in base_page and "func4" in base_page
    instance_page = staff.get(f"/admin/events/eventinstance/{base.instances.get().id}/change/").content.decode()
    assert "0x7f00deadbeef" in instance_page
    assert "&quot;host&quot;: &quot;web-1&quot;" in instance_page


def test_base_counts_in_the_lists_stop_at_the_cap(staff, monkeypatch):
    from events.admin_views import CappedCountPaginator

    capture_bases(3)
    monkeypatch.setattr(CappedCountPaginator, "CAP", 2)
    html = staff.get("/admin/events/service/").content.decode()
    assert "2+ bases" in html
    monkeypatch.setattr(CappedCountPaginator, "CAP", 3)
    assert "3 bases" in staff.get("/admin/events/service/").content.decode()


@pytest.mark.parametrize("model", ["eventbase", "eventinstance"])
def test_a_later_page_runs_the_per_row_subqueries_for_its_own_rows_only(staff, monkeypatch, model):
    from events.admin import EventBaseAdmin, EventInstanceAdmin

    monkeypatch.setattr(EventBaseAdmin, "list_per_page", 2)
    monkeypatch.setattr(EventInstanceAdmin, "list_per_page", 2)
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(5):  # E0 seen last, with 1 occurrence; E4 seen first, with 5
        moment = (now - timedelta(minutes=10 * i)).strftime("%Y-%m-%d %H:%M:%S")
        capture_events([make_event(event_name=f"E{i}", timestamp=moment)] * (i + 1))
    order = "-last_seen" if model == "eventbase" else "-id"  # instances: newest first by id, E4 is the newest
    names = [name for name in EventBase.objects.order_by(order).values_list("event_name", flat=True)][2:4]
    with CaptureQueriesContext(connection) as queries:
        html = staff.get(f"/admin/events/{model}/", {"p": 2}).content.decode()
    assert re.findall(r"<b>(E\d)</b>" if model == "eventbase" else r"\w (E\d) #\d+<", html) == names
    column = "field-total" if model == "eventbase" else "field-occurrences"
    assert re.findall(rf'<td class="{column}">(\d+)</td>', html) == [str(int(name[1]) + 1) for name in names]
    reading_buckets = [q["sql"] for q in queries.captured_queries if "events_occurrencebucket" in q["sql"]]
    assert reading_buckets and not any("OFFSET" in sql for sql in reading_buckets), reading_buckets


def test_a_base_page_shows_its_latest_instances_and_links_to_them_all(staff, monkeypatch):
    import events.admin

    monkeypatch.setattr(events.admin, "INSTANCES_SHOWN", 2)
    for line, moment in ((1, "00:01"), (2, "00:04"), (3, "00:02"), (4, "00:03")):
        capture_events([make_event(lineno=line, timestamp=f"2024-05-01 12:{moment}:00")])
    base = EventBase.objects.get()
    latest = list(base.instances.order_by("-last_seen").values_list("id", flat=True))[:2]
    html = staff.get(f"/admin/events/eventbase/{base.id}/change/").content.decode()
    shown = [int(i) for i in re.findall(r'/admin/events/eventinstance/(\d+)/change/">#', html)]
    assert shown == latest
    assert f'?event_base__id__exact={base.id}">all 4 →</a>' in html


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (f"/admin/events/eventbase/?id__exact={2**70}", "0 event bases"),
        (f"/admin/events/eventinstance/?event_base__id__exact={2**63}", "0 event instances"),  # the base page's link
    ],
)
def test_a_list_filtered_by_an_id_past_bigint_is_empty(staff, path, shown):
    capture_bases(2)
    response = staff.get(path)
    assert response.status_code == 200
    assert shown in response.content.decode()


def test_the_type_filter_finds_a_type_captured_with_a_nul(staff):
    capture_bases(2)
    response = staff.post("/capture", make_event(event_type="bad\x00type"), content_type="application/json")
    assert response.status_code == 200
    html = staff.get("/admin/events/eventbase/", {"event_type": "bad\x00type"}).content.decode()
    assert "1 event base" in html


def test_a_later_page_of_services_counts_the_bases_of_its_own_rows_only(staff, monkeypatch):
    from events.admin import ServiceAdmin

    monkeypatch.setattr(ServiceAdmin, "list_per_page", 2)
    for i in range(5):
        capture_events([make_event(service=f"svc-{i}", event_name=f"E{n}") for n in range(i + 1)])
    with CaptureQueriesContext(connection) as queries:
        html = staff.get("/admin/events/service/", {"p": 2}).content.decode()
    counting = [q["sql"] for q in queries.captured_queries if "FROM events_eventbase b" in q["sql"]]
    assert counting and not any("OFFSET" in sql for sql in counting), counting
    assert re.findall(r">(\d+) bases</a>", html) == ["3", "4"]  # ordered by name: svc-2, svc-3


# Bases seen at these times, named by the order they were last seen in: the recency index holds the hour,
# and the list must still follow last_seen itself within an hour and across hours.
SEEN = {"A": "10:59:59", "B": "10:15:00", "C": "10:00:00", "D": "09:59:59", "E": "09:00:00"}


def capture_seen_bases():
    capture_events([make_event(event_name=name, timestamp=f"2024-05-01 {time}") for name, time in SEEN.items()])


def listed_names(html: str) -> str:
    return "".join(re.findall(r"<b>([A-E])</b>", html))


def test_the_base_list_follows_last_seen_within_and_across_hours(staff):
    from events.admin import EventBaseAdmin

    capture_seen_bases()
    assert listed_names(staff.get("/admin/events/eventbase/").content.decode()) == "ABCDE"
    column = 1 + EventBaseAdmin.list_display.index("last")  # "o" counts the actions' checkbox column too
    # The column's ordering is "-last_seen": its first click lists the latest first, the next the earliest.
    assert listed_names(staff.get("/admin/events/eventbase/", {"o": column}).content.decode()) == "ABCDE"
    assert listed_names(staff.get("/admin/events/eventbase/", {"o": -column}).content.decode()) == "EDCBA"


def test_the_last_seen_filter_counts_from_its_start_even_within_an_hour(staff):
    capture_seen_bases()
    since = {"last_seen__gte": "2024-05-01 10:10:00+00:00", "last_seen__lt": "2024-05-01 11:00:00+00:00"}
    assert listed_names(staff.get("/admin/events/eventbase/", since).content.decode()) == "AB"
    since = {"last_seen__gte": "2024-05-01 09:30:00+00:00", "last_seen__lt": "2024-05-01 10:00:00+00:00"}
    assert listed_names(staff.get("/admin/events/eventbase/", since).content.decode()) == "D"


def test_the_chart_draws_each_hour_as_a_bar_scaled_to_the_peak():
    chart = svg_chart([0] * 21 + [3, 5, 10])
    number = r'"([\d.]+)"'
    bars = re.findall(f"<rect x={number} y={number} width={number} height={number}><title>([^<]*)</title>", chart)
    assert len(bars) == 24
    assert bars[0] == ("0.0", "23.0", "4.0", "1.0", "0 (23h ago)")  # an empty hour still shows a sliver
    assert bars[-3:] == [
        ("105.0", "16.8", "4.0", "7.2", "3 (2h ago)"),
        ("110.0", "12.0", "4.0", "12.0", "5 (1h ago)"),
        ("115.0", "0.0", "4.0", "24.0", "10 (0h ago)"),
    ]
    assert chart.startswith('<svg class="eventsum-chart" width="120" height="24" viewBox="0 0 120 24"')
    assert 'aria-label="last 24 hours: 18 occurrences"' in chart
