"""The capture service: every way in (the API view, the admin, management commands, benchmarks, tests)
calls `capture_events`.

The steps, each a function: validate every payload (all-or-nothing), normalize through the grouping
pipeline, resolve service and environment ids, coalesce identical occurrences, and write bases, instances
and buckets with one `INSERT ... ON CONFLICT` statement, so that concurrent captures never duplicate a
row or lose a count and a batch is stored whole or not at all.
"""

import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from psycopg2 import errors as pg_errors

from events.models import DEFAULT_GROUP_ID, Environment, EventBase, Service, normalize_name
from events.observability import record_stored
from events.prepared import PreparedStatement
from events.quoting import ITEMS_LISTED, listed, quoted
from events.timeparse import bucket_seconds, bucket_start, parse_time
from grouping.hashing import compact_json
from grouping.memo import BoundedMemo
from grouping.pipeline import NORMALIZATION_VERSION, STAGES, FilterFailed, grouping_counters, normalize, sanitize
from grouping.registry import FILTERS, GROUPINGS, unknown_filters, unknown_groupings
from grouping.search_text import static_search_text, trigrams_of

MAX_NAME_LENGTH = 200
# The environment of a capture that names none: created on first use even with EVENTSUM_AUTO_CREATE=false,
# which refuses names a client made up, not the service's own default.
DEFAULT_ENVIRONMENT = "default"
MAX_TEXT_LENGTH = 1024
FUTURE_TOLERANCE = timedelta(minutes=10)

KNOWN_FIELDS = frozenset(
    {
        "service",
        "environment",
        "event_name",
        "event_type",
        "event_data",
        "extra_args",
        "timestamp",
        "configurable_filters",
        "configurable_groupings",
    }
)


class CaptureInvalid(Exception):
    """A payload that can't be stored; `detail` is the DRF-shaped error naming what is wrong."""

    def __init__(self, detail: dict):
        self.detail = detail
        super().__init__(detail)


class CaptureTooLarge(Exception):
    """An array that could never be stored as it is (more events for one service than its rate limit)."""

    def __init__(self, detail: str):
        self.detail = detail
        super().__init__(detail)


class CaptureThrottled(Exception):
    """Over EVENTSUM_RATE_LIMIT: nothing was stored; retry after `wait` seconds."""

    def __init__(self, detail: str, wait: int):
        self.detail = detail
        self.wait = wait
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class CaptureResult:
    event_base_id: int
    event_instance_id: int
    event_group_id: int


@dataclass(slots=True)
class PreparedEvent:
    service_key: str
    service_name: str
    environment_key: str
    environment_name: str
    event_type: str
    event_name: str
    occurred_at: datetime
    message: str
    processed_data_json: str
    processed_data_hash: str
    generic_data_json: str
    generic_data_hash: str
    raw_data_json: str
    raw_details_json: str
    processed_details_json: str
    filters_json: str
    counters: dict


# --- 1. validation and normalization ----------------------------------------------------------------


def prepare_event(payload, received_at: datetime) -> PreparedEvent:
    if not isinstance(payload, dict):
        raise CaptureInvalid({"non_field_errors": [f"Expected an event object, got {json_type(payload)}."]})
    errors: dict[str, list[str]] = {}

    def required_text(name: str, max_length: int) -> str:
        value = payload.get(name)
        if value is None:
            errors[name] = [_absent(payload, name)]
        elif not isinstance(value, str):
            errors[name] = [f"Expected a string, got {json_type(value)}."]
        elif not value.strip():
            errors[name] = ["This field may not be blank."]
        elif len(value) > max_length:
            errors[name] = [f"Ensure this field has no more than {max_length} characters."]
        else:
            return value
        return ""

    service = required_text("service", MAX_NAME_LENGTH)
    event_name = required_text("event_name", MAX_TEXT_LENGTH)
    event_type = required_text("event_type", MAX_TEXT_LENGTH)

    environment = payload.get("environment")
    if environment is None or (isinstance(environment, str) and not environment.strip()):
        environment = DEFAULT_ENVIRONMENT
    elif not isinstance(environment, str):
        errors["environment"] = [f"Expected a string, got {json_type(environment)}."]
    elif len(environment) > MAX_NAME_LENGTH:
        errors["environment"] = [f"Ensure this field has no more than {MAX_NAME_LENGTH} characters."]

    event_data = payload.get("event_data")
    if event_data is None:
        errors["event_data"] = [_absent(payload, "event_data")]
    elif not isinstance(event_data, dict):
        errors["event_data"] = [f"Expected an object with message and raw_data, got {json_type(event_data)}."]

    extra_args = payload.get("extra_args")
    if extra_args is None:
        extra_args = {}
    elif not isinstance(extra_args, dict):
        errors["extra_args"] = [f"Expected an object, got {json_type(extra_args)}."]

    filters = _validate_filters(payload.get("configurable_filters"), errors)
    groupings = _validate_groupings(payload.get("configurable_groupings"), errors)

    occurred_at = received_at
    if payload.get("timestamp") is not None:
        try:
            occurred_at = parse_time(payload["timestamp"])
        except ValueError as error:
            errors["timestamp"] = [str(error)]
        else:
            if occurred_at > received_at + FUTURE_TOLERANCE:
                occurred_at = received_at  # a client clock far ahead must not create future buckets

    unknown = sorted(set(payload) - KNOWN_FIELDS)
    if unknown:
        errors["non_field_errors"] = [f"Unknown fields: {listed(unknown, quoted)}."]
    if errors:
        raise CaptureInvalid(errors)

    try:
        normalized = normalize(event_data, extra_args, filters)
        counters = grouping_counters(
            groupings,
            {"message": normalized.message, "event_data": event_data, "extra_args": extra_args},
        )
        raw_data_json = compact_json(event_data)
        raw_details_json = compact_json(extra_args)
    except FilterFailed as error:
        key = "configurable_groupings" if error.stage == "grouping" else "configurable_filters"
        raise CaptureInvalid({key: [str(error)]}) from None
    except RecursionError:
        raise CaptureInvalid({"event_data": ["Nested too deeply."]}) from None
    except (TypeError, ValueError) as error:
        raise CaptureInvalid(
            {"configurable_filters": [f"The filters produced data that is not JSON: {error}"]}
        ) from None

    return PreparedEvent(
        service_key=normalize_name(service),
        service_name=service.strip(),
        environment_key=normalize_name(environment),
        environment_name=environment.strip(),
        event_type=event_type,
        event_name=event_name,
        occurred_at=occurred_at,
        message=normalized.message,
        processed_data_json=normalized.processed_data_json,
        processed_data_hash=normalized.processed_data_hash,
        generic_data_json=normalized.generic_data_json,
        generic_data_hash=normalized.generic_data_hash,
        raw_data_json=raw_data_json,
        raw_details_json=raw_details_json,
        processed_details_json=normalized.processed_details_json,
        filters_json=compact_json(filters),
        counters=counters,
    )


