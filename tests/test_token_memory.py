"""Each process remembers the tokens it authenticated; a change made anywhere must still take effect on the
next request. These tests commit (the notifications that carry changes are sent on commit), and make the
changes on a connection of their own, as another process would: no signal of this process hears them."""

import select
from time import monotonic

import psycopg2
import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from tests.conftest import _user_client

pytestmark = pytest.mark.django_db(transaction=True)


def elsewhere(sql: str, params=()) -> None:
    """Runs and commits SQL on a separate connection, then waits until this process's connection has been
    sent what the change notified (as a next request would find it)."""
    other = psycopg2.connect(**connection.get_connection_params())
    try:
        with other, other.cursor() as cursor:
            cursor.execute(sql, params)
    finally:
        other.close()
    readable, _, _ = select.select([connection.connection], [], [], 5)
    assert readable, "no notification reached this process's connection"


def token_lookups(queries) -> int:
    return sum("eventsum_token" in query["sql"] for query in queries)


def test_a_token_is_looked_up_once_and_then_remembered():
    client, _ = _user_client("reader")
    with CaptureQueriesContext(connection) as first:
        assert client.get("/services").status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert client.get("/services").status_code == 200
    assert token_lookups(first.captured_queries) >= 1
    assert token_lookups(second.captured_queries) == 0


def test_a_row_read_while_another_thread_emptied_the_memory_is_not_remembered(monkeypatch):
    from events import authentication

    client, _ = _user_client("reader")
    read = authentication._read_token_row

    def read_meanwhile_forgotten(statement, key):
        row = read(statement, key)
        authentication.forget_tokens()  # as another thread hearing of a change while this one read
        return row

    monkeypatch.setattr(authentication, "_read_token_row", read_meanwhile_forgotten)
    assert client.get("/services").status_code == 200
    monkeypatch.setattr(authentication, "_read_token_row", read)
    with CaptureQueriesContext(connection) as second:
        assert client.get("/services").status_code == 200
    assert token_lookups(second.captured_queries) == 1  # read again: the first read may have been stale


def test_a_token_deleted_by_another_process_is_refused_on_the_next_request():
    client, user = _user_client("reader")
    assert client.get("/services").status_code == 200
    elsewhere("DELETE FROM authtoken_token WHERE user_id = %s", [user.id])
    assert client.get("/services").status_code == 401


def test_a_user_deactivated_by_another_process_is_refused_on_the_next_request():
    client, user = _user_client("reader")
    assert client.get("/services").status_code == 200
    elsewhere("UPDATE auth_user SET is_active = false WHERE id = %s", [user.id])
    response = client.get("/services")
    assert response.status_code == 401
    assert "inactive" in response.json()["detail"]


def test_a_superuser_demoted_by_another_process_loses_triage_on_the_next_request():
    client, user = _user_client("boss", is_staff=True, is_superuser=True)
    assert client.post("/groups", {"name": "first"}, format="json").status_code == 201
    elsewhere("UPDATE auth_user SET is_superuser = false WHERE id = %s", [user.id])
    assert client.post("/groups", {"name": "second"}, format="json").status_code == 403


def test_a_permission_taken_away_by_another_process_is_not_remembered():
    client, user = _user_client("triager", "change_eventbase")
    assert client.post("/assign_group", {"event_id": 999, "group_id": 0}, format="json").status_code == 400
    other = psycopg2.connect(**connection.get_connection_params())
    try:
        with other, other.cursor() as cursor:
            cursor.execute("DELETE FROM auth_user_user_permissions WHERE user_id = %s", [user.id])
    finally:
        other.close()
    # no notification for this one: permissions are read afresh for every request
    assert client.post("/assign_group", {"event_id": 999, "group_id": 0}, format="json").status_code == 403


def test_a_token_deleted_through_the_orm_here_is_refused_at_once():
    client, user = _user_client("reader")
    assert client.get("/services").status_code == 200
    Token.objects.filter(user=user).delete()
    assert client.get("/services").status_code == 401


def test_a_remembered_token_is_trusted_for_a_minute_at_most(monkeypatch):
    from events import authentication

    client, user = _user_client("reader")
    assert client.get("/services").status_code == 200
    # A change nobody was told about (as through a pooler that drops notifications):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE authtoken_token DISABLE TRIGGER eventsum_token_changed")
        try:
            cursor.execute("DELETE FROM authtoken_token WHERE user_id = %s", [user.id])
        finally:
            cursor.execute("ALTER TABLE authtoken_token ENABLE TRIGGER eventsum_token_changed")
    assert client.get("/services").status_code == 200  # still remembered
    later = monotonic() + authentication.TRUSTED_SECONDS
    monkeypatch.setattr(authentication, "monotonic", lambda: later)
    assert client.get("/services").status_code == 401


def test_the_health_check_keeps_a_connection_that_was_only_sent_notifications():
    wrapper = connections.create_connection("default")
    try:
        wrapper.ensure_connection()
        with wrapper.cursor() as cursor:
            cursor.execute("LISTEN eventsum_auth")
        pid = wrapper.connection.get_backend_pid()
        with connection.cursor() as cursor:
            cursor.execute("NOTIFY eventsum_auth")
        readable, _, _ = select.select([wrapper.connection], [], [], 5)
        assert readable
        wrapper.health_check_done = False  # as at the start of a request
        wrapper.close_if_health_check_failed()
        assert wrapper.connection is not None and wrapper.connection.get_backend_pid() == pid
        assert [notify.channel for notify in wrapper.connection.notifies] == ["eventsum_auth"]
    finally:
        wrapper.close()
