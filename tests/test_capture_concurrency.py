"""Concurrent captures against a live server on real PostgreSQL: no duplicate rows, no lost counts."""

import json
import random
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import Sum

from events.models import EventBase, EventGroup, EventInstance, OccurrenceBucket
from tests.conftest import assert_totals_match_buckets, make_event

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 8
REQUESTS_PER_CLIENT = 50


def post(url: str, payload) -> int:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def test_parallel_clients_sending_the_same_new_event_make_one_of_each_row_and_count_exactly(live_server):
    event = make_event(event_name="BrandNewError", timestamp="2024-05-01 12:00:30")
    url = live_server.url + "/capture"

    def client(_):
        return [post(url, event) for _ in range(REQUESTS_PER_CLIENT)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [status for batch in pool.map(client, range(CLIENTS)) for status in batch]

    assert statuses == [200] * CLIENTS * REQUESTS_PER_CLIENT
    assert EventBase.objects.count() == 1
    assert EventInstance.objects.count() == 1
    bucket = OccurrenceBucket.objects.get()
    assert bucket.count == CLIENTS * REQUESTS_PER_CLIENT
    assert assert_totals_match_buckets() == 1


def test_parallel_arrays_over_overlapping_rows_in_any_order_neither_deadlock_nor_lose_counts(live_server):
    # 6 bases x 2 instances x 2 buckets, each client sending them shuffled, several times over.
    kinds = [
        make_event(
            event_name=f"Error{b}",
            lineno=line,
            timestamp=f"2024-05-01 12:0{minute}:00",
            message=f"m{b}",
            configurable_groupings=["count_by_message"],
        )
        for b in range(6)
        for line in (1, 2)
        for minute in (0, 1)
    ]
    url = live_server.url + "/capture"
    rounds = 10

    def client(seed):
        shuffler = random.Random(seed)
        statuses = []
        for _ in range(rounds):
            batch = kinds + shuffler.sample(kinds, 5)
            shuffler.shuffle(batch)
            statuses.append(post(url, batch))
        return statuses

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [status for batch in pool.map(client, range(CLIENTS)) for status in batch]

    assert statuses == [200] * CLIENTS * rounds
    assert EventBase.objects.count() == 6
    assert EventInstance.objects.count() == 12
    assert OccurrenceBucket.objects.count() == 24
    assert OccurrenceBucket.objects.aggregate(total=Sum("count"))["total"] == CLIENTS * rounds * (len(kinds) + 5)
    assert assert_totals_match_buckets() == 12


def test_captures_racing_deletions_of_their_rows_are_all_stored_with_their_full_data(live_server):
    # Each process leaves out the processed and generic data of rows it has written; rows deleted under it
    # (retention, or by hand) must still come back whole, whichever moment the deletion lands.
    kinds = [make_event(event_name=f"Racing{b}", lineno=line) for b in range(3) for line in (1, 2)]
    url = live_server.url + "/capture"
    deletions, rounds_after = 6, 5

    def rows_with_their_data() -> dict:
        return {
            (instance.event_base.event_name, instance.generic_data_hash): (
                instance.event_base.processed_data,
                instance.generic_data,
            )
            for instance in EventInstance.objects.select_related("event_base")
        }

    post(url, kinds)
    expected = rows_with_their_data()

    def client(seed):
        shuffler = random.Random(seed)
        statuses = []
        for _ in range(deletions * 4):
            statuses.append(post(url, shuffler.choice(kinds)))
            statuses.append(post(url, shuffler.sample(kinds, 3)))
        return statuses

    def deleter(_):
        try:
            for _ in range(deletions):
                while True:
                    try:
                        EventBase.objects.filter(event_name__startswith="Racing").delete()
                        break
                    except DatabaseError:
                        # The ORM's cascade is its own: a deadlock with a capture (it locks in another order),
                        # or an instance a capture added after the cascade read them. Delete again.
                        pass
        finally:
            connection.close()  # this thread's own connection
        return []

    with ThreadPoolExecutor(CLIENTS + 1) as pool:
        results = list(pool.map(lambda n: deleter(n) if n == CLIENTS else client(n), range(CLIENTS + 1)))
    after = [post(url, kinds) for _ in range(rounds_after)]  # every row back, none deleted from here on

    assert [status for batch in results for status in batch] + after == [200] * (CLIENTS * deletions * 8 + rounds_after)
    assert rows_with_their_data() == expected  # every row back, each with its data
    counts = OccurrenceBucket.objects.values_list("count", flat=True)
    assert all(count >= rounds_after for count in counts) and len(counts) >= len(kinds)
    assert assert_totals_match_buckets() == len(kinds)


@pytest.mark.parametrize(
    ("command", "days_ago"),
    [
        # Events older than the retention: the prune deletes their buckets (and then their rows) while they
        # arrive.
        (["prune_events", "--batch-size", "1"], 120),
        # Sums read from the buckets while captures add to them, a row at a time.
        (["recount_totals", "--batch-size", "1"], 0),
    ],
    ids=["prune", "recount"],
)
def test_captures_racing_a_command_on_the_totals_keep_them_exact(live_server, command, days_ago):
    from datetime import UTC, datetime, timedelta
    from io import StringIO

    from django.core.management import call_command

    moment = (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%d %H:%M:%S")
    kinds = [
        make_event(event_name=f"Late{b}", lineno=line, timestamp=moment, configurable_groupings=["count_by_message"])
        for b in range(2)
        for line in (1, 2)
    ]
    url = live_server.url + "/capture"
    running = True

    def client(seed):
        shuffler = random.Random(seed)
        return [post(url, shuffler.sample(kinds, 3) if n % 2 else shuffler.choice(kinds)) for n in range(30)]

    def background(_):
        runs = 0
        try:
            while running or runs < 2:
                call_command(*command, stdout=StringIO())
                runs += 1
        finally:
            connection.close()
        return runs

    with ThreadPoolExecutor(CLIENTS + 1) as pool:
        runs = pool.submit(background, None)
        statuses = [status for batch in pool.map(client, range(CLIENTS)) for status in batch]
        running = False
        assert runs.result() >= 2

    assert statuses == [200] * CLIENTS * 30
    assert_totals_match_buckets()


# The rows of a base, as a capture locks them: the base, then its instances, then their buckets.
CAPTURE_LOCKS = {
    "base": "SELECT id FROM events_eventbase WHERE id = %s FOR NO KEY UPDATE",
    "instance": "SELECT id FROM events_eventinstance WHERE event_base_id = %s FOR NO KEY UPDATE",
    "bucket": "SELECT id FROM events_occurrencebucket WHERE event_base_id = %s FOR NO KEY UPDATE",
}


@pytest.mark.parametrize(
    ("command", "days_ago", "held"),
    [
        # A prune batch of both bases' buckets, which it deletes before updating their totals.
        ("prune_events", 120, ["base"]),
        # A recount's batch of instances, and (when the capture holds no instance) its batch of bases.
        ("recount_totals", 0, ["base", "instance"]),
        ("recount_totals", 0, ["base"]),
        # Deleting a group moves its bases (both) to group 0.
        ("delete_group", 0, ["base"]),
        # An assignment of both bases, sent in the order of their ids.
        ("assign_groups", 0, ["base"]),
    ],
    ids=["prune", "recount-instances", "recount-bases", "delete-group", "assign-groups"],
)
def test_a_batch_takes_its_locks_in_the_order_a_capture_does(command, days_ago, held):
    # A capture locks its bases in the order of their keys, then their instances, then their buckets. Here
    # this connection plays a capture of two bases: it holds the first base's rows, in key order, while a
    # batch of the command's over both bases starts. The batch must wait for it holding nothing, so that
    # the rest of the capture's locks are free (NOWAIT: any one held by the batch fails at once).
    import threading
    import time
    from datetime import UTC, datetime, timedelta
    from io import StringIO

    from django.core.management import call_command

    from events.services import capture_events
    from events.triage import assign_groups, delete_group

    moment = (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%d %H:%M:%S")
    # Captured in this order, "alpha" gets the lower id; in the keys' order (code points) "Zeta" comes first.
    for name in ("alpha", "Zeta"):
        capture_events([make_event(event_name=name, timestamp=moment)])
    first, second = EventBase.objects.get(event_name="Zeta").id, EventBase.objects.get(event_name="alpha").id
    assert second < first
    group = EventGroup.objects.create(name="triaged")
    if command == "delete_group":
        EventBase.objects.update(event_group=group)
    finished = []

    def run():
        try:
            if command == "delete_group":
                delete_group(group, None)
            elif command == "assign_groups":
                assign_groups([(second, group.id), (first, group.id)], None)
            else:
                call_command(command, "--batch-size", "2", stdout=StringIO())
            finished.append(command)
        finally:
            connection.close()

    with transaction.atomic(), connection.cursor() as cursor:
        for row in held:
            cursor.execute(CAPTURE_LOCKS[row], [first])
        batch = threading.Thread(target=run)
        batch.start()
        waited = time.monotonic()
        while True:  # until the batch waits for a lock this connection holds
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            )
            if cursor.fetchone()[0]:
                break
            assert time.monotonic() - waited < 20, f"{command} never waited for the rows this capture holds"
            time.sleep(0.02)
        for row in ("base", "instance", "bucket"):
            cursor.execute(CAPTURE_LOCKS[row] + " NOWAIT", [second])
            assert len(cursor.fetchall()) == 1, row
    batch.join(30)

    assert not batch.is_alive() and finished == [command]
    if command == "prune_events":
        assert not OccurrenceBucket.objects.exists() and not EventBase.objects.exists()
    elif command == "delete_group":
        assert set(EventBase.objects.values_list("event_group_id", flat=True)) == {0}
        assert not EventGroup.objects.filter(name="triaged").exists()  # (delete sets group.id to None)
    elif command == "assign_groups":
        assert set(EventBase.objects.values_list("event_group_id", flat=True)) == {group.id}
    else:
        assert assert_totals_match_buckets() == 2


def test_group_assignments_racing_captures_of_the_same_bases_all_succeed(live_server):
    # Assignments sent in any order, racing captures of the same bases: neither may reach the client as an
    # error (an assignment locks its bases in a capture's order, test_a_batch_takes_its_locks_in_...).
    from django.contrib.auth.models import Permission, User
    from rest_framework.authtoken.models import Token

    triager = User.objects.create_user("racing-triager")
    triager.user_permissions.add(Permission.objects.get(codename="change_eventbase"))
    token = Token.objects.create(user=triager).key
    group = EventGroup.objects.create(name="contended").id
    kinds = [make_event(event_name=f"Contended{b}") for b in range(12)]
    post(live_server.url + "/capture", kinds)
    base_ids = list(EventBase.objects.values_list("id", flat=True))

    def client(seed):
        shuffler = random.Random(seed)
        return [post(live_server.url + "/capture", shuffler.sample(kinds, len(kinds))) for _ in range(25)]

    def assigner(seed):
        shuffler = random.Random(seed)
        statuses = []
        for n in range(40):
            target = group if (n + seed) % 2 else 0  # every assignment moves the bases: each takes row locks
            body = [{"event_id": i, "group_id": target} for i in shuffler.sample(base_ids, len(base_ids))]
            request = urllib.request.Request(
                live_server.url + "/assign_group", data=json.dumps(body).encode(), method="POST"
            )
            request.add_header("Content-Type", "application/json")
            request.add_header("Authorization", f"Token {token}")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
        return statuses

    with ThreadPoolExecutor(8) as pool:
        assignments = [pool.submit(assigner, seed) for seed in range(2)]
        captures = [status for batch in pool.map(client, range(6)) for status in batch]
        assigned = [status for future in assignments for status in future.result()]

    assert captures == [200] * 6 * 25
    assert assigned == [200] * 2 * 40


def race_with_deletion(first, pause_before: str, group: EventGroup) -> dict:
    """Run first() in a thread until it is about to run SQL starting with `pause_before`; delete `group`
    in another thread meanwhile, then let first() go on once the deletion has finished or waits for it.
    Returns each side's result (or exception), as {"first": ..., "delete": ...}."""
    import threading
    import time

    from events.triage import delete_group

    paused, resume, outcomes = threading.Event(), threading.Event(), {}

    def pause(execute, sql, params, many, context):
        if sql.lstrip().startswith(pause_before):
            paused.set()
            resume.wait(20)
        return execute(sql, params, many, context)

    def run(name, work):
        try:
            outcomes[name] = work()
        except Exception as error:  # noqa: BLE001 - the test reports whatever either side raised
            outcomes[name] = error
        finally:
            connection.close()

    def paused_first():
        with connection.execute_wrapper(pause):
            return first()

    first_thread = threading.Thread(target=run, args=("first", paused_first))
    first_thread.start()
    assert paused.wait(20)
    deleting = threading.Thread(target=run, args=("delete", lambda: delete_group(group, None)))
    deleting.start()
    with connection.cursor() as cursor:
        waited = time.monotonic()
        while deleting.is_alive() and time.monotonic() - waited < 5:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                break
            time.sleep(0.02)
    resume.set()
    first_thread.join(30)
    deleting.join(30)
    return outcomes


def test_an_assignment_racing_the_deletion_of_its_group_leaves_no_base_in_a_deleted_group():
    # The assignment has found its group and is about to move its base when the group's deletion starts.
    # The deletion must wait for it and then move that base to group 0 as well: had it gone ahead, the
    # assignment's commit would have pointed the base at a deleted group, which PostgreSQL refuses (a 500).
    from events.services import capture_events
    from events.triage import assign_groups

    (result,) = capture_events([make_event(event_name="Contested")])
    group = EventGroup.objects.create(name="going")
    group_id = group.id  # the deletion sets the instance's id to None

    outcomes = race_with_deletion(
        lambda: assign_groups([(result.event_base_id, group_id)], None),
        "WITH moved(id, group_id)",
        group,
    )

    assert outcomes == {"first": 1, "delete": 1}
    assert EventBase.objects.get(id=result.event_base_id).event_group_id == 0
    assert not EventGroup.objects.filter(id=group_id).exists()


def test_a_rename_racing_the_deletion_of_its_group_does_not_bring_it_back():
    # The rename has read its group and is about to write the new name when the deletion starts. Django's
    # save inserts a row when its update finds none: had the deletion gone ahead, the group would be back.
    from django.contrib.auth.models import Permission, User
    from rest_framework.test import APIClient

    triager = User.objects.create_user("renaming-triager")
    triager.user_permissions.add(Permission.objects.get(codename="change_eventgroup"))
    group = EventGroup.objects.create(name="old name")
    group_id = group.id  # the deletion sets the instance's id to None
    client = APIClient()
    client.force_authenticate(triager)

    outcomes = race_with_deletion(
        lambda: client.patch(f"/groups/{group_id}", {"name": "new name"}, format="json"),
        'UPDATE "events_eventgroup"',
        group,
    )

    assert outcomes["first"].status_code == 200, outcomes["first"].content
    assert outcomes["delete"] == 0
    assert not EventGroup.objects.filter(id=group_id).exists()


def test_a_prune_keeps_the_instances_of_a_base_triaged_while_it_runs():
    # Retention keeps triaged bases with their instances. The prune has found an empty instance of an
    # untriaged base when the base is assigned to a group: the instance must stay.
    import threading
    from datetime import UTC, datetime, timedelta
    from io import StringIO

    from django.core.management import call_command

    from events.services import capture_events
    from events.triage import assign_groups

    old = (datetime.now(UTC) - timedelta(days=120)).strftime("%Y-%m-%d %H:%M:%S")
    (result,) = capture_events([make_event(event_name="Kept", timestamp=old)])
    group = EventGroup.objects.create(name="keep").id
    found, resume, outcomes = threading.Event(), threading.Event(), {}

    def pause_after_finding_instances(execute, sql, params, many, context):
        answer = execute(sql, params, many, context)
        if sql.lstrip().startswith("SELECT i.id FROM events_eventinstance i"):
            found.set()
            resume.wait(20)
        return answer

    def prune():
        try:
            with connection.execute_wrapper(pause_after_finding_instances):
                call_command("prune_events", stdout=StringIO())
            outcomes["prune"] = "done"
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            outcomes["prune"] = error
        finally:
            connection.close()

    pruning = threading.Thread(target=prune)
    pruning.start()
    assert found.wait(20)
    assert assign_groups([(result.event_base_id, group)], None) == 1
    resume.set()
    pruning.join(30)

    assert outcomes == {"prune": "done"}
    assert EventBase.objects.get(id=result.event_base_id).event_group_id == group
    assert EventInstance.objects.filter(id=result.event_instance_id).exists()
    assert not OccurrenceBucket.objects.exists()


def taking_name_first(name: str, before: str):
    """An execute wrapper that, just before this connection runs SQL starting with `before`, has another
    connection create a group called `name` (committed), as a concurrent request would."""
    import threading

    taken = threading.Event()

    def take(execute, sql, params, many, context):
        if sql.lstrip().startswith(before) and not taken.is_set():
            other = threading.Thread(target=lambda: (EventGroup.objects.create(name=name), connection.close()))
            other.start()
            other.join(20)
            taken.set()
        return execute(sql, params, many, context)

    return take


@pytest.mark.parametrize("method", ["create", "rename"])
def test_a_group_name_taken_by_a_concurrent_request_is_a_400_naming_it(method):
    # The name passed validation, then another request created a group of that name before the write: the
    # unique constraint refuses it, and the answer names the name (and, in an array, its index).
    from django.contrib.auth.models import Permission, User
    from rest_framework.test import APIClient

    triager = User.objects.create_user("naming-triager")
    triager.user_permissions.add(Permission.objects.get(codename="change_eventgroup"))
    client = APIClient()
    client.force_authenticate(triager)
    if method == "create":
        with connection.execute_wrapper(taking_name_first("checkout", 'INSERT INTO "events_eventgroup"')):
            response = client.post("/groups", [{"name": "search"}, {"name": "checkout"}], format="json")
        expected = {"1": {"name": ["An event group named 'checkout' already exists."]}}
    else:
        group = EventGroup.objects.create(name="old name")
        with connection.execute_wrapper(taking_name_first("checkout", 'UPDATE "events_eventgroup"')):
            response = client.patch(f"/groups/{group.id}", {"name": "checkout"}, format="json")
        expected = {"name": ["An event group named 'checkout' already exists."]}

    assert (response.status_code, response.json()) == (400, expected)
    assert sorted(EventGroup.objects.values_list("name", flat=True)) == sorted(
        ["default", "checkout"] + (["old name"] if method == "rename" else [])
    )