def _absent(payload: dict, name: str) -> str:
    """DRF's words for a required field left out, or sent as null."""
    return "This field may not be null." if name in payload else "This field is required."


def _validate_filters(value, errors: dict) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors["configurable_filters"] = [
            f"Expected an object with lists instance, base, extra_args, got {json_type(value)}."
        ]
        return {}
    problems = []
    filters = {}
    for stage, names in value.items():
        if stage not in STAGES:
            problems.append(f"Unknown stage {quoted(stage)}; use {', '.join(STAGES)}.")
        elif names is None:
            continue
        elif not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            problems.append(f"{stage}: expected a list of filter names.")
        elif names:
            filters[stage] = names
    unknown = unknown_filters([name for names in filters.values() for name in names])
    if unknown:
        problems.append(
            f"Unknown filters: {listed(sorted(set(unknown)), quoted)}. "
            f"Registered filters: {', '.join(sorted(FILTERS))}."
        )
    if problems:
        errors["configurable_filters"] = problems
    return filters


def _validate_groupings(value, errors: dict) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        errors["configurable_groupings"] = ["Expected a list of grouping names."]
        return []
    unknown = unknown_groupings(value)
    if unknown:
        errors["configurable_groupings"] = [
            f"Unknown groupings: {listed(sorted(set(unknown)), quoted)}. "
            f"Registered groupings: {', '.join(sorted(GROUPINGS))}."
        ]
        return []
    return list(dict.fromkeys(value))  # a grouping named twice still counts an occurrence once


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- 2. services and environments ---------------------------------------------------------------------

# Ids never change for a name, so each process remembers them; a stale entry (the row was deleted) shows
# up as a foreign key violation, on which the caches are dropped and the capture retried once. Bounded:
# with auto-create on, a client can name new services without end (~250 bytes each remembered).
_id_caches: dict[type, BoundedMemo] = {Service: BoundedMemo(10_000), Environment: BoundedMemo(10_000)}


def clear_id_caches() -> None:
    for cache in _id_caches.values():
        cache.clear()


def resolve_ids(model: type, names: dict[str, str], always_created: tuple[str, ...] = ()) -> dict[str, int]:
    """Map normalized names to ids, creating unknown ones; with EVENTSUM_AUTO_CREATE=false only those in
    `always_created` are, and the other unknown ones are left out."""
    cache = _id_caches[model]
    ids = {key: cache.peek(key) for key in names}
    looked_up = missing = [key for key, id_ in ids.items() if id_ is None]
    if missing:
        table = model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT normalized_name, id FROM {table} WHERE normalized_name = ANY(%s)", [missing])
            ids.update(cursor.fetchall())
            missing = [key for key in missing if ids[key] is None]
            if not settings.EVENTSUM_AUTO_CREATE:
                missing = [key for key in missing if key in always_created]
            if missing:
                # DO NOTHING instead of a no-op update: no row lock is held for the rest of the capture.
                cursor.execute(
                    f"INSERT INTO {table} (normalized_name, name, created_at) "
                    "SELECT key, name, now() FROM unnest(%s::text[], %s::text[]) AS t(key, name) ORDER BY key "
                    "ON CONFLICT (normalized_name) DO NOTHING RETURNING normalized_name, id",
                    [missing, [names[key] for key in missing]],
                )
                ids.update(cursor.fetchall())
                still = [key for key in missing if ids[key] is None]
                if still:  # created concurrently by another capture: visible to this new statement
                    cursor.execute(f"SELECT normalized_name, id FROM {table} WHERE normalized_name = ANY(%s)", [still])
                    ids.update(cursor.fetchall())
        for key in looked_up:
            if ids[key] is not None:
                cache.put(key, ids[key])
    return {key: id_ for key, id_ in ids.items() if id_ is not None}


