"""Operations: health, metrics, logs, settings, retention."""

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from events.models import EventBase, EventInstance, OccurrenceBucket
from events.observability import JsonLineFormatter
from tests.conftest import assert_totals_match_buckets, make_event, post_json

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def test_health_is_ok_when_the_database_answers(anonymous):
    response = anonymous.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_every_answer_is_json_whatever_the_accept_header_asks_for(anonymous):
    response = anonymous.get("/health", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


API_PATHS = [
    "/health",
    "/metrics",
    "/schema",
    "/services",
    "/environments",
    "/groups",
    "/groups/0",
    "/search",
    "/detail",
    "/assign_group",
]


@pytest.mark.parametrize("path", API_PATHS)
def test_each_api_path_answers_the_same_with_and_without_its_slash_and_never_redirects(superuser, path):
    bare, slashed = superuser.get(path), superuser.get(path + "/")
    assert bare.status_code not in (301, 302, 307, 308)
    assert (slashed.status_code, slashed["Content-Type"]) == (bare.status_code, bare["Content-Type"])


def test_an_unknown_path_is_a_json_404_with_or_without_a_slash(anonymous):
    for path in ("/nothing", "/nothing/", "/searches"):
        response = anonymous.get(path)
        assert (response.status_code, response.json()) == (404, {"detail": f"Not found: {path}"})


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/admin", "/admin/"),
        ("/admin/events/eventbase", "/admin/events/eventbase/"),
        ("/admin/password_change", "/admin/password_change/"),
    ],
)
def test_the_admin_typed_without_its_slash_is_redirected_to_it(superuser, path, location):
    superuser.force_login(User.objects.get(username="root"))  # the admin is a session's, not a token's
    response = superuser.get(path)
    assert (response.status_code, response["Location"]) == (301, location)
    assert superuser.get(location).status_code == 200


