"""The parameters of GET /search, as a django-filter FilterSet: validation and the filters on event bases."""

from datetime import UTC, datetime, timedelta

import django_filters
from django import forms
from django.db.models import Q

from events.models import MAX_ID, EventBase, normalize_name
from events.timeparse import parse_time
from grouping.search_text import trigrams_of

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
DEFAULT_WINDOW = timedelta(hours=1)
SORTS = ("count", "recent", "increased")
HASH_PATTERN = "[0-9a-fA-F]{64}"


class TimeFormField(forms.Field):
    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_time(value)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None


class TimeFilter(django_filters.Filter):
    """A window edge; the selector applies it to occurrence buckets, not to the bases."""

    field_class = TimeFormField

    def filter(self, qs, value):
        return qs


class HashFormField(forms.RegexField):
    """A SHA-256 in hex, as every processed_data_hash is: anything else could never match, so it is a 400."""

    def __init__(self, **kwargs):
        kwargs.setdefault("error_messages", {"invalid": "Enter 64 hexadecimal digits (a processed_data_hash)."})
        super().__init__(rf"\A{HASH_PATTERN}\Z", **kwargs)


class HashFilter(django_filters.CharFilter):
    field_class = HashFormField


class IntegerFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField  # NumberFilter's own takes decimals: an id or a limit of 2.5 is a 400


class SearchForm(forms.Form):
    def clean(self):
        data = super().clean()
        if not self.errors and data.get("service_id") is None and not data.get("service"):
            raise forms.ValidationError({"service_id": "This parameter is required (or give `service` by name)."})
        end = data.get("end_time") or datetime.now(UTC)
        start = data.get("start_time") or end - DEFAULT_WINDOW
        if start >= end:
            raise forms.ValidationError({"start_time": f"start_time must be before end_time ({start} >= {end})."})
        data["start_time"], data["end_time"] = start, end
        data["limit"] = data.get("limit") or DEFAULT_LIMIT
        data["sort"] = data.get("sort") or "count"
        return data


class EventSearchFilterSet(django_filters.FilterSet):
    service_id = IntegerFilter(
        field_name="service_id",
        min_value=1,
        max_value=MAX_ID,
        help_text="Service id (required unless `service` is given).",
    )
    service = django_filters.CharFilter(
        method="filter_service_name", help_text="Service by name, any spelling (with service_id, the same service)."
    )
    env_id = IntegerFilter(field_name="environment_id", min_value=1, max_value=MAX_ID, help_text="Environment id.")
    environment = django_filters.CharFilter(
        method="filter_environment_name", help_text="Environment by name (with env_id, the same environment)."
    )
    group_id = IntegerFilter(field_name="event_group_id", min_value=0, max_value=MAX_ID, help_text="Group id.")
    hash = HashFilter(
        method="filter_hash",
        help_text="processed_data_hash: 64 hexadecimal digits (case does not matter).",
    )
    keywords = django_filters.CharFilter(
        method="no_filter",  # validated here; search_bases applies it to the bases active in the window
        max_length=500,
        help_text="Whitespace-separated words; each must appear, case-insensitively, in the name, type, "
        "a message, or a frame's function, module or filename.",
    )
    start_time = TimeFilter(help_text="Window start (inclusive); default end_time minus one hour.")
    end_time = TimeFilter(help_text="Window end (exclusive); default now.")
    limit = IntegerFilter(
        method="no_filter", min_value=1, max_value=MAX_LIMIT, help_text=f"At most {MAX_LIMIT}; default {DEFAULT_LIMIT}."
    )
    sort = django_filters.ChoiceFilter(
        method="no_filter",
        choices=[(sort, sort) for sort in SORTS],
        help_text="count (default: total in the window, descending), recent (last seen), or increased.",
    )

    class Meta:
        model = EventBase
        fields = []
        form = SearchForm

    def get_form_class(self):
        # django-filter makes a new form class for every request (each filter's form field built anew and a
        # class made through the forms' metaclass): most of the time /search spends on its parameters.
        # Nothing in these fields depends on the request, so one class serves every request.
        cls = type(self)
        if "_form_class" not in cls.__dict__:
            cls._form_class = super().get_form_class()
        return cls._form_class

    def filter_service_name(self, queryset, name, value):
        return queryset.filter(service__normalized_name=normalize_name(value))

    def filter_hash(self, queryset, name, value):
        return queryset.filter(processed_data_hash=value.lower())  # stored lower-case

    def filter_environment_name(self, queryset, name, value):
        return queryset.filter(environment__normalized_name=normalize_name(value))

    def no_filter(self, queryset, name, value):
        return queryset


def keyword_condition(words: str, *, indexed: bool, prefix: str = "") -> Q:
    """Every word, case-insensitively, in a base's search texts (an EventBaseSearch row, or a base through
    `prefix="search__"`). `indexed` adds each word's trigrams, which a text holding the word always has,
    so the GIN index can narrow a search over many bases; on a few hundred known bases, testing the
    texts alone costs a third as much."""
    condition = Q()
    for word in words.lower().split():
        matches = Q(**{f"{prefix}static_text__contains": word}) | Q(**{f"{prefix}messages_text__contains": word})
        pieces = trigrams_of(word)
        if indexed and pieces:
            matches &= Q(**{f"{prefix}trigrams__contains": sorted(pieces)})
        condition &= matches
    return condition