# Which column of a base holds each.
BASE_COLUMNS_OF = {Service: "service_id", Environment: "environment_id"}


def with_bases(model: type, ids) -> set[int]:
    """Those of the services (or environments) `ids` that have event bases: one index probe each."""
    holds = EventBase.objects.filter(**{BASE_COLUMNS_OF[model]: OuterRef("pk")})
    return set(model.objects.filter(Exists(holds), pk__in=ids).values_list("pk", flat=True))


def delete_unused(model: type, ids) -> int:
    """Deletes those of the services (or environments) `ids` that have no event bases; returns how many.
    One that has bases keeps them and is kept (they hold it, PROTECT). A capture naming a deleted one
    makes it anew, unless EVENTSUM_AUTO_CREATE is off."""
    with transaction.atomic():
        # Locked first: a capture adding a base under one of them waits until this ends, and one that
        # added a base before is seen by the check.
        locked = list(model.objects.filter(pk__in=ids).order_by("pk").select_for_update().values_list("pk", flat=True))
        _, deleted = model.objects.filter(pk__in=set(locked) - with_bases(model, locked)).delete()
    return deleted.get(model._meta.label, 0)  # not the rate windows that went with them


def unknown_names(events: list[PreparedEvent], service_ids: dict, environment_ids: dict) -> dict:
    """EVENTSUM_AUTO_CREATE=false: the error naming each event's unknown service or environment, per index
    in an array, with the known names (the first ITEMS_LISTED of them)."""
    known = {}
    for field_name, model in (("service", Service), ("environment", Environment)):
        names = list(model.objects.order_by("normalized_name").values_list("name", flat=True)[: ITEMS_LISTED + 1])
        if len(names) > ITEMS_LISTED:
            names[-1] = f"... (GET /{field_name}s lists all {model.objects.count()})"
        known[field_name] = ", ".join(names) or "none"
    errors = {}
    for index, event in enumerate(events):
        detail = {}
        for field_name, key, name, ids in (
            ("service", event.service_key, event.service_name, service_ids),
            ("environment", event.environment_key, event.environment_name, environment_ids),
        ):
            if key not in ids:
                detail[field_name] = [
                    f"Unknown {field_name} {name!r}; known: {known[field_name]}. EVENTSUM_AUTO_CREATE is off."
                ]
        if detail:
            errors[str(index)] = detail
    return errors["0"] if len(events) == 1 else errors


# --- 3. coalescing ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _BaseRow:
    key: tuple
    event: PreparedEvent
    first_seen: datetime
    last_seen: datetime
    message: str
    instances: dict = field(default_factory=dict)


@dataclass(slots=True)
class _InstanceRow:
    event: PreparedEvent
    first_seen: datetime
    last_seen: datetime
    buckets: dict = field(default_factory=dict)


@dataclass(slots=True)
class _BucketRow:
    count: int
    last_seen: datetime
    counters: dict


def _merge_counters(into: dict, more: dict) -> None:
    for grouping_name, increments in more.items():
        totals = into.setdefault(grouping_name, {})
        for key, value in increments.items():
            totals[key] = totals.get(key, 0) + value


def coalesce(
    events: list[PreparedEvent], service_ids: dict, environment_ids: dict
) -> tuple[dict[tuple, _BaseRow], list[tuple]]:
    """Group occurrences by base, instance and bucket, so each row is written once per batch. Also
    returns each event's (base key, generic data hash), the key of its ids once written."""
    size = bucket_seconds()  # once per batch: settings are slow to read per event
    bases: dict[tuple, _BaseRow] = {}
    event_keys = []
    for event in events:
        key = (
            service_ids[event.service_key],
            environment_ids[event.environment_key],
            event.event_type,
            event.event_name,
            event.processed_data_hash,
        )
        event_keys.append((key, event.generic_data_hash))
        moment = event.occurred_at
        base = bases.get(key)
        if base is None:
            base = bases[key] = _BaseRow(key, event, moment, moment, event.message)
        else:
            base.first_seen = min(base.first_seen, moment)
            if moment >= base.last_seen:
                base.last_seen, base.message = moment, event.message
        instance = base.instances.get(event.generic_data_hash)
        if instance is None:
            instance = base.instances[event.generic_data_hash] = _InstanceRow(event, moment, moment)
        else:
            instance.first_seen = min(instance.first_seen, moment)
            if moment >= instance.last_seen:
                instance.last_seen, instance.event = moment, event
        start = bucket_start(moment, size)
        bucket = instance.buckets.get(start)
        if bucket is None:
            instance.buckets[start] = _BucketRow(1, moment, _copy_counters(event.counters))
        else:
            bucket.count += 1
            bucket.last_seen = max(bucket.last_seen, moment)
            _merge_counters(bucket.counters, event.counters)
    return bases, event_keys


def _copy_counters(counters: dict) -> dict:
    return {name: dict(increments) for name, increments in counters.items()}


# --- 4. the write ---------------------------------------------------------------------------------------

