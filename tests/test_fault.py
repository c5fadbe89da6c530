"""PostgreSQL killed (SIGKILL, no clean shutdown) under load: every answer during the outage is a 503,
every event answered 200 before the kill is in the database after the restart, and the service recovers
by itself."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import make_event
from tests.live_stack import LiveStack, request

CLIENTS = 8


@pytest.fixture(scope="module")
def stack():
    with LiveStack(workers=3) as stack:
        yield stack


def test_a_killed_database_gives_503s_loses_no_acknowledged_event_and_recovers(stack):
    answers = []  # (event name, status, sent at, answered at)
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            name = f"Fault{uuid.uuid4().hex}"
            event = make_event(event_name=name)
            event.pop("timestamp")
            sent = time.monotonic()
            try:
                status = request(stack.url + "/capture", event, timeout=30)[0]
            except OSError:
                status = None
            with lock:
                answers.append((name, status, sent, time.monotonic()))

    with ThreadPoolExecutor(CLIENTS) as pool:
        for _ in range(CLIENTS):
            pool.submit(client)
        time.sleep(3)
        killed_at = time.monotonic()
        stack.kill_database()
        killed_done = time.monotonic()
        time.sleep(3)
        restart_at = time.monotonic()
        stack.start_database()
        time.sleep(4)
        stop.set()

    before = [a for a in answers if a[3] < killed_at]
    outage = [a for a in answers if a[2] > killed_done and a[3] < restart_at]
    after = [a for a in answers if a[2] > restart_at + 2]
    acknowledged = [a[0] for a in answers if a[1] == 200]
    print(
        f"\nfault: {len(answers)} requests; before the kill {len(before)}, during the outage {len(outage)} "
        f"({sorted({a[1] for a in outage})}), after {len(after)}; {len(acknowledged)} acknowledged"
    )
    assert before and all(a[1] == 200 for a in before)
    assert outage and all(a[1] == 503 for a in outage)
    assert after and all(a[1] == 200 for a in after)  # recovered by itself
    assert {a[1] for a in answers} <= {200, 503}
    stored = {
        name: count
        for name, count in stack.sql(
            "SELECT b.event_name, sum(o.count) FROM events_occurrencebucket o "
            "JOIN events_eventbase b ON b.id = o.event_base_id GROUP BY 1"
        )
    }
    assert all(stored.get(name) == 1 for name in acknowledged)  # nothing acknowledged was lost
