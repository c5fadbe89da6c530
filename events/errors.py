"""One error shape for the whole API: DRF's, set here, and never an HTML page or a traceback."""

import logging

from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import JsonResponse
from psycopg2 import errors as pg_errors
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.views import exception_handler as drf_exception_handler

from events.quoting import quoted

logger = logging.getLogger("eventsum")

RETRY_AFTER_SECONDS = "5"


class DatabaseUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable; retry shortly."
    default_code = "database_unavailable"


class DatabaseReadOnly(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is read-only (a standby?): nothing can be written now; retry shortly."
    default_code = "database_read_only"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class InvalidIngestKey(APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "A valid X-Eventsum-Key header is required."
    default_code = "not_authenticated"


def database_trouble(error: Exception) -> APIException | None:
    """The 503 an error from the database stands for, counted and logged: the database unreachable, or
    refusing writes because it is a hot standby (a failover in progress, or a deployment pointed at a
    replica), where the write can succeed later. None for any other error."""
    if isinstance(error, (OperationalError, InterfaceError)):
        kind, trouble = "unavailable", DatabaseUnavailable()
    elif isinstance(error, DatabaseError) and isinstance(error.__cause__, pg_errors.ReadOnlySqlTransaction):
        kind, trouble = "read_only", DatabaseReadOnly()
    else:
        return None
    from events.observability import DATABASE_ERRORS

    DATABASE_ERRORS.labels(kind).inc()
    # The database's own first line says why (refused connection, disk full, timeout): what an operator
    # needs, and never a password (libpq does not write it) nor event data (not in these errors).
    reason = str(error).strip().partition("\n")[0][:300]
    logger.warning("database %s: %s: %s", kind.replace("_", "-"), type(error).__name__, reason)
    return trouble


def exception_handler(error, context):
    error = database_trouble(error) or error
    response = drf_exception_handler(error, context)
    if response is not None and response.status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
        response["Retry-After"] = RETRY_AFTER_SECONDS
    if response is None and isinstance(error, DatabaseError):
        from events.observability import DATABASE_ERRORS

        DATABASE_ERRORS.labels("error").inc()
        logger.exception("database error")
        return JsonResponse({"detail": "A database error occurred."}, status=500)
    return response


class DatabaseOutageMiddleware:
    """Outside DRF (the admin, /health): a lost database is a 503 with Retry-After, never a 500 page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if trouble := database_trouble(exception):
            response = JsonResponse({"detail": trouble.detail}, status=trouble.status_code)
            response["Retry-After"] = RETRY_AFTER_SECONDS
            return response
        return None


def not_found(request, exception=None):
    return JsonResponse({"detail": f"Not found: {request.path}"}, status=404)


def server_error(request):
    return JsonResponse({"detail": "Internal server error."}, status=500)


def bad_request(request, exception=None):
    if isinstance(exception, RequestDataTooBig):  # /capture answers its own limit; this is every other body
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return JsonResponse({"detail": f"The request body is over {limit} bytes."}, status=413)
    if isinstance(exception, DisallowedHost):
        host = request.META.get("HTTP_HOST", "")
        return JsonResponse({"detail": f"This server does not answer to the host {quoted(host)}."}, status=400)
    return JsonResponse({"detail": "Bad request."}, status=400)


def permission_denied(request, exception=None):
    return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