# How an occurrence merges into rows that already exist; shared by the two statements below.
BASE_CONFLICT = """
    ON CONFLICT ON CONSTRAINT eventbase_identity DO UPDATE SET
        first_seen = LEAST(b.first_seen, EXCLUDED.first_seen),
        last_seen = GREATEST(b.last_seen, EXCLUDED.last_seen),
        latest_message = CASE WHEN EXCLUDED.last_seen >= b.last_seen
                              THEN EXCLUDED.latest_message ELSE b.latest_message END,
        total_count = b.total_count + EXCLUDED.total_count
"""
# Written when a base is new, and again only when it brings a message not seen before. Not even tried when
# this process has written the base's message into the search row of the same base id (search_id: see
# _written_searches).
SEARCH_CONFLICT = """
    ON CONFLICT (event_base_id) DO UPDATE SET
        messages_text = s.messages_text || E'\\n' || EXCLUDED.messages_text,
        trigrams = ARRAY(SELECT DISTINCT unnest(s.trigrams || EXCLUDED.trigrams))
    WHERE length(s.messages_text) < %(search_cap)s AND strpos(s.messages_text, EXCLUDED.messages_text) = 0
"""
INSTANCE_CONFLICT = """
    ON CONFLICT ON CONSTRAINT eventinstance_identity DO UPDATE SET
        first_seen = LEAST(i.first_seen, EXCLUDED.first_seen),
        last_seen = GREATEST(i.last_seen, EXCLUDED.last_seen),
        raw_data = CASE WHEN EXCLUDED.last_seen >= i.last_seen THEN EXCLUDED.raw_data ELSE i.raw_data END,
        raw_details = CASE WHEN EXCLUDED.last_seen >= i.last_seen THEN EXCLUDED.raw_details ELSE i.raw_details END,
        processed_details = CASE WHEN EXCLUDED.last_seen >= i.last_seen
                                 THEN EXCLUDED.processed_details ELSE i.processed_details END,
        filters = CASE WHEN EXCLUDED.last_seen >= i.last_seen THEN EXCLUDED.filters ELSE i.filters END,
        latest_message = CASE WHEN EXCLUDED.last_seen >= i.last_seen
                              THEN EXCLUDED.latest_message ELSE i.latest_message END,
        total_count = i.total_count + EXCLUDED.total_count,
        has_counters = i.has_counters OR EXCLUDED.has_counters
"""
BUCKET_CONFLICT = """
    ON CONFLICT ON CONSTRAINT bucket_identity DO UPDATE SET
        count = o.count + EXCLUDED.count,
        last_seen = GREATEST(o.last_seen, EXCLUDED.last_seen),
        counters = CASE WHEN EXCLUDED.counters = '{}'::jsonb THEN o.counters
                        ELSE eventsum_merge_counters(o.counters, EXCLUDED.counters) END
"""
BASE_COLUMNS = """events_eventbase AS b (
        service_id, environment_id, event_type, event_name, processed_data_hash, processed_data,
        normalization_version, event_group_id, latest_message, first_seen, last_seen, total_count)"""
SEARCH_COLUMNS = "events_eventbasesearch AS s (event_base_id, static_text, messages_text, trigrams)"
INSTANCE_COLUMNS = """events_eventinstance AS i (
        event_base_id, generic_data_hash, generic_data, filters, raw_data, raw_details, processed_details,
        latest_message, first_seen, last_seen, total_count, has_counters)"""
BUCKET_COLUMNS = """events_occurrencebucket AS o (
        event_instance_id, event_base_id, service_id, bucket_start, count, last_seen, counters)"""

# A base's processed data and an instance's generic data never change (their hashes are part of the row's
# identity), so for a row this process has written before they are sent as NULL and read back from the row
# (write_occurrences). A row deleted since reads as NULL, which the NOT NULL columns refuse (PostgreSQL logs
# that as an error; the statement is sent again in full).
STORED_PROCESSED_DATA = """SELECT stored.processed_data FROM events_eventbase stored
        WHERE (stored.service_id, stored.environment_id, stored.event_type, stored.event_name,
               stored.processed_data_hash) = ({identity})"""
STORED_GENERIC_DATA = """SELECT stored.generic_data FROM events_eventinstance stored
        WHERE (stored.event_base_id, stored.generic_data_hash) = ({identity})"""
STORED_PROCESSED_DATA_OF_INPUT = STORED_PROCESSED_DATA.format(
    identity="base_input.service_id, base_input.environment_id, base_input.event_type, base_input.event_name, "
    "base_input.hash"
)
STORED_GENERIC_DATA_OF_INPUT = STORED_GENERIC_DATA.format(identity="instance_bases.base_id, instance_bases.hash")

