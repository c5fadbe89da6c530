"""The triage dashboard (SPEC section 5). Writes go through events.triage, like the API's."""

import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION
from django.db import IntegrityError, transaction
from django.db.models.expressions import RawSQL
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from events.admin_views import (
    CappedCountPaginator,
    LastSeenFilter,
    RecentFirstChangeList,
    ShownRowsChangeList,
    distinct_values,
    hourly_counts,
    pretty_json,
    stack_trace,
    svg_chart,
)
from events.filters import HASH_PATTERN, keyword_condition
from events.models import DEFAULT_GROUP_ID, Environment, EventBase, EventGroup, EventInstance, Service, normalize_name
from events.services import BASE_COLUMNS_OF, delete_unused, with_bases
from events.timeparse import format_time
from events.triage import TriageInvalid, assign_groups, assign_selection, delete_group, group_kept, record_history
from grouping.pipeline import sanitize


class EventTypeFilter(admin.SimpleListFilter):
    title = "type"
    parameter_name = "event_type"

    def lookups(self, request, model_admin):
        return [(value, value) for value in distinct_values("events_eventbase", "event_type")]

    def queryset(self, request, queryset):
        # The value as a captured type is stored (a NUL, which PostgreSQL refuses, as U+FFFD).
        return queryset.filter(event_type=sanitize(self.value())) if self.value() else queryset


class AssignGroupForm(forms.Form):
    group = forms.ModelChoiceField(EventGroup.objects.order_by("id"), required=False, label="Existing group")
    new_group = forms.CharField(max_length=200, required=False, label="…or a new group named")

    def clean(self):
        data = super().clean()
        if self.errors:  # a choice that is not a group, say: that error says what is wrong
            return data
        if bool(data.get("group")) == bool(data.get("new_group", "").strip()):
            raise forms.ValidationError("Pick an existing group or name a new one (not both).")
        return data


class InstanceOccurrences:
    """The occurrences column of instance lists and pages."""

    @admin.display(description="occurrences")
    def occurrences(self, instance):
        return instance.total_count


INSTANCES_SHOWN = 50


class LatestInstancesFormSet(BaseInlineFormSet):
    """The base page's instances: the INSTANCES_SHOWN most recently seen (a base can have thousands; 5,000
    took 9 s to render). The base's "instances" field counts them all and links to their list."""

    def get_queryset(self):
        if not hasattr(self, "_latest"):
            self._latest = list(super().get_queryset()[:INSTANCES_SHOWN])
        return self._latest


class EventInstanceInline(InstanceOccurrences, admin.TabularInline):
    model = EventInstance
    formset = LatestInstancesFormSet
    fields = ["instance_link", "latest_message", "occurrences", "first_seen", "last_seen"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ["-last_seen"]
    verbose_name_plural = f"instances (the {INSTANCES_SHOWN} seen last)"

    def get_queryset(self, request):
        # The row's JSON (the raw event, its details) is for the instance's own page, not this table.
        return (
            super()
            .get_queryset(request)
            .defer("generic_data", "filters", "raw_data", "raw_details", "processed_details")
        )

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="instance")
    def instance_link(self, instance):
        url = reverse("admin:events_eventinstance_change", args=[instance.pk])
        return format_html('<a href="{}">#{}</a>', url, instance.pk)


class ShownRowsAdmin(admin.ModelAdmin):
    """A list whose queryset carries per-row subqueries: they run for the shown page only."""

    def get_changelist(self, request, **kwargs):
        return ShownRowsChangeList


