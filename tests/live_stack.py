"""A throw-away PostgreSQL and the real production server on it, for tests that stop or kill the database.

The suite's own database is shared by every test; these tests get a server of their own so stopping it
harms nothing else.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from email.message import Message
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(url: str, payload=None, headers=None, timeout: float = 10) -> tuple[int, Message, dict]:
    """(status, headers (names case-insensitive, as HTTP has them), decoded body)."""
    data = None if payload is None else json.dumps(payload).encode()
    headers = {**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})}
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            body = response.read()
            decoded = (
                json.loads(body) if response.headers.get("Content-Type", "").startswith("application/json") else body
            )
            return response.status, response.headers, decoded
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = {"raw": body.decode(errors="replace")}
        return error.code, error.headers, decoded


def wait_until_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if request(url + "/health", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the server did not become healthy")


class LiveStack:
    def __init__(self, workers: int = 2, extra_env: dict | None = None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
        self.tmp = tempfile.mkdtemp(prefix="eventsum-stack-")
        os.chmod(self.tmp, 0o755)
        self.pg = pgserver.get_server(Path(self.tmp) / "pg", cleanup_mode="delete")
        info = self.pg.get_postmaster_info()
        self.pg.psql("CREATE DATABASE eventsum;")
        host = urllib.parse.quote(str(info.socket_dir), safe="")
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@{host}:{info.port}/eventsum",
            "EVENTSUM_DB_CONNECT_TIMEOUT": "2",
            "EVENTSUM_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self.manage("migrate", "--noinput", "-v", "0")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = subprocess.Popen(
            [sys.executable, "-m", "eventsum_project.serve"],
            cwd=ROOT,
            env={**self.env, "EVENTSUM_BIND": f"127.0.0.1:{self.port}", "EVENTSUM_WORKERS": str(workers)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_until_healthy()

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode:
            raise RuntimeError(result.stderr)
        return result.stdout

    def wait_until_healthy(self, timeout: float = 30) -> None:
        wait_until_healthy(self.url, timeout)

    def sql(self, query: str, parameters=()) -> list[tuple]:
        import psycopg2

        info = self.pg.get_postmaster_info()
        connection = psycopg2.connect(dbname="eventsum", user="postgres", host=str(info.socket_dir), port=info.port)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(query, parameters)
                return cursor.fetchall()
        finally:
            connection.close()

    def stop_database(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=self.pg.pgdata, user=self.pg.system_user)

    def kill_database(self) -> None:
        """SIGKILL the postmaster and every backend: a crash, not a shutdown."""
        postmaster = psutil.Process(self.pg.get_pid())
        for process in [postmaster, *postmaster.children(recursive=True)]:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs([postmaster], timeout=10)

    def start_database(self) -> None:
        with self.pg._lock:
            self.pg.ensure_postgres_running()

    def __enter__(self) -> "LiveStack":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        try:
            workers = psutil.Process(self.server.pid).children()
        except psutil.NoSuchProcess:  # a test stopped it already
            workers = []
        self.server.terminate()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
        for worker in psutil.wait_procs(workers, timeout=5)[1]:  # none outlives the test, whatever happened
            worker.kill()
        self.start_database()  # "delete" cleanup stops it cleanly first
        self.pg.cleanup()
