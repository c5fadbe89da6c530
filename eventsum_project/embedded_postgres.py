"""The embedded PostgreSQL used when DATABASE_URL is unset.

pgserver runs a real PostgreSQL 16 from a data folder and reaches it over a Unix socket. The server is
left running when this process exits (cleanup_mode=None), so the web server, manage.py and the test run
all share one server, started by whichever comes first. `scripts/stop-db` (this module's `stop`) stops it.
"""

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from eventsum_project.env import env_str

DATABASE_NAME = "eventsum"


def configured_data_dir() -> Path:
    """EVENTSUM_DATA_DIR: where the embedded PostgreSQL keeps its data (default .eventsum/ in the project)."""
    return Path(env_str("EVENTSUM_DATA_DIR", str(Path(__file__).resolve().parent.parent / ".eventsum"))).resolve()


def embedded_database_settings(data_dir: Path) -> dict:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file there, a read-only or missing mount: not a traceback from pathlib
        raise ImproperlyConfigured(
            f"EVENTSUM_DATA_DIR={str(data_dir)!r} can't hold the embedded PostgreSQL's data: {error.strerror}."
        ) from None
    server = _pgserver().get_server(data_dir / "postgres", cleanup_mode=None)
    info = server.get_postmaster_info()
    _ensure_database(str(info.socket_dir), info.port)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "HOST": str(info.socket_dir),
        "PORT": str(info.port),
    }


def stop_embedded(data_dir: Path) -> bool:
    """Stops the embedded PostgreSQL kept in data_dir, disconnecting whoever is still connected (pg_ctl's
    fast mode), and waits until it has written everything out. False when it was not running."""
    _pgserver()
    from pgserver._commands import POSTGRES_BIN_PATH  # its pg_ctl() logs "no server running" as an error

    pg_ctl = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data_dir / "postgres")]
    # pgserver runs PostgreSQL as its own user when started by root (PostgreSQL refuses to run as root).
    user = "pgserver" if os.geteuid() == 0 else None
    if subprocess.run([*pg_ctl, "status"], user=user, stdout=subprocess.DEVNULL, check=False).returncode != 0:
        return False  # 3: not running; 4: no data folder there
    subprocess.run([*pg_ctl, "-w", "stop", "-m", "fast"], user=user, stdout=subprocess.DEVNULL, check=True)
    return True


def _pgserver():
    with warnings.catch_warnings():
        # Importing it, platformdirs warns when XDG_RUNTIME_DIR is unset, which is normal on servers and in CI.
        warnings.simplefilter("ignore")
        import pgserver
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver


def _ensure_database(host: str, port: int) -> None:
    import psycopg2
    from psycopg2 import errors

    connection = psycopg2.connect(dbname="postgres", user="postgres", host=host, port=port)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME])
            if cursor.fetchone() is None:
                try:
                    cursor.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                except errors.DuplicateDatabase:
                    pass  # another process created it between our check and our CREATE
    finally:
        connection.close()


if __name__ == "__main__":  # scripts/stop-db
    if sys.argv[1:] != ["stop"]:
        sys.exit("usage: python -m eventsum_project.embedded_postgres stop")
    folder = configured_data_dir()
    print(f"embedded PostgreSQL in {folder / 'postgres'}: {'stopped' if stop_embedded(folder) else 'was not running'}")
