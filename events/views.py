"""Thin HTTP endpoints: check the request, call a service or selector, serialize what it returns."""

from collections import Counter

from django.contrib.admin.models import ADDITION, CHANGE
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.http import Http404, HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from events.capture import answer_capture
from events.errors import RETRY_AFTER_SECONDS
from events.filters import EventSearchFilterSet
from events.models import MAX_ID, Environment, EventBase, EventGroup, Service
from events.observability import database_answers, metrics_text
from events.permissions import CanReadOrTriage, CanTriage
from events.quoting import listed, quoted
from events.schema import search_parameters
from events.selectors import instance_detail, search_bases
from events.serializers import (
    AssignGroupResultSerializer,
    AssignGroupSerializer,
    DetailSerializer,
    EnvironmentSerializer,
    EventGroupSerializer,
    SearchResultSerializer,
    ServiceSerializer,
)
from events.triage import TriageInvalid, assign_groups, delete_group, group_kept, record_history

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
        'An array answers {"results": [...]} in the same order, and is stored all or nothing. '
        "The body is uncompressed JSON: a Content-Encoding other than identity is a 415.",
    )
    def post(self, request):
        # The production server answers this path in events.capture before Django sees it; the same
        # answer_capture answers it here (the test client, and any other WSGI server).
        answer = answer_capture(
            request._request,  # a chunked body too (eventsum_project.wsgi)
            request.META.get("CONTENT_LENGTH"),
            request.headers.get("X-Eventsum-Key"),
            request.headers.get("Content-Encoding"),
        )
        return answer.as_response()


def single_valued(params):
    """The query parameters, refused with a 400 when one of them is given twice with different values:
    which one was meant can't be guessed (Django would silently take the last)."""
    if repeated := {name: values for name, values in params.lists() if len(set(values)) > 1}:
        raise ValidationError(
            {
                name: [f"Given more than once with different values ({listed(values, quoted)}): send one."]
                for name, values in sorted(repeated.items())
            }
        )
    return params


class SearchView(GenericAPIView):
    """GET /search: the bases with occurrences in a time window, with counts and datapoints."""

    queryset = EventBase.objects.none()
    filterset_class = EventSearchFilterSet
    filter_backends = [DjangoFilterBackend]  # documents the parameters; search_bases applies them
    pagination_class = None

    @extend_schema(parameters=search_parameters(), responses={200: SearchResultSerializer})
    def get(self, request):
        return Response({"events": search_bases(single_valued(request.query_params))})


class DetailView(APIView):
    """GET /detail: one event instance with its latest raw data and its base."""

    @extend_schema(
        parameters=[
            OpenApiParameter("event_instance_id", int, description="Event instance id (required)."),
            OpenApiParameter("event_id", int, description="Alias of event_instance_id."),
        ],
        responses={200: DetailSerializer},
    )
    def get(self, request):
        params = single_valued(request.query_params)
        given, alias = params.get("event_instance_id"), params.get("event_id")
        if given and alias and given != alias:
            raise ValidationError(
                {
                    "event_id": [
                        f"event_instance_id {quoted(given)} and event_id {quoted(alias)} disagree: send one of them."
                    ]
                }
            )
        name = "event_instance_id" if "event_instance_id" in params else "event_id"
        raw = params.get(name)
        if raw is None:
            raise ValidationError({"event_instance_id": ["This parameter is required (event_id is accepted too)."]})
        try:
            instance_id = int(raw)
            if not 1 <= instance_id <= MAX_ID:
                raise ValueError
        except ValueError:
            raise ValidationError({name: [f"{quoted(raw)} is not a valid id."]}) from None
        return Response(instance_detail(instance_id))


class AssignGroupView(APIView):
    """POST /assign_group: one {event_id, group_id} object or an array; all or nothing."""

    permission_classes = [CanTriage]

    @extend_schema(request=AssignGroupSerializer(many=True), responses={200: AssignGroupResultSerializer})
    def post(self, request):
        many = isinstance(request.data, list)
        if many and not request.data:
            raise ValidationError({"detail": "Empty array: send at least one assignment."})
        serializer = AssignGroupSerializer(data=request.data, many=many)
        serializer.is_valid(raise_exception=True)
        items = serializer.validated_data if many else [serializer.validated_data]
        try:
            updated = assign_groups([(item["event_id"], item["group_id"]) for item in items], request.user)
        except TriageInvalid as invalid:
            raise ValidationError(invalid.detail) from None
        return Response({"updated": updated})


