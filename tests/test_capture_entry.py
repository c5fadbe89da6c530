"""POST /capture has two ways in: the production server's entry point hands it to events.capture's WSGI
application, past Django; Django routes it to CaptureView. Both must give the same answer, headers, log
line and metric, and keep the database connection as Django's handler does."""

import io
import json
import logging
import re
import time

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import connection, connections

from events import capture
from events.capture import capture_application, takes
from events.models import OccurrenceBucket
from eventsum_project.postgresql.base import _has_unread_input
from tests.conftest import make_event

pytestmark = pytest.mark.django_db(transaction=True)  # both ways run Django's request signals for real


def environ_for(body: bytes, path="/capture", method="POST", **extra) -> dict:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    environ.update(extra)
    return environ


def call(application, environ) -> tuple[int, dict, bytes]:
    started = {}

    def start_response(status, headers, exc_info=None):
        started.update(status=status, headers=headers)

    chunks = application(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()  # Django's response sends request_finished here
    names = [name.lower() for name, _ in started["headers"]]
    assert len(names) == len(set(names)), started["headers"]  # no header twice
    return int(started["status"][:3]), {name.lower(): value for name, value in started["headers"]}, body


def both_ways(body: bytes, **extra) -> tuple[tuple, tuple]:
    """(Django's answer, capture_application's answer) to the same request, Django's first."""
    django = call(WSGIHandler(), environ_for(body, **extra))
    direct_environ = environ_for(body, **extra)
    assert takes(direct_environ)
    return django, call(capture_application, direct_environ)


def same_answer(django, direct, *, normalize=lambda body: body):
    assert direct[0] == django[0], (direct, django)
    assert normalize(direct[2]) == normalize(django[2])
    assert direct[1] == django[1]


def as_json(event) -> bytes:
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (as_json(make_event()), 200),
        (as_json([make_event(), make_event(event_name="Other")]), 200),
        (b"{broken", 400),
        (b"", 400),
        (b"   \n", 400),
        (b"5", 400),
        (b"[]", 400),
        (b"\xff\xfe", 400),
        (as_json(make_event(event_name="")), 400),
        (as_json([make_event(), make_event(service=None)]), 400),
    ],
)
def test_both_ways_give_the_same_answer_and_headers(body, status):
    django, direct = both_ways(body)
    assert django[0] == status, django
    same_answer(django, direct)


def test_both_ways_agree_on_the_slash_a_query_string_and_a_secure_request():
    for extra in ({"PATH_INFO": "/capture/"}, {"QUERY_STRING": "x=1"}, {"wsgi.url_scheme": "https"}):
        django, direct = both_ways(as_json(make_event()), **extra)
        assert django[0] == 200
        same_answer(django, direct)
    assert OccurrenceBucket.objects.get().count == 6


def test_both_ways_refuse_a_body_over_the_limit_and_a_missing_or_wrong_ingest_key(settings):
    settings.EVENTSUM_MAX_BODY_BYTES = 100
    django, direct = both_ways(as_json(make_event()))
    assert django[0] == 413
    same_answer(django, direct)

    settings.EVENTSUM_MAX_BODY_BYTES = 10**6
    settings.EVENTSUM_INGEST_KEYS = ["right"]
    for key in ({}, {"HTTP_X_EVENTSUM_KEY": "wrong"}):
        django, direct = both_ways(as_json(make_event()), **key)
        assert django[0] == 401
        same_answer(django, direct)
    django, direct = both_ways(as_json(make_event()), HTTP_X_EVENTSUM_KEY="right")
    assert django[0] == 200
    same_answer(django, direct)


def test_both_ways_refuse_a_compressed_body_naming_its_encoding_and_accept_identity():
    import gzip

    django, direct = both_ways(gzip.compress(as_json(make_event())), HTTP_CONTENT_ENCODING="gzip")
    assert django[0] == 415
    assert b"Content-Encoding 'gzip' is not supported" in django[2]
    same_answer(django, direct)
    django, direct = both_ways(as_json(make_event()), HTTP_CONTENT_ENCODING="identity")
    assert django[0] == 200
    same_answer(django, direct)


