"""SPEC section 4 as a matrix: anonymous, a reader, a triager and a superuser against every endpoint and
admin page. Error bodies never carry a traceback, SQL or a setting's value."""

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from events.models import EventGroup
from events.services import capture_events
from tests.conftest import make_event

pytestmark = pytest.mark.django_db

ACTORS = ["anonymous", "reader", "triager", "superuser"]


@pytest.fixture
def world(db):
    (result,) = capture_events([make_event()])
    clients = {"anonymous": APIClient()}
    for name, permissions, flags in [
        ("reader", [], {}),
        ("triager", ["change_eventbase"], {}),
        ("superuser", [], {"is_staff": True, "is_superuser": True}),
    ]:
        user = User.objects.create_user(name, password="pw", **flags)
        user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
        client = APIClient()
        client.force_authenticate(user)
        clients[name] = client
    return {"clients": clients, "base": result.event_base_id, "instance": result.event_instance_id}


def group_id(world) -> int:
    return EventGroup.objects.create(name=f"g{EventGroup.objects.count()}").id


# (method, path or path builder, body builder, expected status for anonymous, reader, triager, superuser)
MATRIX = [
    ("get", "/search?service={service}", None, (401, 200, 200, 200)),
    ("get", "/detail?event_id={instance}", None, (401, 200, 200, 200)),
    ("get", "/groups", None, (401, 200, 200, 200)),
    ("get", "/groups/0", None, (401, 200, 200, 200)),
    ("get", "/services", None, (401, 200, 200, 200)),
    ("get", "/environments", None, (401, 200, 200, 200)),
    ("post", "/assign_group", lambda w: {"event_id": w["base"], "group_id": 0}, (401, 403, 200, 200)),
    ("post", "/groups", lambda w: {"name": f"new-{EventGroup.objects.count()}"}, (401, 403, 201, 201)),
    ("patch", "/groups/{group}", lambda w: {"name": f"renamed-{EventGroup.objects.count()}"}, (401, 403, 200, 200)),
    ("delete", "/groups/{group}", None, (401, 403, 204, 204)),
    ("post", "/capture", lambda w: make_event(), (200, 200, 200, 200)),
    ("get", "/health", None, (200, 200, 200, 200)),
    ("get", "/metrics", None, (200, 200, 200, 200)),
    ("get", "/schema", None, (200, 200, 200, 200)),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
@pytest.mark.parametrize("actor", ACTORS)
def test_api_permission_matrix(world, actor, method, path, body, expected):
    url = path.format(service="wish_fe", instance=world["instance"], group=group_id(world) if "{group}" in path else "")
    response = getattr(world["clients"][actor], method)(url, body(world) if body else None, format="json")
    assert response.status_code == expected[ACTORS.index(actor)], response.content
    assert_no_leak(response)


@pytest.mark.parametrize("path", ["/admin/", "/admin/events/eventbase/", "/admin/events/eventgroup/"])
@pytest.mark.parametrize(
    ("actor", "flags", "expected"),
    [
        ("anonymous", None, 302),
        ("reader", {}, 302),
        ("triager", {"perm": "change_eventbase"}, 302),  # triage through the API; the admin is for staff
        ("staff-triager", {"is_staff": True, "perm": "change_eventbase"}, 200),
        ("superuser", {"is_staff": True, "is_superuser": True}, 200),
    ],
)
def test_admin_permission_matrix(client, path, actor, flags, expected):
    if flags is not None:
        flags = dict(flags)
        permission = flags.pop("perm", None)
        user = User.objects.create_user(actor, password="pw", **flags)
        if permission:
            user.user_permissions.add(*Permission.objects.filter(codename__in=[permission, "view_eventgroup"]))
        client.force_login(user)
    response = client.get(path)
    if path == "/admin/events/eventgroup/" and actor == "staff-triager":
        expected = 200  # view_eventgroup granted above
    assert response.status_code == expected
    if expected == 302:
        assert response["Location"].startswith("/admin/login/")


def test_a_staff_user_without_permissions_sees_no_event_pages(client):
    client.force_login(User.objects.create_user("clerk", password="pw", is_staff=True))
    assert client.get("/admin/events/eventbase/").status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("post", "/capture", b"{broken"),
        ("post", "/capture", b"[" * 5000),
        ("get", "/search?service_id=1&start_time=nope", None),
        ("get", "/detail?event_id=999999", None),
        ("get", "/nowhere", None),
        ("post", "/assign_group", b'{"event_id": "x"}'),
    ],
)
def test_error_bodies_carry_no_traceback_sql_or_settings(world, method, path, data):
    client = world["clients"]["superuser"]
    if data is None:
        response = getattr(client, method)(path)
    else:
        response = getattr(client, method)(path, data=data, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert_no_leak(response)


def assert_no_leak(response) -> None:
    body = response.content.decode(errors="replace")
    for secret in (
        "Traceback",
        "SELECT ",
        "INSERT ",
        "psycopg2",
        settings.SECRET_KEY,
        str(settings.DATABASES["default"].get("HOST") or "host-not-set"),
    ):
        assert secret not in body, f"{secret!r} leaked in {body[:300]}"