# Each input table arrives as one JSON array of row objects (_upsert_rows), which json(b)_to_recordset reads:
# psycopg2 quotes one string per table instead of an ARRAY[...] of a literal per value (~1,500 for an
# array of 100 events, 4.5-4.9 ms of its ~20 ms of Python). The large JSON columns (a base's processed
# data, an instance's generic and raw data and details) go beside their table instead, as one array per
# column in the rows' order, zipped back by ROWS FROM: PostgreSQL then reads each value once, into its
# column, instead of walking it inside the rows' document first (an array of 100 new instances: 20.0 ->
# 17.8 ms of PostgreSQL's CPU, medians, bench/RESULTS.md). Raw data and details go into json columns
# (JSONTextField) as the text they are, never built into jsonb.
INPUT_TABLES = """
base_input AS (
    SELECT * FROM ROWS FROM (
        unnest(%(processed_data)s::jsonb[]),
        jsonb_to_recordset(%(base_rows)s::jsonb) AS (
            idx int, service_id bigint, environment_id bigint, event_type text, event_name text, hash text,
            message text, static_text text, message_text text, trigrams text, search_id bigint,
            first_seen timestamptz, last_seen timestamptz, total bigint)
    ) AS t(data)
), instance_input AS (
    SELECT * FROM ROWS FROM (
        unnest(%(generic_data)s::jsonb[]), unnest(%(raw_data)s::json[]), unnest(%(raw_details)s::json[]),
        unnest(%(processed_details)s::json[]),
        json_to_recordset(%(instance_rows)s::json) AS (
            idx int, base_idx int, hash text, filters jsonb, message text, first_seen timestamptz,
            last_seen timestamptz, total bigint, has_counters boolean)
    ) AS t(generic_data, raw_data, raw_details, processed_details)
), bucket_input AS (
    SELECT * FROM jsonb_to_recordset(%(bucket_rows)s::jsonb) AS t(
        instance_idx int, bucket_start timestamptz, count bigint, last_seen timestamptz, counters jsonb)
)"""

# One statement: PostgreSQL runs it atomically, so a batch is stored whole or not at all, in one round
# trip. Rows are fed in a fixed order (bases by key, their instances by hash, their buckets by time), so
# concurrent batches take row locks in the same order.
UPSERT_SQL = f"""
WITH {INPUT_TABLES}, bases AS (
    INSERT INTO {BASE_COLUMNS}
    SELECT service_id, environment_id, event_type, event_name, hash,
           COALESCE(data, ({STORED_PROCESSED_DATA_OF_INPUT})), %(version)s, %(default_group)s, message,
           first_seen, last_seen, total
    FROM base_input ORDER BY idx
    {BASE_CONFLICT}
    RETURNING id, service_id, environment_id, event_type, event_name, processed_data_hash, event_group_id
), base_rows AS (
    -- Each input base with the id it got: RETURNING can't carry the input's idx, so join back once.
    SELECT bi.*, bases.id AS base_id, bases.event_group_id
    FROM base_input bi
    JOIN bases ON (bases.service_id, bases.environment_id, bases.event_type, bases.event_name,
                   bases.processed_data_hash)
                = (bi.service_id, bi.environment_id, bi.event_type, bi.event_name, bi.hash)
), searches AS (
    INSERT INTO {SEARCH_COLUMNS}
    SELECT base_id, static_text, message_text, string_to_array(trigrams, ' ')
    FROM base_rows WHERE base_id IS DISTINCT FROM search_id ORDER BY idx
    {SEARCH_CONFLICT}
    RETURNING 1
), instance_bases AS (
    SELECT ii.*, br.base_id, br.service_id, br.event_group_id
    FROM instance_input ii JOIN base_rows br ON br.idx = ii.base_idx
), instances AS (
    INSERT INTO {INSTANCE_COLUMNS}
    SELECT base_id, hash, COALESCE(generic_data, ({STORED_GENERIC_DATA_OF_INPUT})),
           filters, raw_data, raw_details, processed_details, message, first_seen, last_seen, total, has_counters
    FROM instance_bases ORDER BY idx
    {INSTANCE_CONFLICT}
    RETURNING id, event_base_id, generic_data_hash
), resolved AS (
    SELECT ib.idx, instances.id AS instance_id, ib.base_id, ib.service_id, ib.event_group_id
    FROM instance_bases ib
    JOIN instances ON instances.event_base_id = ib.base_id AND instances.generic_data_hash = ib.hash
), buckets AS (
    INSERT INTO {BUCKET_COLUMNS}
    SELECT r.instance_id, r.base_id, r.service_id, k.bucket_start, k.count, k.last_seen, k.counters
    FROM bucket_input k JOIN resolved r ON r.idx = k.instance_idx
    ORDER BY k.instance_idx, k.bucket_start
    {BUCKET_CONFLICT}
    RETURNING 1
)
SELECT r.idx, r.instance_id, r.base_id, r.event_group_id, (SELECT count(*) FROM buckets),
       (SELECT count(*) FROM searches)
FROM resolved r
"""

