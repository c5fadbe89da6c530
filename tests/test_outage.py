"""The database stopped under a running server: 503s with Retry-After, nothing half-written, recovery by
itself once it is back."""

import pytest

from tests.conftest import make_event
from tests.live_stack import LiveStack, request


@pytest.fixture(scope="module")
def stack():
    stack = LiveStack(workers=2)
    yield stack
    stack.close()


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
