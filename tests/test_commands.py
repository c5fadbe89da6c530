import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def run_token_command(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("eventsum_token", *args, stdout=out)
    return out.getvalue().strip()


def test_eventsum_token_gives_a_reader_a_working_token():
    key = run_token_command("dashboard")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/services").status_code == 200
    assert client.post("/groups", {"name": "x"}, format="json").status_code == 403
    assert run_token_command("dashboard") == key
    assert not User.objects.get(username="dashboard").has_usable_password()


def test_eventsum_token_triager_may_triage_and_reset_replaces_the_key():
    key = run_token_command("alice", "--triager")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.post("/groups", {"name": "x"}, format="json").status_code == 201
    new_key = run_token_command("alice", "--reset")
    assert new_key != key
    assert client.get("/services").status_code == 401