# The same write for the commonest capture, one base with one instance in one bucket (a single event,
# or identical ones): the same inputs, with no sort and no join back by index. PostgreSQL spends 10-16%
# less on it than on UPSERT_SQL with one row (single events and a storm, replayed in-process).
UPSERT_ONE_SQL = f"""
WITH {INPUT_TABLES}, bases AS (
    INSERT INTO {BASE_COLUMNS}
    SELECT service_id, environment_id, event_type, event_name, hash,
           COALESCE(data, ({STORED_PROCESSED_DATA_OF_INPUT})), %(version)s, %(default_group)s, message,
           first_seen, last_seen, total
    FROM base_input
    {BASE_CONFLICT}
    RETURNING id, event_group_id
), searches AS (
    INSERT INTO {SEARCH_COLUMNS}
    SELECT bases.id, static_text, message_text, string_to_array(trigrams, ' ') FROM bases, base_input
    WHERE bases.id IS DISTINCT FROM base_input.search_id
    {SEARCH_CONFLICT}
    RETURNING 1
), instance_bases AS (
    SELECT instance_input.*, bases.id AS base_id FROM bases, instance_input
), instances AS (
    INSERT INTO {INSTANCE_COLUMNS}
    SELECT base_id, hash, COALESCE(generic_data, ({STORED_GENERIC_DATA_OF_INPUT})),
           filters, raw_data, raw_details, processed_details, message, first_seen, last_seen, total, has_counters
    FROM instance_bases
    {INSTANCE_CONFLICT}
    RETURNING id, event_base_id
), buckets AS (
    INSERT INTO {BUCKET_COLUMNS}
    SELECT instances.id, instances.event_base_id, base_input.service_id, bucket_start, count, bucket_input.last_seen,
           counters
    FROM instances, base_input, bucket_input
    {BUCKET_CONFLICT}
    RETURNING 1
)
SELECT 0, instances.id, bases.id, bases.event_group_id, (SELECT count(*) FROM buckets),
       (SELECT count(*) FROM searches)
FROM bases, instances
"""

SEARCH_TEXT_CAP = 8000  # characters of messages a base's search row holds (appends stop past it)


# A base's static search text and trigrams never change: each process keeps the recent ones. The trigrams
# are kept as a tuple of strings, which the garbage collector stops tracking (as sets, 650 of them made each
# full collection 5 ms longer), and interned: bases share most of their pieces (frames of one code base),
# so the bench's 951 bases took 1.7 MiB instead of 7.4 MiB (a few hundred 52-byte strings each).
_static_search_memo = BoundedMemo(2_000, weigh=lambda entry: len(entry[0]) + 60 * len(entry[1]), budget=16 * 2**20)


def _static_search(event: PreparedEvent) -> tuple[str, tuple[str, ...]]:
    def compute() -> tuple[str, tuple[str, ...]]:
        text = static_search_text(event.event_type, event.event_name, json.loads(event.processed_data_json))
        return text, tuple(map(sys.intern, trigrams_of(text)))

    return _static_search_memo.get((event.event_type, event.event_name, event.processed_data_hash), compute)


# The rows this process has written, by hash(key): their processed or generic data is sent as NULL and read
# back from the row (STORED_PROCESSED_DATA). Only the hash is kept (~90 bytes an entry): two keys with one
# hash, like a row deleted since, make the statement meet a NULL, and it is sent again in full.
_stored_rows = BoundedMemo(50_000)


# The messages this process has written into a base's search row, by hash((base key, message)): the id of
# that base. Search rows only grow, and go only with their base, whose id is never used again; so when the
# statement finds the base under that id, its search row has the message, and the statement skips the
# row (no upsert, no search text sent). Under another id (the base was deleted and created again), the
# missing search text (NULL) makes the insert fail, and the statement is sent again in full. Only
# statements that committed by themselves are remembered, never writes a caller's transaction could undo.
# Only the 64-bit hash is kept: two messages of one base sharing it (about 1 in 10^14 a capture when full)
# would leave the second out of the search text.
_written_searches = BoundedMemo(50_000)


def forget_stored_rows() -> None:
    _stored_rows.clear()
    _written_searches.clear()


def _upsert_rows(bases: dict[tuple, _BaseRow], *, omit_stored: bool) -> tuple[dict, dict, list[tuple]]:
    """The statement's input tables, row by row, and their large JSON columns, a list each in the rows' order
    (INPUT_TABLES); and each instance's (base key, hash). JSON already serialized goes in as it is. With
    omit_stored, the processed and generic data of rows this process has written are left out (null)."""
    base_rows, instance_rows, bucket_rows, instance_keys = [], [], [], []
    columns = {name: [] for name in ("processed_data", "generic_data", "raw_data", "raw_details", "processed_details")}
    stored = _stored_rows.peek if omit_stored else lambda key: None
    searched = _written_searches.peek if omit_stored else lambda key: None
    for base_idx, key in enumerate(sorted(bases)):
        base = bases[key]
        event = base.event
        search_id = searched(hash((key, base.message)))
        if search_id is None:
            static_text, static_trigrams = _static_search(event)
            # Lower-cased here, as the keywords and the trigrams are: the database's lower() follows its locale.
            # Searched in its first SEARCH_TEXT_CAP characters, the most a search row's messages grow to: a
            # 150,000-character message made 150,000 trigrams, and a capture of 1.5 s.
            message_text = base.message[:SEARCH_TEXT_CAP].lower()
            trigrams = " ".join(trigrams_of(message_text).union(static_trigrams))
        else:
            static_text = message_text = trigrams = None
        base_row = {
            "idx": base_idx,
            "service_id": key[0],
            "environment_id": key[1],
            "event_type": event.event_type,
            "event_name": event.event_name,
            "hash": event.processed_data_hash,
            "message": base.message,
            "static_text": static_text,
            "message_text": message_text,
            "trigrams": trigrams,
            "search_id": search_id,
            "first_seen": base.first_seen,
            "last_seen": base.last_seen,
            "total": 0,
        }
        base_rows.append(base_row)
        columns["processed_data"].append(None if stored(hash(key)) else event.processed_data_json)
        for generic_hash in sorted(base.instances):
            instance = base.instances[generic_hash]
            latest = instance.event
            instance_idx = len(instance_keys)
            instance_keys.append((key, generic_hash))
            instance_count, has_counters = 0, False
            for start in sorted(instance.buckets):
                bucket = instance.buckets[start]
                bucket_rows.append(
                    {
                        "instance_idx": instance_idx,
                        "bucket_start": start,
                        "count": bucket.count,
                        "last_seen": bucket.last_seen,
                        "counters": orjson.Fragment(compact_json(bucket.counters)),
                    }
                )
                instance_count += bucket.count
                has_counters = has_counters or bool(bucket.counters)
            instance_rows.append(
                {
                    "idx": instance_idx,
                    "base_idx": base_idx,
                    "hash": generic_hash,
                    "filters": orjson.Fragment(latest.filters_json),
                    "message": latest.message,
                    "first_seen": instance.first_seen,
                    "last_seen": instance.last_seen,
                    "total": instance_count,
                    "has_counters": has_counters,
                }
            )
            columns["generic_data"].append(None if stored(hash((key, generic_hash))) else latest.generic_data_json)
            columns["raw_data"].append(latest.raw_data_json)
            columns["raw_details"].append(latest.raw_details_json)
            columns["processed_details"].append(latest.processed_details_json)
            base_row["total"] += instance_count
    tables = {"base_rows": base_rows, "instance_rows": instance_rows, "bucket_rows": bucket_rows}
    return tables, columns, instance_keys


RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


PREPARED_UPSERT = PreparedStatement("eventsum_upsert", UPSERT_SQL)
PREPARED_UPSERT_ONE = PreparedStatement("eventsum_upsert_one", UPSERT_ONE_SQL)


def _runs_alone() -> bool:
    """Whether a statement run now is a transaction of its own: autocommit, no caller's atomic block."""
    return connection.get_autocommit() and not connection.in_atomic_block


def _execute_upsert(statement: PreparedStatement, parameters: dict) -> list[tuple]:
    # In autocommit mode the single statement is its own transaction: atomic, in one round trip (an
    # explicit BEGIN/COMMIT would add two). Inside a caller's transaction, a savepoint lets a retry follow
    # a deadlock.
    if _runs_alone():
        with connection.cursor() as cursor:
            return statement.run(cursor, parameters)
    with transaction.atomic(), connection.cursor() as cursor:
        return statement.run(cursor, parameters)


def write_occurrences(bases: dict[tuple, _BaseRow]) -> dict[tuple, tuple[int, int, int]]:
    """Upsert everything; returns {(base key, generic hash): (base id, instance id, group id)}."""
    try:
        written = _write(bases, omit_stored=True)
    except IntegrityError as error:
        if not isinstance(error.__cause__, pg_errors.NotNullViolation):
            raise
        # A row this process wrote was deleted since (retention, or by hand): nothing was stored, and the
        # statement runs again with every row's data.
        forget_stored_rows()
        written = _write(bases, omit_stored=False)
    committed = _runs_alone()  # the statement committed by itself
    for base_key, base in bases.items():
        _stored_rows.put(hash(base_key), True)
        for generic_hash in base.instances:
            _stored_rows.put(hash((base_key, generic_hash)), True)
        if committed:  # the base's id, from (any) one of its instances
            _written_searches.put(hash((base_key, base.message)), written[base_key, generic_hash][0])
    return written


def _write(bases: dict[tuple, _BaseRow], *, omit_stored: bool) -> dict[tuple, tuple[int, int, int]]:
    tables, columns, instance_keys = _upsert_rows(bases, omit_stored=omit_stored)
    # one base, one instance, one bucket
    statement = PREPARED_UPSERT_ONE if len(tables["bucket_rows"]) == 1 else PREPARED_UPSERT
    parameters = {name: orjson.dumps(rows).decode() for name, rows in tables.items()}
    parameters.update(columns)
    parameters.update(version=NORMALIZATION_VERSION, default_group=DEFAULT_GROUP_ID, search_cap=SEARCH_TEXT_CAP)
    for attempt in range(5):
        try:
            rows = _execute_upsert(statement, parameters)
            break
        except DatabaseError as error:
            if not isinstance(error.__cause__, RETRYABLE) or attempt == 4:
                raise
            time.sleep(0.01 * (attempt + 1))  # rare: lock order can't be fully fixed across a hash join
    if len(rows) != len(instance_keys):
        raise DatabaseError(f"capture wrote {len(rows)} instances, expected {len(instance_keys)}")
    return {instance_keys[idx]: (base_id, instance_id, group_id) for idx, instance_id, base_id, group_id, _, _ in rows}


# --- the entry point --------------------------------------------------------------------------------------


def capture_events(payloads: list, *, received_at: datetime | None = None) -> list[CaptureResult]:
    """Validate, normalize and store occurrences; all or nothing. Raises CaptureInvalid on any bad payload
    (errors keyed by index when more than one payload is given)."""
    received_at = received_at or datetime.now(UTC)
    events = _prepare_all(payloads, received_at)
    try:
        return _store(events)
    except IntegrityError as error:
        if not isinstance(error.__cause__, pg_errors.ForeignKeyViolation):
            raise
        clear_id_caches()  # a cached service or environment was deleted
        return _store(events)


