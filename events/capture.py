"""POST /capture, answered by one function whichever way the request arrives.

The production server's entry point (eventsum_project.wsgi) hands POST /capture straight to
`capture_application`, past Django's handler, middleware and URL resolver and DRF's dispatch: that stack
made a single capture's Python 0.49 ms instead of 0.32 (in-process, bench/RESULTS.md). Everything of it
that such a request needs is done here: the request_started and request_finished signals (they look
after the database connection), the host check, the headers the middleware would add, the access log
line and the latency metric.
Django's URLconf still routes /capture to CaptureView (the test client, the schema, other methods),
which answers through the same `answer_capture`.
"""

import functools
import hmac
import logging
import time
from dataclasses import dataclass
from http import HTTPStatus

import orjson
from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import LimitedStream, WSGIRequest
from django.db import DatabaseError
from django.http import HttpResponse
from rest_framework.exceptions import APIException, ParseError, Throttled, ValidationError
from rest_framework.response import Response

from events.errors import InvalidIngestKey, PayloadTooLarge, exception_handler, server_error
from events.observability import log_request, record_rejected
from events.parsers import refuse_compressed
from events.renderers import ORJSONRenderer
from events.services import CaptureInvalid, CaptureThrottled, CaptureTooLarge, capture_events, parse_capture_body

CAPTURE_PATHS = ("/capture", "/capture/")  # as the URLconf's `capture/?`
_renderer = ORJSONRenderer()


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def as_response(self) -> HttpResponse:
        return HttpResponse(self.body, status=self.status, content_type="application/json", headers=dict(self.headers))


def answer_capture(stream, content_length: str | None, ingest_key: str | None, encoding: str | None = None) -> Answer:
    """The answer to one POST /capture: `stream` holds the body, `content_length` is the declared length
    (read no further, as Django reads a request), `ingest_key` the X-Eventsum-Key header, `encoding` the
    Content-Encoding header."""
    try:
        _check_ingest_key(ingest_key or "")
        refuse_compressed(encoding)
        body = _read_body(stream, content_length)
    except APIException as refused:
        record_rejected(refused.default_code, detail=str(refused.detail))
        return _refusal(refused)
    payloads = []
    try:
        payloads = parse_capture_body(body)
        results = capture_events(payloads)
    except CaptureInvalid as invalid:
        record_rejected("invalid", count=max(1, len(payloads)), detail=str(invalid.detail))
        return _refusal(ValidationError(invalid.detail))
    except CaptureTooLarge as too_large:
        record_rejected("payload_too_large", count=len(payloads), detail=too_large.detail)
        return _refusal(PayloadTooLarge(too_large.detail))
    except CaptureThrottled as throttled:
        record_rejected("throttled", count=max(1, len(payloads)), detail=throttled.detail)
        return _refusal(Throttled(wait=throttled.wait, detail=throttled.detail))
    except DatabaseError as error:
        record_rejected("database_error", count=max(1, len(payloads)))
        return _refusal(error)
    answers = [
        {
            "event_base_id": result.event_base_id,
            "event_instance_id": result.event_instance_id,
            "event_group_id": result.event_group_id,
        }
        for result in results
    ]
    return Answer(200, orjson.dumps({"results": answers} if body.lstrip()[:1] == b"[" else answers[0]))


def _check_ingest_key(given: str) -> None:
    keys = settings.EVENTSUM_INGEST_KEYS
    if keys and not any(hmac.compare_digest(given.encode(), key.encode()) for key in keys):
        raise InvalidIngestKey()


def _read_body(stream, content_length: str | None) -> bytes:
    limit = settings.EVENTSUM_MAX_BODY_BYTES
    too_large = PayloadTooLarge(f"Body exceeds EVENTSUM_MAX_BODY_BYTES={limit} bytes.")
    try:
        declared = int(content_length or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise too_large
    body = LimitedStream(stream, declared).read(limit + 1)  # a chunked body too (eventsum_project.wsgi)
    if len(body) > limit:
        raise too_large
    if not body.strip():
        raise ParseError("The body is empty: send one event object or an array of them.")
    return body


def _refusal(error: Exception) -> Answer:
    """The error answer DRF's view would give for `error`, through the project's exception handler."""
    response = exception_handler(error, {})
    if isinstance(response, Response):
        body = _renderer.render(response.data)
    else:  # a JsonResponse (a database error that isn't an outage)
        body = response.content
    return Answer(response.status_code, body, tuple((k, v) for k, v in response.items() if k != "Content-Type"))


# --- the production server's way in ------------------------------------------------------------------------

_request_logger = logging.getLogger("django.request")


def takes(environ) -> bool:
    """Whether capture_application answers this request; Django answers every other, and every request
    when a setting asks for a redirect to HTTPS or for HSTS, which SecurityMiddleware decides per request."""
    return (
        environ["REQUEST_METHOD"] == "POST"
        and environ.get("PATH_INFO") in CAPTURE_PATHS
        and not (settings.SECURE_SSL_REDIRECT or settings.SECURE_HSTS_SECONDS)
        and _host_allowed(environ)
    )


def _host_allowed(environ) -> bool:
    # Django checks the Host header against ALLOWED_HOSTS (CommonMiddleware); a refused one is Django's to
    # answer. With the default `*`, any host passes without building a request.
    if "*" in settings.ALLOWED_HOSTS:
        return True
    try:
        WSGIRequest(environ).get_host()
    except DisallowedHost:
        return False
    return True


def capture_application(environ, start_response):
    """A WSGI application for the requests `takes`: POST /capture as CaptureView would answer it."""
    started = time.perf_counter()
    signals.request_started.send(sender=__name__, environ=environ)
    try:
        result = answer_capture(
            environ["wsgi.input"],
            environ.get("CONTENT_LENGTH"),
            environ.get("HTTP_X_EVENTSUM_KEY"),
            environ.get("HTTP_CONTENT_ENCODING"),
        )
        headers = [*result.headers, DRF_ALLOW]
    except Exception:  # as Django's handler does with a view's uncaught error: logged, and a JSON 500
        _request_logger.exception("Internal Server Error: %s", environ["PATH_INFO"], extra={"status_code": 500})
        result, headers = Answer(500, server_error(None).content), []
    finally:
        signals.request_finished.send(sender=__name__)
    headers += (("Content-Type", "application/json"), *_middleware_headers(), ("Content-Length", str(len(result.body))))
    start_response(f"{result.status} {HTTPStatus(result.status).phrase}", headers)
    path = environ.get("SCRIPT_NAME", "") + environ["PATH_INFO"]
    query = environ.get("QUERY_STRING")
    elapsed = time.perf_counter() - started
    log_request("capture", "POST", f"{path}?{query}" if query else path, path, result.status, elapsed)
    return [result.body]


DRF_ALLOW = ("Allow", "POST, OPTIONS")  # what DRF adds to CaptureView's answers


@functools.cache
def _middleware_headers() -> tuple[tuple[str, str], ...]:
    """The headers SecurityMiddleware and XFrameOptionsMiddleware add to an answer, from the same settings
    (tests compare this way in with Django's, for plain and secure requests)."""
    headers = [("X-Frame-Options", settings.X_FRAME_OPTIONS.upper())]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        values = [value.strip() for value in policy.split(",")] if isinstance(policy, str) else policy
        headers.append(("Referrer-Policy", ",".join(values)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    return tuple(headers)
