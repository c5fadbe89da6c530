"""Reads served from a hot standby (docs/operations.md, "Scaling out"): a real streaming replica of a
throw-away PostgreSQL, the production server on the replica."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import warnings
from pathlib import Path

import pytest

from tests.live_stack import ROOT, free_port, request, wait_until_healthy


class Replicated:
    """A primary and a streaming standby of it, each reached over a Unix socket of its own."""

    def __init__(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
            from pgserver._commands import POSTGRES_BIN_PATH
        self.bin = POSTGRES_BIN_PATH
        self.tmp = Path(tempfile.mkdtemp(prefix="eventsum-replica-"))
        os.chmod(self.tmp, 0o777)
        self.primary = pgserver.get_server(self.tmp / "primary", cleanup_mode="delete")
        self.primary.psql("CREATE DATABASE eventsum;")
        info = self.primary.get_postmaster_info()
        self.primary_url = self.url(str(info.socket_dir), info.port)
        self.standby_dir, self.standby_sockets = self.tmp / "standby", self.tmp / "standby-sockets"
        try:
            self.start_standby(info)
        except BaseException:
            self.close()
            raise

    def start_standby(self, info) -> None:
        self.standby_sockets.mkdir()
        os.chmod(self.standby_sockets, 0o777)
        self.run(
            "pg_basebackup", "-D", str(self.standby_dir), "-R", "-X", "stream", "-c", "fast",
            "-h", str(info.socket_dir), "-p", str(info.port), "-U", "postgres",
        )  # fmt: skip
        self.standby_port = free_port()
        self.run(
            "pg_ctl", "-w", "-D", str(self.standby_dir), "-l", str(self.tmp / "standby.log"),
            "-o", f"-h '' -k {self.standby_sockets} -p {self.standby_port}", "start",
        )  # fmt: skip
        self.standby_url = self.url(str(self.standby_sockets), self.standby_port)

    @staticmethod
    def url(socket_dir: str, port: int) -> str:
        return f"postgres://postgres@{urllib.parse.quote(socket_dir, safe='')}:{port}/eventsum"

    def run(self, program: str, *args: str) -> None:
        # As the user pgserver runs PostgreSQL as (its own when started by root, which PostgreSQL refuses).
        subprocess.run(
            [str(self.bin / program), *args], check=True, capture_output=True, timeout=60, user=self.primary.system_user
        )

    def manage(self, database_url: str, *args: str) -> str:
        env = {**os.environ, "DATABASE_URL": database_url, "EVENTSUM_LOG_LEVEL": "WARNING"}
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def replayed(self, query: str, expected, timeout: float = 20) -> None:
        """Wait until the standby answers `query` with `expected` (it replays the primary's changes)."""
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            connection = psycopg2.connect(self.standby_url)
            try:
                with connection.cursor() as cursor:
                    cursor.execute(query)
                    if cursor.fetchall() == expected:
                        return
            finally:
                connection.close()
            assert time.monotonic() < deadline, f"the standby did not replay: {query}"
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-w", "-D", str(self.standby_dir), "stop", "-m", "immediate"],
            capture_output=True,
            timeout=60,
            user=self.primary.system_user,
        )
        self.primary.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def stack():
    replicated = Replicated()
    yield replicated
    replicated.close()


def test_a_server_on_a_hot_standby_serves_reads_and_hears_of_revoked_tokens(stack):
    server = None
    try:
        stack.manage(stack.primary_url, "migrate", "--noinput", "-v", "0")
        stack.manage(
            stack.primary_url, "shell", "-c",
            "from events.services import capture_events; from tests.conftest import make_event; "
            "capture_events([make_event()])",
        )  # fmt: skip
        token = stack.manage(stack.primary_url, "eventsum_token", "dashboard").strip()
        stack.replayed("SELECT count(*) FROM authtoken_token", [(1,)])

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "eventsum_project.serve"],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": stack.standby_url,
                "EVENTSUM_BIND": f"127.0.0.1:{port}",
                "EVENTSUM_WORKERS": "1",
                "EVENTSUM_LOG_LEVEL": "WARNING",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Token {token}"}
        wait_until_healthy(url)

        search = "/search?service=WISH%20FE&start_time=2000-01-01&end_time=2100-01-01"
        for _ in range(2):  # the second on the same connection, which could not LISTEN
            status, _, body = request(url + search, headers=auth)
            assert status == 200, body
            assert [event["event_name"] for event in body["events"]] == ["ZeroDivisionError"]
        assert request(url + "/detail?event_id=1", headers=auth)[0] == 200

        stack.manage(stack.primary_url, "shell", "-c", "from rest_framework.authtoken.models import Token; "
                     "Token.objects.all().delete()")  # fmt: skip
        stack.replayed("SELECT count(*) FROM authtoken_token", [(0,)])
        assert request(url + search, headers=auth)[0] == 401  # revoked on the primary: refused at once

        # A capture sent to the standby can't be written: the database is there but read-only, so it is
        # an outage for writes (503, retry), not a server error.
        status, headers, body = request(
            url + "/capture",
            payload={"service": "x", "event_name": "E", "event_type": "python", "event_data": {}},
        )
        assert (status, headers.get("Retry-After")) == (503, "5"), body
        assert "read-only" in body["detail"]
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
