"""Metrics, request logs and the health check's probe.

Metrics use prometheus_client. Every server worker is a process of its own, so scripts/run sets
PROMETHEUS_MULTIPROC_DIR and /metrics merges what all workers wrote there; without it (tests, manage.py
runserver) the process's own registry is served.
"""

import json
import logging
import os
import time

from django.db import connection
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

request_logger = logging.getLogger("eventsum.request")
capture_logger = logging.getLogger("eventsum.capture")

CAPTURED_EVENTS = Counter(
    "eventsum_captured_events",
    "Events received by /capture, by service, environment and outcome (stored, or rejected and why).",
    ["service", "environment", "outcome", "reason"],
)
REQUEST_LATENCY = Histogram(
    "eventsum_request_duration_seconds",
    "Time to answer a request, by endpoint and method.",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DATABASE_ERRORS = Counter("eventsum_database_errors", "Requests that failed on the database, by kind.", ["kind"])
# Any token is a method to HTTP: a label per method a client makes up would add series without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def record_stored(label_counts: dict[tuple[str, str], int]) -> None:
    for (service, environment), count in label_counts.items():
        CAPTURED_EVENTS.labels(service, environment, "stored", "").inc(count)


def record_rejected(reason: str, count: int = 1, detail: str = "") -> None:
    # Rejected payloads name services we don't know (or nothing valid at all): no per-name labels, so a
    # bad client can't blow up the number of series.
    CAPTURED_EVENTS.labels("", "", "rejected", reason).inc(count)
    capture_logger.warning("capture rejected: %s %s", reason, detail[:500])


def metrics_text() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # any failure to reach the database means "not healthy"
        return False


class RequestLogMiddleware:
    """One log line and one latency observation per request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        match = getattr(request, "resolver_match", None)
        endpoint = (
            match.url_name if match and match.url_name else ("admin" if request.path.startswith("/admin") else "other")
        )
        log_request(endpoint, request.method, request.get_full_path(), request.path, response.status_code, elapsed)
        return response


def log_request(endpoint: str, method: str, full_path: str, path: str, status: int, elapsed: float) -> None:
    REQUEST_LATENCY.labels(endpoint, method if method in METHODS else "other").observe(elapsed)
    method = method[:20]
    request_logger.info(
        "%s %s %s %.1fms",
        method,
        full_path[:300],
        status,
        elapsed * 1000,
        extra={
            "method": method,
            "path": path[:300],
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "endpoint": endpoint,
        },
    )


class JsonLineFormatter(logging.Formatter):
    """EVENTSUM_LOG_FORMAT=json: one JSON object per line, for log shippers."""

    FIELDS = ("method", "path", "status", "duration_ms", "endpoint")
    converter = time.gmtime  # the time is written with a "Z": UTC whatever the process's TZ

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in self.FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
