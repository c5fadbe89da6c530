"""Gunicorn settings for `scripts/run`; every value can be overridden from the environment."""

import multiprocessing
import os

bind = os.environ.get("EVENTSUM_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("EVENTSUM_WORKERS", multiprocessing.cpu_count() * 2))
# Threads > 1 switches to gthread workers, which also keep client connections alive between requests.
threads = int(os.environ.get("EVENTSUM_THREADS", 1))
worker_class = "gthread" if threads > 1 else "sync"
# A request in flight when SIGTERM arrives gets this long to finish before the worker is stopped.
graceful_timeout = int(os.environ.get("EVENTSUM_GRACEFUL_TIMEOUT", 30))
timeout = 60
keepalive = 5
# Recycle workers now and then, so memory stays flat over weeks. The wide jitter keeps evenly loaded
# workers from restarting together (measured: all four within a second, p99 of that run 0.9 s).
max_requests = 20000
max_requests_jitter = 10000
accesslog = None  # Eventsum logs one line per request itself (events.logging)
errorlog = "-"
wsgi_app = "eventsum_project.wsgi:application"


def child_exit(server, worker):
    # A dead worker's live gauges must not linger in the shared metrics folder.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
