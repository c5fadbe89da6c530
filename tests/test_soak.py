"""Soak: 16 clients for about 40 seconds, single events and arrays, new and repeated, while triage and
retention run at the same time, against the production server on a private PostgreSQL. Afterwards every count equals
what the clients were told was stored, and there was no 5xx, deadlock or lost row."""

import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import make_event
from tests.live_stack import LiveStack, request

CLIENTS = 16
SECONDS = 40
REPEATED = [make_event(event_name=f"Repeated{i}", lineno=i % 3, timestamp=None) for i in range(20)]


def fresh(event: dict) -> dict:
    event = dict(event)
    event.pop("timestamp", None)  # receive time: inside retention
    return event


@pytest.fixture(scope="module")
def stack():
    with LiveStack(workers=4) as stack:
        yield stack


def test_soak_counts_are_exact_under_mixed_load_with_triage_and_prune(stack):
    old = (datetime.now(UTC) - timedelta(days=200)).strftime("%Y-%m-%d %H:%M:%S")
    assert (
        request(stack.url + "/capture", [make_event(event_name=f"Old{i}", timestamp=old) for i in range(30)])[0] == 200
    )
    token = stack.manage("eventsum_token", "soak-triager", "--triager").strip()
    auth = {"Authorization": f"Token {token}"}
    deadline = time.monotonic() + SECONDS
    stored = Counter()
    statuses = Counter()
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            if rng.random() < 0.3:
                batch = [fresh(rng.choice(REPEATED)) for _ in range(rng.randint(2, 20))]
                batch += [make_event(event_name=f"New{uuid.uuid4().hex[:12]}") for _ in range(rng.randint(0, 3))]
                for event in batch:
                    event.pop("timestamp", None)
                body = batch
            elif rng.random() < 0.5:
                body = fresh(rng.choice(REPEATED))
            else:
                body = make_event(event_name=f"New{uuid.uuid4().hex[:12]}")
                body.pop("timestamp")
            status = request(stack.url + "/capture", body, timeout=30)[0]
            events = body if isinstance(body, list) else [body]
            with lock:
                statuses[status] += 1
                if status == 200:
                    stored.update(event["event_name"] for event in events)

    def triage() -> None:
        rng = random.Random(7)
        groups = []
        while time.monotonic() < deadline:
            status, _, group = request(stack.url + "/groups", {"name": f"g-{uuid.uuid4().hex[:8]}"}, headers=auth)
            with lock:
                statuses[status] += 1
            if status == 201:
                groups.append(group["id"])
            # Not the old bases: prune may delete them meanwhile, and assigning a deleted base is a 400.
            bases = [
                row[0]
                for row in stack.sql(
                    "SELECT id FROM events_eventbase WHERE event_name NOT LIKE 'Old%%' ORDER BY random() LIMIT 30"
                )
            ]
            if bases and groups:
                body = [{"event_id": base, "group_id": rng.choice(groups + [0])} for base in bases]
                with lock:
                    statuses[request(stack.url + "/assign_group", body, headers=auth)[0]] += 1
            time.sleep(0.2)

    def prune() -> None:
        while time.monotonic() < deadline:
            stack.manage("prune_events", "--batch-size", "10")
            time.sleep(2)

    with ThreadPoolExecutor(CLIENTS + 2) as pool:
        futures = [pool.submit(client, seed) for seed in range(CLIENTS)]
        futures += [pool.submit(triage), pool.submit(prune)]
        for future in futures:
            future.result()  # re-raises a client's failure

    counted = dict(
        stack.sql(
            "SELECT b.event_name, sum(o.count) FROM events_occurrencebucket o "
            "JOIN events_eventbase b ON b.id = o.event_base_id GROUP BY b.event_name"
        )
    )
    print(f"\nsoak: {sum(statuses.values())} requests {dict(statuses)}, {sum(stored.values())} events stored")
    assert set(statuses) <= {200, 201}, statuses
    assert not [name for name in counted if name.startswith("Old")]  # pruned meanwhile
    assert {name: count for name, count in counted.items() if not name.startswith("Old")} == dict(stored)
    duplicates = stack.sql(
        "SELECT count(*) FROM (SELECT service_id, environment_id, event_type, event_name, processed_data_hash "
        "FROM events_eventbase GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1) d"
    )[0][0]
    assert duplicates == 0
    # The running totals stayed exact through captures racing the prune (old events included).
    off_totals = stack.sql(
        "SELECT (SELECT count(*) FROM events_eventinstance i WHERE i.total_count <> COALESCE("
        "    (SELECT sum(count) FROM events_occurrencebucket o WHERE o.event_instance_id = i.id), 0)), "
        "(SELECT count(*) FROM events_eventbase b WHERE b.total_count <> COALESCE("
        "    (SELECT sum(count) FROM events_occurrencebucket o WHERE o.event_base_id = b.id), 0))"
    )[0]
    assert off_totals == (0, 0)