def test_health_is_503_when_the_database_does_not_answer(anonymous, monkeypatch):
    from django.db import connection
    from django.db.utils import OperationalError

    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    # The real outage (PostgreSQL stopped) is in test_outage.py; this checks the answer's shape alone.
    monkeypatch.setattr(connection, "cursor", unreachable)
    response = anonymous.get("/health/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["status"] == "unavailable"


def test_a_database_outage_is_logged_with_the_databases_own_reason(caplog):
    from django.db.utils import OperationalError

    from events.errors import database_trouble

    full = OperationalError(
        'could not extend file "base/16384/16397": No space left on device\nHINT:  Check free disk space.'
    )
    with caplog.at_level(logging.WARNING, logger="eventsum"):
        assert database_trouble(full).status_code == 503
    assert caplog.messages == [
        'database unavailable: OperationalError: could not extend file "base/16384/16397": No space left on device'
    ]


@pytest.mark.django_db(transaction=True)
def test_a_reused_connection_the_server_dropped_is_replaced_before_the_next_query():
    import time

    from django.db import connection, connections

    from eventsum_project.postgresql.base import _has_unread_input

    wrapper = connections.create_connection("default")
    try:
        wrapper.ensure_connection()
        assert wrapper.health_check_enabled
        pid = wrapper.connection.get_backend_pid()
        wrapper.health_check_done = False  # as at the start of a request
        wrapper.close_if_health_check_failed()
        assert wrapper.connection is not None and wrapper.connection.get_backend_pid() == pid  # healthy: kept

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while not _has_unread_input(wrapper.connection.fileno()) and time.monotonic() < deadline:
            time.sleep(0.05)
        wrapper.health_check_done = False  # the next request
        wrapper.close_if_health_check_failed()
        assert wrapper.connection is None
        with wrapper.cursor() as cursor:  # reconnects instead of failing the request
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != pid
    finally:
        wrapper.close()


def metric_value(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_stored_and_rejected_captures_and_request_latency(anonymous, client):
    before = anonymous.get("/metrics").content.decode()
    post_json(client, "/capture", [make_event(service="Metric Svc"), make_event(service="metric-svc")])
    post_json(client, "/capture", make_event(service=None))
    client.post("/capture", data=b"{broken", content_type="application/json")

    response = anonymous.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    stored = {"service": "metric_svc", "environment": "prod", "outcome": "stored"}
    assert (
        metric_value(text, "eventsum_captured_events_total", **stored)
        - metric_value(before, "eventsum_captured_events_total", **stored)
        == 2
    )
    rejected = {"outcome": "rejected", "reason": "invalid"}
    assert (
        metric_value(text, "eventsum_captured_events_total", **rejected)
        - metric_value(before, "eventsum_captured_events_total", **rejected)
        == 2
    )
    assert metric_value(text, "eventsum_request_duration_seconds_count", endpoint="capture", method="POST") >= 3
    assert "eventsum_database_errors" in text


def test_a_made_up_method_is_counted_as_other_so_clients_cannot_multiply_the_series(anonymous):
    for method in ("BREW", "PROPFIND", "X" * 200):
        assert anonymous.generic(method, "/health").status_code == 405
    text = anonymous.get("/metrics").content.decode()
    assert metric_value(text, "eventsum_request_duration_seconds_count", endpoint="health", method="other") >= 3
    assert "BREW" not in text and "PROPFIND" not in text


def test_each_request_and_each_rejection_is_logged(client, caplog):
    with caplog.at_level(logging.INFO):
        post_json(client, "/capture", make_event(event_name=""))
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("capture rejected: invalid") and "event_name" in m for m in messages)
    assert any(m.startswith("POST /capture 400 ") for m in messages)


def test_json_log_lines_are_stamped_in_utc_whatever_the_process_time_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        record = logging.LogRecord("eventsum.request", logging.INFO, __file__, 1, "x", None, None)
        record.created, record.msecs = 1_700_000_000.25, 250.0
        assert json.loads(JsonLineFormatter().format(record))["time"] == "2023-11-14T22:13:20.250Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_json_log_lines_carry_the_request_fields():
    record = logging.LogRecord("eventsum.request", logging.INFO, __file__, 1, "GET /x 200", None, None)
    record.status, record.path, record.duration_ms = 200, "/x", 1.5
    line = json.loads(JsonLineFormatter().format(record))
    assert line["message"] == "GET /x 200"
    assert (line["status"], line["path"], line["duration_ms"], line["level"]) == (200, "/x", 1.5, "INFO")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTSUM_TIME_INTERVAL", "abc"),
        ("EVENTSUM_TIME_INTERVAL", "0"),
        ("EVENTSUM_TIME_INTERVAL", "1441"),
        ("EVENTSUM_AUTO_CREATE", "maybe"),
        ("EVENTSUM_MAX_BATCH", "-5"),
        ("EVENTSUM_MAX_BATCH", "10001"),
        ("EVENTSUM_MAX_BODY_BYTES", "10485760000"),
        ("EVENTSUM_LOG_FORMAT", "xml"),
        ("EVENTSUM_TIME_FORMAT", "%Y"),
        ("EVENTSUM_TIME_FORMAT", "%y-%m-%d %H:%M:%S"),  # 1968 would read back as 2068
        ("EVENTSUM_PRODUCTION", "true"),  # without SECRET_KEY
        ("EVENTSUM_INGEST_KEYS", " , "),  # set, but no key: /capture must not be left open
        ("EVENTSUM_DATA_DIR", "/proc/eventsum"),  # can't be made
        ("EVENTSUM_DATA_DIR", f"{__file__}/eventsum"),  # under a file
        ("DATABASE_URL", "nonsense"),
        ("DATABASE_URL", "postgres://user:secret@host:port/db"),
    ],
)
def test_a_bad_setting_refuses_to_start_naming_the_variable(variable, value):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    if variable == "EVENTSUM_DATA_DIR":
        env.pop("DATABASE_URL", None)  # the data folder is the embedded PostgreSQL's
    env[variable] = value
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert (variable if variable != "EVENTSUM_PRODUCTION" else "SECRET_KEY") in result.stderr.splitlines()[-1]
    assert "secret" not in result.stderr.splitlines()[-1]  # a URL's password is not written out


