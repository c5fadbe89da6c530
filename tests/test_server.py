"""The production server itself (eventsum_project/serve.py), on a private PostgreSQL: what the Django test
client can't show."""

import http.client
import json
import time

import pytest

from tests.conftest import make_event
from tests.live_stack import LiveStack, request


@pytest.fixture(scope="module")
def stack():
    with LiveStack(workers=1, extra_env={"EVENTSUM_MAX_BODY_BYTES": "20000"}) as stack:
        yield stack


def post_chunked(stack, pieces: list[bytes], path: str = "/capture", headers=None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        connection.request(
            "POST",
            path,
            body=iter(pieces),
            headers={"Content-Type": "application/json", **(headers or {})},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert response.getheader("Content-Length") is not None  # answered, not cut off
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_chunked_body_is_read_whole(stack):
    body = json.dumps([make_event(event_name="Chunked"), make_event(event_name="Chunked")]).encode()
    status, answer = post_chunked(stack, [body[:100], body[100:2000], body[2000:]])
    assert status == 200, answer
    assert len(answer["results"]) == 2
    stored = stack.sql(
        "SELECT sum(o.count) FROM events_occurrencebucket o JOIN events_eventbase b ON b.id = o.event_base_id "
        "WHERE b.event_name = 'Chunked'"
    )[0][0]
    assert stored == 2


def test_a_chunked_body_over_the_limit_is_a_413(stack):
    event = json.dumps(make_event(event_name="ChunkedBig", extra_args={"blob": "x" * 30000})).encode()
    status, answer = post_chunked(stack, [event[:10000], event[10000:]])
    assert status == 413
    assert "EVENTSUM_MAX_BODY_BYTES=20000" in answer["detail"]
    assert stack.sql("SELECT count(*) FROM events_eventbase WHERE event_name = 'ChunkedBig'")[0][0] == 0


def test_a_chunked_body_reaches_the_other_endpoints_too(stack):
    token = stack.manage("eventsum_token", "chunked-triager", "--triager").strip()
    body = json.dumps({"name": "chunked group"}).encode()
    status, answer = post_chunked(stack, [body[:5], body[5:]], "/groups", {"Authorization": f"Token {token}"})
    assert status == 201, answer
    assert answer["name"] == "chunked group"


def test_an_empty_chunked_body_is_a_400_saying_so(stack):
    status, answer = post_chunked(stack, [])
    assert status == 400
    assert "body is empty" in answer["detail"]


def test_connections_are_kept_alive_between_requests(stack):
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        for _ in range(3):
            connection.request("GET", "/health")
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
        assert connection.sock is not None  # the same socket answered all three
    finally:
        connection.close()


def test_the_wsgi_module_loads_every_view_then_freezes_what_start_up_made():
    import subprocess
    import sys

    from tests.live_stack import ROOT

    probe = "import gc, sys, eventsum_project.wsgi; print(gc.get_freeze_count(), 'events.views' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    frozen, views_loaded = result.stdout.split()
    assert int(frozen) > 10_000 and views_loaded == "True", result.stderr


def test_a_token_revoked_elsewhere_is_refused_by_the_worker_that_remembered_it(stack):
    token = stack.manage("eventsum_token", "revoked-reader").strip()
    url, headers = f"http://127.0.0.1:{stack.port}/services", {"Authorization": f"Token {token}"}
    assert request(url, headers=headers)[0] == 200
    assert request(url, headers=headers)[0] == 200  # the one worker now remembers the token
    assert stack.sql("DELETE FROM authtoken_token WHERE key = %s RETURNING key", [token]) == [(token,)]
    time.sleep(0.2)  # the notification is on its way to the worker's connection
    status, _, answer = request(url, headers=headers)
    assert status == 401, answer