def _prepare_all(payloads: list, received_at: datetime) -> list[PreparedEvent]:
    if len(payloads) == 1:
        return [prepare_event(payloads[0], received_at)]
    events, errors = [], {}
    for index, payload in enumerate(payloads):
        try:
            events.append(prepare_event(payload, received_at))
        except CaptureInvalid as invalid:
            errors[str(index)] = invalid.detail
    if errors:
        raise CaptureInvalid(errors)
    return events


def _store(events: list[PreparedEvent]) -> list[CaptureResult]:
    services = {event.service_key: event.service_name for event in events}
    environments = {event.environment_key: event.environment_name for event in events}
    service_ids = resolve_ids(Service, services)
    environment_ids = resolve_ids(Environment, environments, always_created=(DEFAULT_ENVIRONMENT,))
    if len(service_ids) < len(services) or len(environment_ids) < len(environments):
        raise CaptureInvalid(unknown_names(events, service_ids, environment_ids))
    enforce_rate_limit(
        Counter(service_ids[event.service_key] for event in events),
        {service_ids[event.service_key]: event.service_name for event in events},
    )
    bases, event_keys = coalesce(events, service_ids, environment_ids)
    written = write_occurrences(bases)
    record_stored(Counter((event.service_key, event.environment_key) for event in events))
    return [CaptureResult(*written[key]) for key in event_keys]


# --- rate limits -------------------------------------------------------------------------------------------


def enforce_rate_limit(per_service: Counter, names: dict[int, str]) -> None:
    """Count this capture against each service's minute; refuse it whole if any service is over."""
    limit = settings.EVENTSUM_RATE_LIMIT
    if not limit:
        return
    now = datetime.now(UTC)
    window = now.replace(second=0, microsecond=0)
    wait = 60 - now.second
    if never := [service_id for service_id, count in per_service.items() if count > limit]:
        # A retry would be refused the same way every minute: a 413, not a 429 to wait out.
        named = ", ".join(f"{per_service[service_id]} for {names[service_id]!r}" for service_id in never)
        raise CaptureTooLarge(
            f"This array holds more events for one service than EVENTSUM_RATE_LIMIT lets in a minute ({limit}): "
            f"{named}. Send them in smaller arrays."
        )
    service_ids = sorted(per_service)
    with transaction.atomic(), connection.cursor() as cursor:
        # The WHERE keeps a window's count from passing the limit; a refused row isn't returned.
        cursor.execute(
            """
            INSERT INTO events_ratewindow AS w (service_id, window_start, count)
            SELECT service_id, %s, count FROM unnest(%s::bigint[], %s::int[]) AS t(service_id, count)
            ORDER BY service_id
            ON CONFLICT ON CONSTRAINT ratewindow_identity DO UPDATE SET count = w.count + EXCLUDED.count
            WHERE w.count + EXCLUDED.count <= %s
            RETURNING service_id
            """,
            [window, service_ids, [per_service[s] for s in service_ids], limit],
        )
        allowed = {row[0] for row in cursor.fetchall()}
        over = [service_id for service_id in service_ids if service_id not in allowed]
        if over:
            transaction.set_rollback(True)  # all or nothing: the other services' counts stay as they were
    if over:
        named = ", ".join(repr(names[service_id]) for service_id in over)
        raise CaptureThrottled(f"Rate limit of {limit} events per minute exceeded for service {named}.", wait)


# --- reading a request body -------------------------------------------------------------------------------

_NEEDS_SANITIZING = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


# orjson reads integers beyond 64 bits as floats (losing digits): bodies with a run of 19 or more digits
# take the standard library's parser, which keeps them exact. The run is found by mapping every digit to
# "0" and everything else to " " (bytes.translate, C speed): a regex over the body cost 17x more.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def parse_capture_body(body: bytes) -> list:
    """Decode a /capture body into a list of payloads; CaptureInvalid names what is wrong with it."""
    data = _fast_parse(body)
    if data is _UNPARSED:
        data = _careful_parse(body)
    if _NEEDS_SANITIZING.search(body):
        data = sanitize(data)
    if isinstance(data, list):
        if not data:
            raise CaptureInvalid({"detail": "Empty array: send at least one event."})
        if len(data) > settings.EVENTSUM_MAX_BATCH:
            raise CaptureInvalid(
                {"detail": f"Array of {len(data)} events exceeds EVENTSUM_MAX_BATCH={settings.EVENTSUM_MAX_BATCH}."}
            )
        return data
    if isinstance(data, dict):
        return [data]
    raise CaptureInvalid({"detail": f"Expected an event object or an array of them, got {json_type(data)}."})


_UNPARSED = object()


def _fast_parse(body: bytes):
    """orjson, several times faster; anything it refuses or might read differently goes the careful way."""
    if _LONG_DIGIT_RUN in body.translate(_DIGITS_AS_ZEROS):
        return _UNPARSED
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _UNPARSED  # the careful parser says precisely what is wrong, or reads what orjson won't


def _careful_parse(body: bytes):
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise CaptureInvalid({"detail": "JSON nested too deeply."}) from None
    except UnicodeDecodeError:
        raise CaptureInvalid({"detail": "Body is not valid UTF-8."}) from None
    except ValueError as error:
        raise CaptureInvalid({"detail": f"Invalid JSON: {error}"}) from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value