def name_taken(name: str) -> str:
    return f"An event group named {name!r} already exists."


def refuse_taken(names: list[str], many: bool) -> None:
    """A 400 naming each name a group already has, by index in an array."""
    taken = set(EventGroup.objects.filter(name__in=names).values_list("name", flat=True))
    if errors := {str(index): {"name": [name_taken(name)]} for index, name in enumerate(names) if name in taken}:
        raise ValidationError(errors if many else errors["0"])


class EventGroupViewSet(viewsets.ModelViewSet):
    """/groups: list with base counts, create one or many, retrieve, partial update, delete."""

    serializer_class = EventGroupSerializer
    permission_classes = [CanReadOrTriage]
    pagination_class = None
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]

    def get_queryset(self):
        return EventGroup.objects.annotate(base_count=Count("event_bases")).order_by("id")

    def list(self, request, *args, **kwargs):
        # The bases counted per group in one pass, then matched to the groups: joining every base to its group
        # before counting took 2.3 s a list at a million bases, this 0.16 s (0.06 once vacuumed).
        groups = list(EventGroup.objects.order_by("id"))
        counts = dict(EventBase.objects.order_by().values_list("event_group_id").annotate(n=Count("*")))
        for group in groups:
            group.base_count = counts.get(group.id, 0)
        return Response(self.get_serializer(groups, many=True).data)

    def get_object(self):
        try:
            return super().get_object()
        except Http404:  # DRF's own says "No EventGroup matches the given query.", or "Not found." for "abc"
            raise NotFound(f"No group with id {quoted(self.kwargs[self.lookup_field])}.") from None

    @extend_schema(request=EventGroupSerializer(many=True), responses={201: EventGroupSerializer(many=True)})
    def create(self, request, *args, **kwargs):
        many = isinstance(request.data, list)
        if many and not request.data:
            raise ValidationError({"detail": "Empty array: send at least one group."})
        serializer = self.get_serializer(data=request.data, many=many)
        serializer.is_valid(raise_exception=True)
        names = [item["name"] for item in (serializer.validated_data if many else [serializer.validated_data])]
        if duplicates := sorted(name for name, count in Counter(names).items() if count > 1):
            raise ValidationError({"name": [f"Named more than once: {listed(duplicates, quoted)}."]})
        # Names taken are looked up once for the whole array (the serializer's own check was a query per
        # group: 20,000 groups took 32 s), and again if another request takes one before the insert.
        refuse_taken(names, many)
        try:
            with transaction.atomic():
                created = EventGroup.objects.bulk_create(EventGroup(name=name) for name in names)
                record_history(
                    request.user, EventGroup, [(g.pk, g.name, "Created via API.") for g in created], ADDITION
                )
        except IntegrityError:
            refuse_taken(names, many)
            raise ValidationError({"name": ["Another request took one of these names; retry."]}) from None
        for group in created:
            group.base_count = 0
        answer = self.get_serializer(created, many=True).data
        return Response(answer if many else answer[0], status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        group, old_name = serializer.instance, serializer.instance.name
        try:
            with group_kept(group):
                serializer.save()
                if group.name != old_name:
                    message = f"Renamed from {old_name!r} to {group.name!r} via API."
                    record_history(self.request.user, EventGroup, [(group.pk, group.name, message)], CHANGE)
        except IntegrityError:
            raise ValidationError({"name": [name_taken(serializer.validated_data["name"])]}) from None

    def destroy(self, request, *args, **kwargs):
        try:
            delete_group(self.get_object(), request.user)
        except TriageInvalid as invalid:
            raise ValidationError(invalid.detail) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServiceListView(ListAPIView):
    """GET /services: ids and names."""

    queryset = Service.objects.order_by("id")
    serializer_class = ServiceSerializer
    pagination_class = None
    filter_backends = []


class EnvironmentListView(ListAPIView):
    """GET /environments: ids and names."""

    queryset = Environment.objects.order_by("id")
    serializer_class = EnvironmentSerializer
    pagination_class = None
    filter_backends = []


class HealthView(APIView):
    """GET /health: 200 when the database answers, else 503."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: inline_serializer("Health", {"status": serializers.CharField()})})
    def get(self, request):
        if database_answers():
            return Response({"status": "ok"})
        response = Response({"status": "unavailable", "detail": "The database does not answer."}, status=503)
        response["Retry-After"] = RETRY_AFTER_SECONDS
        return response


class MetricsView(APIView):
    """GET /metrics: Prometheus text format."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR})
    def get(self, request):
        return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