@admin.register(EventBase)
class EventBaseAdmin(ShownRowsAdmin):
    list_display = [
        "title",
        "service",
        "environment",
        "event_type",
        "event_group",
        "total",
        "last_24h",
        "chart",
        "first",
        "last",
    ]
    list_display_links = ["title"]
    show_facets = admin.ShowFacets.NEVER  # facet counts would scan every base on each page
    list_filter = ["service", "environment", "event_group", EventTypeFilter, ("last_seen", LastSeenFilter)]
    list_select_related = ["service", "environment", "event_group"]
    search_fields = ["event_name"]  # replaced by get_search_results: the indexed keyword search
    search_help_text = "Words in the name, type, messages or frames, or a processed data hash."
    ordering = ["-last_seen", "-id"]  # through last_seen_hour (RecentFirstChangeList)
    list_per_page = 50
    paginator = CappedCountPaginator
    show_full_result_count = False
    actions = ["assign_to_group"]
    inlines = [EventInstanceInline]
    fields = [
        "title",
        "service",
        "environment",
        "event_type",
        "event_group",
        "latest_message",
        "total",
        "instances",
        "chart",
        "first_seen",
        "last_seen",
        "processed_data_hash",
        "normalization_version",
        "trace",
    ]
    readonly_fields = [name for name in fields if name != "event_group"]

    def get_changelist(self, request, **kwargs):
        return RecentFirstChangeList

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(hourly=hourly_counts("event_base_id", "events_eventbase"))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if re.fullmatch(HASH_PATTERN, term):
            return queryset.filter(processed_data_hash=term.lower()), False
        return queryset.filter(keyword_condition(term, indexed=True, prefix="search__")), False

    def has_add_permission(self, request):
        return False  # bases come from captures

    def has_delete_permission(self, request, obj=None):
        return False  # retention prunes; deleting one base would only make it reappear

    @admin.display(description="event", ordering="event_name")
    def title(self, base):
        return format_html("<b>{}</b><br><small>{}</small>", base.event_name, base.latest_message[:120])

    @admin.display(description="first seen", ordering="first_seen")
    def first(self, base):
        return format_time(base.first_seen)

    @admin.display(description="last seen", ordering="-last_seen")
    def last(self, base):
        return format_time(base.last_seen)

    @admin.display(description="instances")
    def instances(self, base):
        url = reverse("admin:events_eventinstance_changelist")
        count = base.instances.count()
        return format_html('<a href="{}?event_base__id__exact={}">all {} →</a>', url, base.pk, count)

    @admin.display(description="total")
    def total(self, base):
        return base.total_count

    @admin.display(description="24h")
    def last_24h(self, base):
        return sum(base.hourly or [])

    @admin.display(description="last 24 hours")
    def chart(self, base):
        return svg_chart(base.hourly)

    @admin.display(description="stack trace (processed)")
    def trace(self, base):
        return stack_trace(base.processed_data, with_vars=False)

    def save_model(self, request, obj, form, change):
        # Only the group is editable; it goes through the same service as the API, which records history.
        if change and "event_group" in form.changed_data:
            assign_groups([(obj.pk, obj.event_group_id)], request.user, via="admin")

    def log_change(self, request, obj, message):
        return None  # events.triage.assign_groups recorded the change with its group name

    @admin.action(description="Assign to group…", permissions=["change"])
    def assign_to_group(self, request, queryset):
        form = AssignGroupForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                group = form.cleaned_data["group"]
                if group is None:
                    with transaction.atomic():
                        group = EventGroup.objects.create(name=form.cleaned_data["new_group"].strip())
                        record_history(
                            request.user, EventGroup, [(group.pk, group.name, "Created via admin.")], ADDITION
                        )
                # Not in the creation's transaction: the move commits batch by batch (events.triage).
                updated = assign_selection(queryset, group.pk, request.user, via="admin")
            except IntegrityError:
                form.add_error("new_group", "A group with this name already exists.")
            except TriageInvalid as invalid:
                form.add_error(None, str(invalid.detail))
            else:
                self.message_user(request, f"{updated} event bases moved to group “{group.name}”.", messages.SUCCESS)
                return HttpResponseRedirect(request.get_full_path())
        return TemplateResponse(
            request,
            "admin/events/assign_group.html",
            {
                **self.admin_site.each_context(request),
                "title": "Assign event bases to a group",
                "opts": self.model._meta,
                "form": form,
                "bases": queryset.select_related("event_group")[:200],
                "count": queryset.count(),
                "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
                "action": "assign_to_group",
                "select_across": request.POST.get("select_across", "0"),
            },
        )


