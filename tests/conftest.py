"""Shared actors and factories. Everything runs on real PostgreSQL through Django's test client."""

import copy
import json
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission, User
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.http import HttpResponse
from django.test import Client
from django.test.client import ClientHandler
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from events.capture import capture_application, takes
from events.services import clear_id_caches, forget_stored_rows

# The user's example request, verbatim from their endpoint document.
EXAMPLE_EVENT = {
    "extra_args": {},
    "event_type": "python",
    "service": "WISH FE",
    "event_name": "ZeroDivisionError",
    "environment": "PROD",
    "timestamp": "2017-12-13 21:23:10",
    "configurable_filters": {
        "instance": ["exception_python_process_stack_vars"],
        "base": ["exception_python_remove_line_no", "exception_python_remove_stack_vars"],
        "extra_args": [],
    },
    "event_data": {
        "raw_data": {
            "frames": [
                {
                    "function": "<module>",
                    "abs_path": "/home/jwen/ContextLogic/test/server.py",
                    "pre_context": [
                        "def func4(a):",
                        "    return func3(a)",
                        "",
                        "if __name__ == '__main__':",
                        "    try:",
                    ],
                    "post_context": [
                        "    except Exception as e:",
                        "        exc_typ, exc_value, tb = sys.exc_info()",
                        "        data = {}",
                        "        data['timestamp'] = datetime.utcnow().strftime(\"%Y-%m-%d %H:%M:%S\")",
                        "        data['service'] = 'WISH FE'",
                    ],
                    "module": "__main__",
                    "filename": "test/server.py",
                    "lineno": 21,
                    "context_line": "        print func4(3)",
                },
                {
                    "function": "func4",
                    "abs_path": "/home/jwen/ContextLogic/test/server.py",
                    "pre_context": ["", "def func3(a):", "    return func2(a)", "", "def func4(a):"],
                    "post_context": [
                        "",
                        "if __name__ == '__main__':",
                        "    try:",
                        "        print func4(3)",
                        "    except Exception as e:",
                    ],
                    "module": "__main__",
                    "filename": "test/server.py",
                    "lineno": 17,
                    "context_line": "    return func3(a)",
                },
            ]
        },
        "message": "integer division or modulo by zero",
    },
    "configurable_groupings": [],
}


# The time of the events a test makes without one: the test's start, so that occurrences it expects in one
# bucket are, even when the clock turns a minute (bucket) in the milliseconds between two of them.
_moment = None


@pytest.fixture(autouse=True)
def _one_moment_per_test():
    global _moment
    _moment = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    yield
    _moment = None


def make_event(**changes) -> dict:
    """The example event with top-level fields replaced; `lineno`, `vars` and `message` reach into event_data."""
    event = copy.deepcopy(EXAMPLE_EVENT)
    event["timestamp"] = changes.pop("timestamp", _moment or datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"))
    if "lineno" in changes:
        event["event_data"]["raw_data"]["frames"][1]["lineno"] = changes.pop("lineno")
    if "vars" in changes:
        event["event_data"]["raw_data"]["frames"][1]["vars"] = changes.pop("vars")
    if "message" in changes:
        event["event_data"]["message"] = changes.pop("message")
    event.update(changes)
    return event


def assert_totals_match_buckets() -> int:
    """Every instance's and base's running total_count equals what its buckets hold, summed here in Python, and
    an instance with buckets that hold grouping counters says so (has_counters); returns how many instances
    were checked."""
    from events.models import EventBase, EventInstance, OccurrenceBucket

    counts, counted, base_counts = {}, set(), {}
    for instance_id, base_id, count, counters in OccurrenceBucket.objects.values_list(
        "event_instance_id", "event_base_id", "count", "counters"
    ):
        counts[instance_id] = counts.get(instance_id, 0) + count
        base_counts[base_id] = base_counts.get(base_id, 0) + count
        if counters:
            counted.add(instance_id)
    instances = list(EventInstance.objects.values_list("id", "total_count", "has_counters"))
    for instance_id, total, has_counters in instances:
        assert total == counts.get(instance_id, 0), instance_id
        assert has_counters or instance_id not in counted, instance_id
    for base_id, total in EventBase.objects.values_list("id", "total_count"):
        assert total == base_counts.get(base_id, 0), base_id
    return len(instances)


def post_json(client, path: str, data, **extra):
    return client.post(path, data=json.dumps(data), content_type="application/json", **extra)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness costs most of a second per test user; tests don't need it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    # Service and environment ids, and which rows were written, are remembered per process; each test
    # starts on an emptied database.
    clear_id_caches()
    forget_stored_rows()
    yield
    clear_id_caches()
    forget_stored_rows()


class ProductionEntryHandler(ClientHandler):
    """Django's test handler, except for the requests the production entry point answers without Django
    (POST /capture, eventsum_project.wsgi): those get events.capture's WSGI application, as under the server."""

    def __call__(self, environ):
        if not takes(environ):
            return super().__call__(environ)
        started = {}

        def start_response(status, headers):
            started.update(status=status, headers=headers)

        # As Django's test handler does: the test's connection, and its transaction, stay open.
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            body = b"".join(capture_application(environ, start_response))
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        response = HttpResponse(body, status=int(started["status"][:3]), headers=dict(started["headers"]))
        response.wsgi_request = WSGIRequest(environ)
        return response


@pytest.fixture
def client():
    """Django's test client, with POST /capture answered as the production server answers it."""
    client = Client()
    client.handler = ProductionEntryHandler(enforce_csrf_checks=False)
    return client


@pytest.fixture
def anonymous():
    """DRF's test client: every request through Django, POST /capture through CaptureView."""
    return APIClient()


def _user_client(username: str, *permissions: str, **flags) -> tuple[APIClient, User]:
    user = User.objects.create_user(username=username, password="pw-" + username, **flags)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = APIClient()
    token = Token.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client, user


@pytest.fixture
def reader(db):
    return _user_client("reader")[0]


@pytest.fixture
def triager(db):
    return _user_client("triager", "change_eventbase")[0]


@pytest.fixture
def superuser(db):
    return _user_client("root", is_staff=True, is_superuser=True)[0]


@pytest.fixture
def capture(client, db):
    """Post one event (or a list) to /capture and return the decoded answer, asserting 200."""

    def send(event):
        response = post_json(client, "/capture", event)
        assert response.status_code == 200, response.content
        return response.json()

    return send


def pytest_terminal_summary(terminalreporter):
    import sys

    from tests.test_admin_browser import SCREENSHOTS

    if SCREENSHOTS.exists():
        terminalreporter.write_line(f"browser screenshots: {SCREENSHOTS}")
    fuzz = sys.modules.get("tests.test_schema_fuzz")
    if fuzz is not None and fuzz.FUZZED:
        terminalreporter.write_line(f"schema fuzzing: {sum(fuzz.FUZZED.values())} requests {fuzz.FUZZED}")
