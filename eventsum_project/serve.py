"""The production server: `python -m eventsum_project.serve` (what scripts/run starts).

Granian parses HTTP in Rust, keeps client connections alive and calls the WSGI application from each
worker process. Against gunicorn's sync workers, in bench/ on 2 cores, back to back, three rounds:
/health 1,409 -> 2,233 requests/s, single captures 422-463 -> 588-650/s, /detail 687-749 -> 830-981/s.
Every setting comes from the environment (README, "Settings").
"""

import multiprocessing
import os

from granian import Granian
from granian.constants import Interfaces


def main() -> None:
    host, _, port = os.environ.get("EVENTSUM_BIND", "0.0.0.0:8080").rpartition(":")
    Granian(
        "eventsum_project.wsgi:application",
        address=host.strip("[]") or "0.0.0.0",
        port=int(port),
        interface=Interfaces.WSGI,
        workers=int(os.environ.get("EVENTSUM_WORKERS", multiprocessing.cpu_count())),
        blocking_threads=int(os.environ.get("EVENTSUM_THREADS", 1)),
        # A request in flight when SIGTERM arrives gets this long to finish before its worker is killed.
        workers_kill_timeout=int(os.environ.get("EVENTSUM_GRACEFUL_TIMEOUT", 30)),
        respawn_failed_workers=True,
        # Memory stays flat over weeks: a worker past this size is replaced (gracefully) by a new one.
        workers_max_rss=int(os.environ.get("EVENTSUM_WORKER_MAX_RSS_MB", 300)),
        log_access=False,  # Eventsum logs one line per request itself (events.observability)
        websockets=False,
    ).serve()


if __name__ == "__main__":
    main()
