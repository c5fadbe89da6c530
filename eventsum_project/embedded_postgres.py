"""The embedded PostgreSQL used when DATABASE_URL is unset.

pgserver runs a real PostgreSQL 16 from a data folder and reaches it over a Unix socket. The server is
left running when this process exits (cleanup_mode=None), so the web server, manage.py and the test run
all share one server, started by whichever comes first.
"""

import logging
import warnings
from pathlib import Path

DATABASE_NAME = "eventsum"


def embedded_database_settings(data_dir: Path) -> dict:
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, which is normal on servers and in CI.
        warnings.simplefilter("ignore")
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        import pgserver

        server = pgserver.get_server(data_dir / "postgres", cleanup_mode=None)
    info = server.get_postmaster_info()
    _ensure_database(str(info.socket_dir), info.port)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "HOST": str(info.socket_dir),
        "PORT": str(info.port),
    }


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