def test_both_ways_refuse_an_unknown_service_and_a_throttled_one(settings):
    settings.EVENTSUM_AUTO_CREATE = False
    django, direct = both_ways(as_json(make_event(service="nobody")))
    assert django[0] == 400
    same_answer(django, direct)

    settings.EVENTSUM_AUTO_CREATE = True
    settings.EVENTSUM_RATE_LIMIT = 1
    assert call(capture_application, environ_for(as_json(make_event())))[0] == 200
    django, direct = both_ways(as_json(make_event()))
    assert django[0] == 429

    # the wait, in the detail and in Retry-After, can tick between the two
    def without_wait(body):
        return re.sub(rb"\d+ seconds?", b"N seconds", body)

    assert abs(int(direct[1].pop("retry-after")) - int(django[1].pop("retry-after"))) <= 1
    same_answer(django, direct, normalize=without_wait)


def test_an_unexpected_error_is_a_logged_json_500_both_ways(monkeypatch, caplog):
    def broken(payloads):
        raise RuntimeError("a bug")

    monkeypatch.setattr(capture, "capture_events", broken)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        django, direct = both_ways(as_json(make_event()))
    assert django[0] == 500
    same_answer(django, direct)
    errors = [record for record in caplog.records if record.name == "django.request"]
    assert len(errors) == 2 and all(record.exc_info[0] is RuntimeError for record in errors)


def test_other_methods_paths_and_refused_hosts_are_left_to_django(settings):
    assert not takes(environ_for(b"", method="GET"))
    assert not takes(environ_for(b"", path="/capturex"))
    assert not takes(environ_for(b"", path="/search"))
    settings.SECURE_HSTS_SECONDS = 3600
    assert not takes(environ_for(b""))  # SecurityMiddleware decides that one
    settings.SECURE_HSTS_SECONDS = 0
    settings.ALLOWED_HOSTS = ["events.example.com"]
    assert takes(environ_for(b"", HTTP_HOST="events.example.com"))
    assert not takes(environ_for(b"", HTTP_HOST="evil.example.com"))
    status, _, body = call(WSGIHandler(), environ_for(b"{}", HTTP_HOST="evil.example.com"))
    assert (status, json.loads(body)) == (
        400,
        {"detail": "This server does not answer to the host 'evil.example.com'."},
    )


def test_each_request_is_logged_and_timed_as_through_django(caplog):
    from events.observability import REQUEST_LATENCY

    def timed() -> float:
        return REQUEST_LATENCY.labels("capture", "POST")._sum.get()

    before = timed()
    with caplog.at_level(logging.INFO, logger="eventsum.request"):
        both_ways(b"{broken", QUERY_STRING="v=2")
    lines = [record for record in caplog.records if record.name == "eventsum.request"]
    assert len(lines) == 2
    for record in lines:
        assert record.getMessage().startswith("POST /capture?v=2 400 ")
        assert (record.method, record.path, record.status, record.endpoint) == ("POST", "/capture", 400, "capture")
    assert timed() > before


def test_each_request_sends_djangos_request_signals():
    sent = []

    def started(**kwargs):
        sent.append("started")

    def finished(**kwargs):
        sent.append("finished")

    request_started.connect(started)
    request_finished.connect(finished)
    try:
        call(capture_application, environ_for(as_json(make_event())))
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
    assert sent == ["started", "finished"]


def test_a_connection_the_database_dropped_is_replaced_before_the_capture():
    connection.ensure_connection()
    pid = connection.connection.get_backend_pid()
    killer = connections.create_connection("default")
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        killer.close()
    deadline = time.monotonic() + 10
    while not _has_unread_input(connection.connection.fileno()) and time.monotonic() < deadline:
        time.sleep(0.05)

    status, _, body = call(capture_application, environ_for(as_json(make_event())))
    assert status == 200, body
    assert connection.connection.get_backend_pid() != pid