@admin.register(EventInstance)
class EventInstanceAdmin(InstanceOccurrences, ShownRowsAdmin):
    list_display = ["__str__", "event_base", "latest_message", "occurrences", "first_seen", "last_seen"]
    list_select_related = ["event_base"]
    ordering = ["-id"]  # newest first, by the primary key: last_seen has no index (see the model)
    paginator = CappedCountPaginator
    show_full_result_count = False
    fields = [
        "base_link",
        "latest_message",
        "occurrences",
        "chart",
        "first_seen",
        "last_seen",
        "generic_data_hash",
        "raw_trace",
        "extra_args",
        "processed_details_json",
        "filters_json",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(hourly=hourly_counts("event_instance_id", "events_eventinstance"))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # read-only: the page is for looking

    @admin.display(description="event base")
    def base_link(self, instance):
        url = reverse("admin:events_eventbase_change", args=[instance.event_base_id])
        return format_html('<a href="{}">{}</a>', url, instance.event_base)

    @admin.display(description="last 24 hours")
    def chart(self, instance):
        return svg_chart(instance.hourly, width=480, height=60)

    @admin.display(description="stack trace (raw, latest occurrence)")
    def raw_trace(self, instance):
        return stack_trace(instance.raw_data, with_vars=True)

    @admin.display(description="extra_args")
    def extra_args(self, instance):
        return pretty_json(instance.raw_details)

    @admin.display(description="processed details")
    def processed_details_json(self, instance):
        return pretty_json(instance.processed_details)

    @admin.display(description="filters")
    def filters_json(self, instance):
        return pretty_json(instance.filters)


class BaseCountAdmin(ShownRowsAdmin):
    """Groups, services and environments: base counts, and a link to their bases.

    Each count stops at CappedCountPaginator.CAP + 1 rows (shown as "10000+"), so a list stays quick
    when a service or group holds a million bases.
    """

    filter_parameter: str
    base_column: str

    def get_queryset(self, request):
        cap = CappedCountPaginator.CAP
        return (
            super()
            .get_queryset(request)
            .annotate(
                base_count=RawSQL(
                    f"SELECT count(*) FROM (SELECT 1 FROM events_eventbase b "
                    f"WHERE b.{self.base_column} = {self.model._meta.db_table}.id LIMIT %s) AS capped",
                    [cap + 1],
                )
            )
        )

    @admin.display(description="event bases")
    def bases(self, obj):
        url = reverse("admin:events_eventbase_changelist") + f"?{self.filter_parameter}={obj.pk}"
        shown = f"{CappedCountPaginator.CAP}+" if obj.base_count > CappedCountPaginator.CAP else obj.base_count
        return format_html('<a href="{}">{} bases</a>', url, shown)


@admin.register(EventGroup)
class EventGroupAdmin(BaseCountAdmin):
    list_display = ["id", "name", "bases", "created_at"]
    list_display_links = ["name"]
    search_fields = ["name"]
    filter_parameter = "event_group__id__exact"
    base_column = "event_group_id"

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj is not None and obj.pk == DEFAULT_GROUP_ID else []

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        with group_kept(obj):
            return super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.pk == DEFAULT_GROUP_ID:
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs, request):
        # Django's collector reads every base of the groups, whole, to list what their deletion touches: a
        # group of a million bases never got its confirmation page. Only the groups go; their bases move.
        groups = [group for group in objs if group.pk != DEFAULT_GROUP_ID]
        listed = [
            format_html(
                '{}: <a href="{}">{}</a> (its {} move to group 0)',
                EventGroup._meta.verbose_name.capitalize(),
                reverse("admin:events_eventgroup_change", args=[group.pk]),
                group,
                self.bases(group),
            )
            for group in groups
        ]
        if len(groups) < len(objs):
            listed.append("Group 0 (default) is kept: it is never deleted.")
        return listed, {EventGroup._meta.verbose_name_plural: len(groups)}, set(), []

    def delete_model(self, request, obj):
        delete_group(obj, request.user, via="admin")

    def delete_queryset(self, request, queryset):
        for group in queryset.exclude(pk=DEFAULT_GROUP_ID):
            delete_group(group, request.user, via="admin")

    def log_deletions(self, request, queryset):
        return None  # delete_group recorded it, with how many bases moved


class NamedEntityForm(forms.ModelForm):
    """A service's or environment's identity is its normalized name, which captures name it by (and each
    web process remembers the id of): the admin adds a new one, or changes how one is written, never
    makes one stand for another name."""

    def clean_name(self):
        name = self.cleaned_data["name"]
        key, model = normalize_name(name), self._meta.model
        kind = model._meta.verbose_name
        known = self.instance.normalized_name if self.instance.pk is not None else None
        if known is not None and key != known:
            raise forms.ValidationError(
                f"Captures name this {kind} {known!r}; {name!r} would be another {kind} ({key!r}). "
                "Change only its case, spaces or hyphens."
            )
        if known is None and (taken := model.objects.filter(normalized_name=key).first()):
            raise forms.ValidationError(f"The {kind} {taken.name!r} already has this name ({key!r}).")
        return name


class NamedEntityAdmin(BaseCountAdmin):
    form = NamedEntityForm
    list_display = ["id", "name", "normalized_name", "bases", "created_at"]
    list_display_links = ["name"]
    search_fields = ["name", "normalized_name"]
    readonly_fields = ["normalized_name", "created_at"]

    def has_delete_permission(self, request, obj=None):
        # Only one with no event bases goes (events.services.delete_unused), such as a name a client made up.
        if obj is not None and with_bases(self.model, [obj.pk]):
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs, request):
        # Django's collector would read every base of a used one, whole, to list it as protected.
        by_id = {obj.pk: obj for obj in objs}
        used = with_bases(self.model, list(by_id))
        verbose_name = self.model._meta.verbose_name
        protected = [f"{verbose_name.capitalize()} {by_id[pk]} has event bases" for pk in sorted(used)]
        unused = [obj for pk, obj in by_id.items() if pk not in used]
        return [f"{verbose_name.capitalize()}: {obj}" for obj in unused], {verbose_name: len(unused)}, set(), protected

    def delete_model(self, request, obj):
        delete_unused(self.model, [obj.pk])

    def delete_queryset(self, request, queryset):
        delete_unused(self.model, queryset.values("pk"))


@admin.register(Service)
class ServiceAdmin(NamedEntityAdmin):
    filter_parameter = "service__id__exact"
    base_column = BASE_COLUMNS_OF[Service]


@admin.register(Environment)
class EnvironmentAdmin(NamedEntityAdmin):
    filter_parameter = "environment__id__exact"
    base_column = BASE_COLUMNS_OF[Environment]
