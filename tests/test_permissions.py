"""SPEC section 4: who may do what, through tokens and sessions."""

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from tests.conftest import make_event

pytestmark = pytest.mark.django_db

READS = ["/search?service_id=1", "/detail?event_id=1", "/groups", "/groups/0", "/services", "/environments"]


@pytest.mark.parametrize("path", READS)
def test_reads_need_credentials(anonymous, path):
    response = anonymous.get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert "credentials" in response.json()["detail"]


@pytest.mark.parametrize("path", READS)
def test_reads_are_open_with_public_read(anonymous, settings, path):
    settings.EVENTSUM_PUBLIC_READ = True
    assert anonymous.get(path).status_code in (200, 404)


def test_public_read_does_not_open_triage(anonymous, settings):
    settings.EVENTSUM_PUBLIC_READ = True
    assert anonymous.post("/groups", {"name": "x"}, format="json").status_code == 401


@pytest.mark.parametrize("key", ["0123456789abcdef", "bad\x00key"])
def test_a_bad_token_is_a_401(anonymous, key):
    anonymous.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = anonymous.get("/services")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_the_token_of_a_deactivated_user_is_a_401_at_once(reader):
    assert reader.get("/services").status_code == 200
    User.objects.filter(username="reader").update(is_active=False)
    response = reader.get("/services")
    assert response.status_code == 401
    assert response.json() == {"detail": "User inactive or deleted."}


def test_a_deleted_token_is_a_401_at_once(reader):
    from rest_framework.authtoken.models import Token

    assert reader.get("/services").status_code == 200
    Token.objects.filter(user__username="reader").delete()
    assert reader.get("/services").status_code == 401


TRIAGE = [
    ("post", "/assign_group", {"event_id": 1, "group_id": 0}),
    ("post", "/groups", {"name": "new"}),
    ("patch", "/groups/0", {"name": "default"}),
    ("delete", "/groups/0", None),
]


@pytest.mark.parametrize(("method", "path", "body"), TRIAGE)
def test_triage_is_a_401_without_credentials(anonymous, method, path, body):
    assert getattr(anonymous, method)(path, body, format="json").status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), TRIAGE)
def test_triage_is_a_403_for_a_reader(reader, method, path, body):
    response = getattr(reader, method)(path, body, format="json")
    assert response.status_code == 403
    assert "permission" in response.json()["detail"]


@pytest.mark.parametrize("codename", ["change_eventbase", "change_eventgroup"])
def test_either_change_permission_allows_triage(codename, capture):
    base_id = capture(make_event())["event_base_id"]
    user = User.objects.create_user("t-" + codename)
    user.user_permissions.add(Permission.objects.get(codename=codename))
    client = APIClient()
    client.force_authenticate(user)
    assert client.post("/assign_group", {"event_id": base_id, "group_id": 0}, format="json").status_code == 200
    assert client.post("/groups", {"name": "by-" + codename}, format="json").status_code == 201


def test_session_authentication_reads_and_enforces_csrf_on_writes(db):
    User.objects.create_superuser("admin", password="secret-pw")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="admin", password="secret-pw")
    assert client.get("/services").status_code == 200
    response = client.post("/groups", {"name": "no-csrf"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


@pytest.mark.parametrize(("path", "status"), [("/services", 401), ("/admin/", 302)])
def test_a_session_cookie_no_session_could_have_is_no_session(db, path, status):
    # The client sends it quoted with the NUL as "\000", which Django's cookie parser turns back into a NUL.
    User.objects.create_superuser("admin", password="secret-pw")
    client = APIClient()
    client.cookies["sessionid"] = "\x00abcdefgh"
    assert client.get(path).status_code == status
    assert client.login(username="admin", password="secret-pw")  # and a real session still works
    assert client.get(path.replace("/admin/", "/admin/events/")).status_code == 200


def test_capture_ignores_sessions_and_needs_no_csrf(db):
    User.objects.create_superuser("admin", password="secret-pw")
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="admin", password="secret-pw")
    assert client.post("/capture", make_event(), format="json").status_code == 200


def test_the_schema_describes_every_endpoint(anonymous):
    response = anonymous.get("/schema")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    schema = response.json()
    assert set(schema["paths"]) >= {
        "/capture",
        "/search",
        "/detail",
        "/assign_group",
        "/groups",
        "/groups/{id}",
        "/services",
        "/environments",
    }
    search_parameters = {p["name"] for p in schema["paths"]["/search"]["get"]["parameters"]}
    assert search_parameters >= {
        "service_id",
        "start_time",
        "end_time",
        "hash",
        "group_id",
        "env_id",
        "limit",
        "sort",
        "keywords",
    }


def test_unknown_paths_answer_json_not_html(anonymous):
    response = anonymous.get("/no/such/page")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