def django_shell(code: str, **variables: str) -> list[str]:
    """What `code` prints, run by `manage.py shell` in a process of its own with these settings."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_production_mode_starts_with_a_secret_key_and_debug_off():
    code = "from django.conf import settings; print(settings.DEBUG, settings.SESSION_COOKIE_SECURE)"
    printed = django_shell(code, EVENTSUM_PRODUCTION="true", SECRET_KEY="x" * 50)
    assert printed[-2:] == ["False", "True"]


@pytest.mark.parametrize(("value", "expected"), [("true", "off"), ("false", "on"), ("", "on")])
def test_async_commit_is_chosen_by_its_setting_and_off_by_default(value, expected):
    # What the server's connections really run with, asked of PostgreSQL itself.
    code = (
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SHOW synchronous_commit')\n"
        "    print(cursor.fetchone()[0])"
    )
    assert django_shell(code, EVENTSUM_DB_ASYNC_COMMIT=value)[-1] == expected


def test_the_connections_never_jit_compile_queries():
    # On a PostgreSQL built with LLVM, JIT compiled every capture statement (~0.5 s each):
    # see eventsum_project/postgresql.
    code = (
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SHOW jit')\n"
        "    print(cursor.fetchone()[0])"
    )
    assert django_shell(code)[-1] == "off"
    assert django_shell(code, EVENTSUM_DB_ASYNC_COMMIT="true")[-1] == "off"


def test_stop_db_stops_the_embedded_postgresql_that_the_others_leave_running():
    # scripts/run, manage.py and the tests leave the embedded PostgreSQL running for each other; an operator
    # stops it with scripts/stop-db (before copying its folder as a backup, say).
    import psycopg2

    from eventsum_project.embedded_postgres import embedded_database_settings, stop_embedded

    folder = Path(tempfile.mkdtemp(prefix="eventsum-stop-db-"))
    os.chmod(folder, 0o755)  # under root, PostgreSQL runs as pgserver's own user

    def stop_db() -> str:
        env = {**os.environ, "EVENTSUM_DATA_DIR": str(folder)}
        result = subprocess.run(["scripts/stop-db"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        database = embedded_database_settings(folder)
        where = {"dbname": database["NAME"], "user": "postgres", "host": database["HOST"], "port": database["PORT"]}
        psycopg2.connect(**where).close()  # it answers

        assert stop_db().endswith(": stopped\n")
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(**where)
        assert not (folder / "postgres" / "postmaster.pid").exists()  # shut down cleanly, not killed
        assert stop_db().endswith(": was not running\n")
    finally:
        stop_embedded(folder)
        shutil.rmtree(folder, ignore_errors=True)


class TestPrune:
    @pytest.fixture
    def data(self, capture, triager):
        """Old-only base O (2 instances), mixed base M (old and recent instance), old triaged base T."""
        now = datetime.now(UTC)
        old = (now - timedelta(days=100)).strftime("%Y-%m-%d %H:%M:%S")
        recent = (now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
        ids = {}
        ids["O"] = capture([make_event(event_name="O", lineno=n, timestamp=old) for n in (1, 2)])["results"][0]
        ids["M-old"] = capture(make_event(event_name="M", lineno=1, timestamp=old))
        counted = {"configurable_groupings": ["count_by_message"]}
        ids["M-new"] = capture(make_event(event_name="M", lineno=2, timestamp=recent, message="now", **counted))
        # Old buckets of the recent instance: one message only they hold, one it holds now too.
        capture([make_event(event_name="M", lineno=2, timestamp=old, message=m, **counted) for m in ("then", "now")])
        ids["T"] = capture(make_event(event_name="T", timestamp=old))
        group = triager.post("/groups", {"name": "keep"}, format="json").json()["id"]
        triager.post("/assign_group", {"event_id": ids["T"]["event_base_id"], "group_id": group}, format="json")
        return ids

    def prune(self, *args) -> str:
        out = StringIO()
        call_command("prune_events", *args, stdout=out)
        return out.getvalue()

    def test_dry_run_counts_and_deletes_nothing(self, data):
        output = self.prune("--dry-run")
        assert "would delete 5 buckets" in output
        assert "would delete 3 instances" in output  # O's two and M's old one
        assert "would delete 1 bases" in output  # O; M has a recent occurrence, T is triaged
        assert OccurrenceBucket.objects.count() == 6

    def test_it_prunes_old_buckets_then_empty_instances_and_untriaged_bases(self, data):
        output = self.prune("--batch-size", "2")
        assert "Deleted 5 buckets, 3 instances, 1 bases" in output
        assert "buckets: 2 deleted so far" in output  # progress per batch
        assert set(EventBase.objects.values_list("event_name", flat=True)) == {"M", "T"}
        assert set(EventInstance.objects.values_list("id", flat=True)) == {
            data["M-new"]["event_instance_id"],
            data["T"]["event_instance_id"],
        }
        (bucket,) = OccurrenceBucket.objects.all()
        assert bucket.event_instance_id == data["M-new"]["event_instance_id"]
        # The running totals lost what the deleted buckets held: T keeps its base and instance with 0.
        assert assert_totals_match_buckets() == 2
        assert EventInstance.objects.get(id=data["M-new"]["event_instance_id"]).total_count == 1
        assert EventBase.objects.get(event_name="T").total_count == 0

    def test_detail_answers_the_retained_history_after_a_prune(self, data, reader):
        self.prune()
        detail = reader.get("/detail", {"event_id": data["M-new"]["event_instance_id"]}).json()
        assert (detail["total_count"], detail["counters"]) == (1, {"count_by_message": {"now": 1}})

    def test_old_buckets_of_every_service_go_and_recent_ones_stay(self, capture):
        now = datetime.now(UTC)
        for service in ("alpha", "beta", "gamma"):
            for days in (100, 99, 1):
                stamp = (now - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")
                capture(make_event(service=service, timestamp=stamp))

        assert "Deleted 6 buckets" in self.prune("--batch-size", "2")

        remaining = OccurrenceBucket.objects.values_list("service__normalized_name", "bucket_start")
        assert sorted(name for name, _ in remaining) == ["alpha", "beta", "gamma"]
        assert all(start > now - timedelta(days=2) for _, start in remaining)

    def test_days_can_be_overridden(self, data):
        assert "Deleted 0 buckets, 0 instances, 0 bases" in self.prune("--days", "365")

    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["--days", "0"], "--days must be at least 1"),
            (["--days", "1000000"], "1000000 days reach back past the year 1"),
            (["--batch-size", "0"], "--batch-size from 1 to 1000000"),
            (["--batch-size", str(2**70)], "--batch-size from 1 to 1000000"),
        ],
    )
    def test_out_of_range_options_are_refused_naming_them_and_nothing_is_deleted(self, data, capsys, args, words):
        with pytest.raises(SystemExit) as exit:
            call_command("prune_events", *args, stdout=StringIO())
        assert exit.value.code == 2
        assert words in capsys.readouterr().err
        assert OccurrenceBucket.objects.count() == 6


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTSUM_BIND", "8080"),
        ("EVENTSUM_BIND", "0.0.0.0:http"),
        ("EVENTSUM_BIND", "0.0.0.0:70000"),
        ("EVENTSUM_BIND", "no-such-host.invalid:8080"),
        ("EVENTSUM_WORKERS", "two"),
        ("EVENTSUM_WORKERS", "0"),
        ("EVENTSUM_THREADS", "0"),
        ("EVENTSUM_GRACEFUL_TIMEOUT", "soon"),
        ("EVENTSUM_WORKER_MAX_RSS_MB", "10"),
    ],
)
def test_a_bad_server_setting_refuses_to_start_naming_the_variable(variable, value):
    env = {**os.environ, variable: value}
    result = subprocess.run(
        [sys.executable, "-m", "eventsum_project.serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"eventsum: {variable}={value!r}")


def test_a_port_another_server_listens_on_is_refused():
    import socket

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as granian's workers listen
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "EVENTSUM_BIND": f"127.0.0.1:{port}"}
        result = subprocess.run(
            [sys.executable, "-m", "eventsum_project.serve"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.startswith(f"eventsum: EVENTSUM_BIND=127.0.0.1:{port} can't be used: Address already in use")


def test_a_host_name_is_bound_by_its_address(monkeypatch):
    from eventsum_project import serve

    monkeypatch.setenv("EVENTSUM_BIND", "localhost:9000")  # granian itself takes IP addresses only
    assert serve.options()["address"] in ("127.0.0.1", "::1")


def test_blank_server_settings_take_their_defaults(monkeypatch):
    from eventsum_project import serve

    for variable in ("EVENTSUM_WORKERS", "EVENTSUM_THREADS", "EVENTSUM_GRACEFUL_TIMEOUT"):
        monkeypatch.setenv(variable, "")  # as .env.example leaves EVENTSUM_WORKERS
    monkeypatch.setenv("EVENTSUM_BIND", "[::1]:9000")
    assert serve.options() == {
        "address": "::1",
        "port": 9000,
        "workers": os.cpu_count(),
        "blocking_threads": 1,
        "workers_kill_timeout": 30,
        "workers_max_rss": 300,
    }
