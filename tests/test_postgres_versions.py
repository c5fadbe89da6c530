"""The suite's database-heavy modules again, on the oldest PostgreSQL server the machine has.

Everything else runs on the embedded PostgreSQL 16 (pgserver), built without LLVM. docs/operations.md
promises PostgreSQL 14 or later on DATABASE_URL, where servers usually come from a distribution and
JIT-compile expensive queries. Both differences broke a release before this test: migration 0015's
generated column used a date_trunc that PostgreSQL 15 holds as not immutable, and on a server with JIT
every capture took ~0.5 s. Debian's server binaries are under /usr/lib/postgresql (scripts/test installs
them when missing).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every module whose SQL reaches PostgreSQL's planner or DDL in its own way: migrations (every test
# database), the capture statement, the reads, the admin's lists, the retention and recount commands.
MODULES = [
    "tests/test_capture.py",
    "tests/test_capture_concurrency.py",
    "tests/test_search.py",
    "tests/test_detail.py",
    "tests/test_indexes.py",
    "tests/test_admin.py",
    "tests/test_commands.py",
    "tests/test_triage.py",
]


def oldest_server_binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda path: int(path.parts[-3]))
    assert found, "No PostgreSQL server under /usr/lib/postgresql: scripts/test installs Debian's postgresql."
    return found[0].parent


@pytest.fixture
def old_server():
    """A throwaway cluster of that server on a Unix socket, with the distribution's defaults (JIT included)
    except durability, which a test database does not need."""
    binaries = oldest_server_binaries()
    folder = Path(tempfile.mkdtemp(prefix="eventsum-pg-"))
    user = "postgres" if os.geteuid() == 0 else None  # PostgreSQL refuses to run as root
    if user:
        shutil.chown(folder, user)

    def run(*command: str) -> None:
        result = subprocess.run(command, user=user, capture_output=True, text=True, timeout=120)
        log = folder / "log"
        assert result.returncode == 0, (
            f"{' '.join(command)}:\n{result.stderr}\n{log.read_text() if log.exists() else ''}"
        )

    data = str(folder / "data")
    try:
        run(str(binaries / "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync")
        options = f"-k {folder} -c listen_addresses= -c fsync=off -c full_page_writes=off"
        run(str(binaries / "pg_ctl"), "-D", data, "-o", options, "-l", str(folder / "log"), "-w", "start")
        yield folder
    finally:
        subprocess.run(
            [str(binaries / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"], user=user, capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


def test_the_database_modules_pass_on_the_oldest_server_the_machine_has(old_server):
    connection = psycopg2.connect(dbname="postgres", user="postgres", host=str(old_server))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int, pg_jit_available()")
        version, jit_available = cursor.fetchone()
        cursor.execute("CREATE DATABASE eventsum")
    connection.close()

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *MODULES],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": f"postgres://postgres@{str(old_server).replace('/', '%2F')}/eventsum"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, (
        f"PostgreSQL {version} (JIT available: {jit_available}):\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
