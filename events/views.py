"""Thin HTTP endpoints: check the request, call a service or selector, serialize what it returns."""

import hmac

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from events.errors import InvalidIngestKey, PayloadTooLarge
from events.services import CaptureInvalid, capture_events, parse_capture_body

CaptureResultSerializer = inline_serializer(
    "CaptureResult",
    {
        "event_base_id": serializers.IntegerField(),
        "event_instance_id": serializers.IntegerField(),
        "event_group_id": serializers.IntegerField(),
    },
)


class CaptureView(APIView):
    """POST /capture: one event object or an array of them."""

    authentication_classes = []  # capture is open, or guarded by X-Eventsum-Key; never by session/CSRF
    permission_classes = [AllowAny]
    parser_classes = []  # the body is read raw: any Content-Type, our own limits and error messages

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: CaptureResultSerializer},
        examples=[
            OpenApiExample(
                "One event",
                value={
                    "service": "WISH FE",
                    "environment": "PROD",
                    "event_name": "ZeroDivisionError",
                    "event_type": "python",
                    "event_data": {"message": "integer division or modulo by zero", "raw_data": {"frames": []}},
                },
                request_only=True,
            )
        ],
        description="Body: one event object, or an array of up to EVENTSUM_MAX_BATCH of them. "
        "An array answers {\"results\": [...]} in the same order, and is stored all or nothing.",
    )
    def post(self, request):
        self._check_ingest_key(request)
        body = self._read_body(request)
        try:
            payloads = parse_capture_body(body)
            results = capture_events(payloads)
        except CaptureInvalid as invalid:
            raise ValidationError(invalid.detail) from None
        answers = [
            {
                "event_base_id": result.event_base_id,
                "event_instance_id": result.event_instance_id,
                "event_group_id": result.event_group_id,
            }
            for result in results
        ]
        if body.lstrip()[:1] == b"[":
            return Response({"results": answers})
        return Response(answers[0])

    @staticmethod
    def _check_ingest_key(request) -> None:
        keys = settings.EVENTSUM_INGEST_KEYS
        if not keys:
            return
        given = request.headers.get("X-Eventsum-Key", "")
        if not any(hmac.compare_digest(given.encode(), key.encode()) for key in keys):
            raise InvalidIngestKey()

    @staticmethod
    def _read_body(request) -> bytes:
        limit = settings.EVENTSUM_MAX_BODY_BYTES
        too_large = PayloadTooLarge(f"Body exceeds EVENTSUM_MAX_BODY_BYTES={limit} bytes.")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise too_large
        body = request._request.read(limit + 1)
        if len(body) > limit:
            raise too_large
        return body
