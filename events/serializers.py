from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from events.models import DEFAULT_GROUP_ID, MAX_ID, Environment, EventGroup, Service
from events.services import json_type
from events.timeparse import format_time


class AssignGroupSerializer(serializers.Serializer):
    event_id = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="Event base id.")
    group_id = serializers.IntegerField(min_value=0, max_value=MAX_ID, required=False, help_text="Group id.")
    groupd_id = serializers.IntegerField(
        min_value=0,
        max_value=MAX_ID,
        required=False,
        write_only=True,
        help_text="Accepted as group_id (the user's document spells it so).",
    )

    def validate(self, data):
        spelled = data.pop("groupd_id", None)
        if "group_id" not in data:
            if spelled is None:
                raise serializers.ValidationError({"group_id": ["This field is required."]})
            data["group_id"] = spelled
        elif spelled is not None and spelled != data["group_id"]:
            raise serializers.ValidationError(
                {"group_id": [f"group_id {data['group_id']} and groupd_id {spelled} disagree: send one of them."]}
            )
        return data


class AssignGroupResultSerializer(serializers.Serializer):
    updated = serializers.IntegerField(help_text="How many bases changed group.")


@extend_schema_field(OpenApiTypes.STR)
class TimeField(serializers.DateTimeField):
    """A read-only time written in EVENTSUM_TIME_FORMAT (UTC), like every other time the API answers."""

    def to_representation(self, value):
        return format_time(value)


class StringField(serializers.CharField):
    """A string as sent: DRF's CharField also takes a number and writes it out, so {"name": 1e400} made a
    group called "inf"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError(f"Expected a string, got {json_type(data)}.")
        return super().to_internal_value(data)


class EventGroupSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {**serializers.ModelSerializer.serializer_field_mapping, models.CharField: StringField}
    created_at = TimeField(read_only=True)
    base_count = serializers.IntegerField(read_only=True, help_text="How many event bases the group holds.")

    class Meta:
        model = EventGroup
        fields = ["id", "name", "base_count", "created_at"]
        read_only_fields = ["id", "created_at"]
        # Uniqueness is checked by the view, for a whole array in one query (DRF's validator asks per group),
        # and by the database's constraint.
        extra_kwargs = {"name": {"validators": []}}

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("This field may not be blank.")
        if self.instance is not None and self.instance.pk == DEFAULT_GROUP_ID and value != self.instance.name:
            raise serializers.ValidationError("Group 0 (default) cannot be renamed.")
        return value


class ServiceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Service
        fields = ["id", "name", "normalized_name"]


class EnvironmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Environment
        fields = ["id", "name", "normalized_name"]


class DatapointSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    start = serializers.IntegerField(help_text="Unix time in milliseconds.")


class SearchEventSerializer(serializers.Serializer):
    """One base in a /search answer (documentation of the shape the selector returns)."""

    id = serializers.IntegerField()
    event_type = serializers.CharField()
    event_name = serializers.CharField()
    event_group_id = serializers.IntegerField()
    event_environment_id = serializers.IntegerField()
    service_id = serializers.IntegerField()
    total_count = serializers.IntegerField(help_text="Occurrences inside the window.")
    processed_data = serializers.JSONField()
    hash = serializers.CharField(help_text="processed_data_hash")
    instance_ids = serializers.ListField(child=serializers.IntegerField())
    datapoints = DatapointSerializer(many=True)
    first_seen = serializers.CharField()
    last_seen = serializers.CharField()
    message = serializers.CharField(help_text="The latest message.")


class SearchResultSerializer(serializers.Serializer):
    events = SearchEventSerializer(many=True)


class DetailSerializer(serializers.Serializer):
    event_instance_id = serializers.IntegerField()
    event_base_id = serializers.IntegerField()
    event_group_id = serializers.IntegerField()
    event_environment_id = serializers.IntegerField()
    service_id = serializers.IntegerField()
    event_type = serializers.CharField()
    event_name = serializers.CharField()
    message = serializers.CharField()
    raw_data = serializers.JSONField(help_text="The event_data of the latest occurrence.")
    raw_details = serializers.JSONField(help_text="Its extra_args.")
    generic_data = serializers.JSONField()
    processed_data = serializers.JSONField()
    processed_details = serializers.JSONField()
    first_seen = serializers.CharField()
    last_seen = serializers.CharField()
    total_count = serializers.IntegerField()
    counters = serializers.JSONField(help_text="Grouping counters summed over all buckets.")
