"""The database stopped under a running server: 503s with Retry-After, nothing half-written, recovery by
itself once it is back."""

import signal
import threading
import time

import psutil
import pytest

from tests.conftest import make_event
from tests.live_stack import LiveStack, request


@pytest.fixture(scope="module")
def stack():
    with LiveStack(workers=2) as stack:
        yield stack


def total_count(stack) -> int:
    return stack.sql("SELECT COALESCE(sum(count), 0) FROM events_occurrencebucket")[0][0]


def test_a_stopped_database_gives_503_and_service_resumes_when_it_returns(stack):
    token = stack.manage("eventsum_token", "ops").strip()
    auth = {"Authorization": f"Token {token}"}
    event = make_event(timestamp="2024-05-01 12:00:00")
    for _ in range(5):
        assert request(stack.url + "/capture", event)[0] == 200

    stack.stop_database()
    try:
        for _ in range(4):  # every worker, more than once
            status, headers, body = request(stack.url + "/capture", [event, event])
            assert (status, headers.get("Retry-After")) == (503, "5"), body
            assert "database" in body["detail"].lower()
        assert request(stack.url + "/health")[0] == 503
        assert request(stack.url + "/search?service_id=1", headers=auth)[0] == 503
        assert request(stack.url + "/detail?event_id=1", headers=auth)[0] == 503
    finally:
        stack.start_database()

    stack.wait_until_healthy()
    for _ in range(3):
        assert request(stack.url + "/capture", event)[0] == 200
    assert total_count(stack) == 8  # the 503'd batches left nothing behind
    window = "start_time=2024-05-01T12:00:00Z&end_time=2024-05-01T13:00:00Z"
    status, _, body = request(f"{stack.url}/search?service_id=1&{window}", headers=auth)
    assert status == 200
    assert body["events"][0]["total_count"] == 8


def test_sigterm_lets_a_request_in_flight_finish():
    with LiveStack(workers=1, extra_env={"EVENTSUM_MAX_BODY_BYTES": str(16 * 2**20)}) as stack:
        batch = [make_event(event_name=f"Graceful{i}") for i in range(1000)]  # new bases: a second or two
        answer = {}

        def send():
            answer["status"] = request(stack.url + "/capture", batch, timeout=60)[0]
            answer["at"] = time.monotonic()

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.15)  # received and being processed; the whole capture takes about a second
        signalled_at = time.monotonic()
        stack.server.send_signal(signal.SIGTERM)
        sender.join()
        assert stack.server.wait(timeout=60) == 0  # a clean exit
        assert answer["status"] == 200
        assert answer["at"] > signalled_at  # it was still running when the signal came
        stored = stack.sql(
            "SELECT sum(o.count) FROM events_occurrencebucket o JOIN events_eventbase b ON b.id = o.event_base_id "
            "WHERE b.event_name LIKE 'Graceful%%'"
        )[0][0]
        assert stored == 1000


def test_a_killed_worker_is_replaced_and_the_other_keeps_answering():
    with LiveStack(workers=2) as stack:
        workers = psutil.Process(stack.server.pid).children()
        assert len(workers) == 2
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=10)
        # Meanwhile the other worker answers; requests that reached the dead one's queue may be refused.
        statuses = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                statuses.append(request(stack.url + "/capture", make_event(event_name="AfterKill"))[0])
            except OSError:
                statuses.append(None)
            alive = [child.pid for child in psutil.Process(stack.server.pid).children()]
            if len(alive) == 2 and workers[0].pid not in alive and statuses.count(200) >= 20:
                break
            time.sleep(0.05)
        assert len(alive) == 2 and workers[0].pid not in alive  # a new worker took the dead one's place
        assert statuses.count(200) >= 20
        assert 500 not in statuses and 502 not in statuses
        stored = stack.sql(
            "SELECT sum(o.count) FROM events_occurrencebucket o JOIN events_eventbase b ON b.id = o.event_base_id "
            "WHERE b.event_name = 'AfterKill'"
        )[0][0]
        assert stored == statuses.count(200)


def test_a_sigterm_while_a_worker_loads_stops_the_server_at_once():
    # A worker killed is replaced by a new one, which loads the application (Django's set-up) before it serves.
    # A stop in that time must end it too, not leave the server waiting out the graceful timeout to kill it.
    with LiveStack(workers=2, extra_env={"EVENTSUM_GRACEFUL_TIMEOUT": "120"}) as stack:
        server = psutil.Process(stack.server.pid)
        killed, kept = server.children()
        killed.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (replacements := [c for c in server.children() if c.pid not in (killed.pid, kept.pid)]):
            assert time.monotonic() < deadline, "no worker replaced the killed one"
            time.sleep(0.005)
        stack.server.send_signal(signal.SIGTERM)  # the replacement has only just been forked
        assert stack.server.wait(timeout=60) == 0  # well before the 120 s after which it would be killed
        assert not psutil.wait_procs([*replacements, kept], timeout=5)[1]  # no worker left behind
