"""The production server: `python -m eventsum_project.serve` (what scripts/run starts).

Granian parses HTTP in Rust, keeps client connections alive and calls the WSGI application from each
worker process. Against gunicorn's sync workers, in bench/ on 2 cores, back to back, three rounds:
/health 1,409 -> 2,233 requests/s, single captures 422-463 -> 588-650/s, /detail 687-749 -> 830-981/s.
Every setting comes from the environment (README, "Settings").
"""

import multiprocessing
import os
import signal
import socket
import sys

from django.core.exceptions import ImproperlyConfigured
from granian import Granian
from granian.constants import Interfaces

from eventsum_project.env import env_int, env_str


def options() -> dict:
    """Granian's arguments from the environment; a bad value raises ImproperlyConfigured naming it."""
    bind = env_str("EVENTSUM_BIND", "0.0.0.0:8080")
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(f"EVENTSUM_BIND={bind!r} is not HOST:PORT (e.g. 0.0.0.0:8080).")
    try:  # granian takes an IP address only: "localhost:8080" was a traceback
        address = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)[0][4][0]
    except OSError as error:
        raise ImproperlyConfigured(f"EVENTSUM_BIND={bind!r}: {host!r} is not an address here ({error}).") from None
    return {
        "address": address,
        "port": int(port),
        "workers": env_int("EVENTSUM_WORKERS", multiprocessing.cpu_count(), minimum=1),
        "blocking_threads": env_int("EVENTSUM_THREADS", 1, minimum=1),
        # A request in flight when SIGTERM arrives gets this long to finish before its worker is killed.
        "workers_kill_timeout": env_int("EVENTSUM_GRACEFUL_TIMEOUT", 30, minimum=1),
        # Memory stays flat over weeks: a worker past this size is replaced (gracefully) by a new one.
        "workers_max_rss": env_int("EVENTSUM_WORKER_MAX_RSS_MB", 300, minimum=100),
    }


def refuse_a_port_in_use(address: str, port: int) -> None:
    """Granian's workers listen with SO_REUSEPORT, with which a second server started on a port already
    served (an old one left running, say) shares it silently: the kernel splits the connections between
    the two. A plain bind first finds the port taken, as any other server would."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed connections don't count
        try:
            probe.bind((address, port))
        except OSError as error:
            raise ImproperlyConfigured(f"EVENTSUM_BIND={address}:{port} can't be used: {error.strerror}.") from None


def loading_worker_signals() -> None:
    """Run in each worker as it is forked. A worker starts with the signal handlers of the main process, whose
    SIGTERM and SIGINT only wake that process's loop, and granian gives it its own once the application has
    loaded (Django's set-up, about half a second). The main process's SIGTERM in between was lost, and it
    waited out EVENTSUM_GRACEFUL_TIMEOUT to kill that worker: when stopped just after starting, or while
    replacing a worker. Until granian's own handlers, a SIGTERM ends the worker at once (it has nothing in
    flight), and a SIGINT is left to the main process, which a Ctrl-C reaches too and which then stops it:
    a worker gone before it asked would be logged as a crash."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main() -> None:
    try:
        settings = options()
        refuse_a_port_in_use(settings["address"], settings["port"])
    except ImproperlyConfigured as error:
        sys.exit(f"eventsum: {error}")
    os.register_at_fork(after_in_child=loading_worker_signals)  # granian forks its workers (multiprocessing's "fork")
    Granian(
        "eventsum_project.wsgi:application",
        interface=Interfaces.WSGI,
        respawn_failed_workers=True,  # a worker that dies is replaced (without it granian stops altogether)
        log_access=False,  # Eventsum logs one line per request itself (events.observability)
        websockets=False,
        **settings,
    ).serve()


if __name__ == "__main__":
    main()
