"""Reads: /search and /detail. A constant number of queries whatever the number of results."""

import math
from datetime import datetime

import orjson
from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.http import Http404
from rest_framework.exceptions import ValidationError

from events.filters import EventSearchFilterSet, keyword_condition
from events.models import Environment, EventBase, EventBaseSearch, Service, normalize_name
from events.prepared import PreparedStatement
from events.quoting import quoted
from events.timeparse import EPOCH, bucket_seconds, bucket_start, format_time, to_unix_ms
from grouping.memo import BoundedMemo

MAX_DATAPOINTS = 200
# The parameters that narrow the bases themselves; without any, the buckets' own service id is enough.
BASE_FILTERS = ("env_id", "environment", "group_id", "hash")


def search_bases(params) -> list[dict]:
    filterset = EventSearchFilterSet(params, queryset=EventBase.objects.all())
    if not filterset.is_valid():
        raise ValidationError(filterset.errors)
    options = filterset.form.cleaned_data
    start, end = options["start_time"], options["end_time"]

    # By name: the id is looked up, so the same index serves both spellings.
    service_id = _one_id(Service, options, "service_id", "service")
    if service_id is None:
        return []
    if options.get("env_id") is not None:  # both filter the bases; a name that disagrees is refused, not ANDed
        _one_id(Environment, options, "env_id", "environment")
    narrowed = any(options.get(name) not in (None, "") for name in BASE_FILTERS)
    totals = _ranked(service_id, filterset.qs.values("id") if narrowed else None, options, start, end)
    if not totals:
        return []

    ids = list(totals)
    bases = _bases(ids)
    datapoints, instance_ids = _series(ids, start, end)
    return [
        {
            "id": base["id"],
            "event_type": base["event_type"],
            "event_name": base["event_name"],
            "event_group_id": base["event_group_id"],
            "event_environment_id": base["environment_id"],
            "service_id": base["service_id"],
            "total_count": totals[base["id"]],
            "processed_data": orjson.Fragment(base["processed_text"]),
            "hash": base["processed_data_hash"],
            "instance_ids": instance_ids[base["id"]],
            "datapoints": datapoints[base["id"]],
            "first_seen": format_time(base["first_seen"]),
            "last_seen": format_time(base["last_seen"]),
            "message": base["latest_message"],
        }
        for base in map(bases.get, ids)  # in rank order
        if base is not None  # unless deleted since the ranking
    ]


def _one_id(model, options, id_key: str, name_key: str) -> int | None:
    """The row's id given as `id_key`, or named by `name_key`: both given, they must name the same row."""
    given, name = options.get(id_key), options.get(name_key)
    if not name:
        return given
    named = model.objects.filter(normalized_name=normalize_name(name)).values_list("id", flat=True).first()
    if given is not None and named != given:
        raise ValidationError({name_key: [f"{name_key} {quoted(name)} is not {id_key} {given}: send one of them."]})
    return named


# The window's bases ranked from their buckets, which the (service, bucket_start) index finds. Written out
# rather than built with the ORM: building and compiling the query took ~3 ms of a search's ~9 ms of
# Python. {bases} is where the FilterSet's own query for the bases narrows it, when a parameter asks.
RANK_BY_TOTAL = """
SELECT event_base_id, sum(count)::bigint AS total
FROM events_occurrencebucket
WHERE service_id = %s AND bucket_start >= %s AND bucket_start < %s{bases}
GROUP BY event_base_id
ORDER BY total DESC, event_base_id DESC
LIMIT %s
"""
RANK_BY_INCREASE = """
SELECT event_base_id, total
FROM (
    SELECT event_base_id, sum(count)::bigint AS total,
           COALESCE(sum(count) FILTER (WHERE bucket_start >= %s), 0)
           - COALESCE(sum(count) FILTER (WHERE bucket_start < %s), 0) AS increase
    FROM events_occurrencebucket
    WHERE service_id = %s AND bucket_start >= %s AND bucket_start < %s{bases}
    GROUP BY event_base_id
) AS halves
WHERE increase > 0
ORDER BY increase DESC, event_base_id DESC
LIMIT %s
"""


def _ranked(service_id: int, bases, options, start: datetime, end: datetime) -> dict[int, int]:
    """{base id: total in the window}, in the answer's order, at most `limit` of them. `bases`, a query
    of base ids, narrows the window's bases when a parameter asks for it."""
    sort, limit, keywords = options["sort"], options["limit"], options.get("keywords")
    # Keywords and `recent` are decided by the bases themselves: rank every base active in the window from
    # its buckets alone, then read only those bases. (Joining them into the buckets' aggregate made
    # PostgreSQL read the whole base table or test texts bucket by bucket: 15-27 ms against 2-3.)
    everyone = bool(keywords) or sort == "recent"
    params = [service_id, start, end]
    if sort == "increased":
        middle = start + (end - start) / 2
        sql, params = RANK_BY_INCREASE, [middle, middle, *params]
    else:
        sql = RANK_BY_TOTAL
    narrowing = ""
    if bases is not None:
        bases_sql, bases_params = bases.query.sql_with_params()
        narrowing = f" AND event_base_id IN ({bases_sql})"
        params.extend(bases_params)
    params.append(None if everyone else limit)  # LIMIT NULL: all of them
    with connection.cursor() as cursor:
        cursor.execute(sql.format(bases=narrowing), params)
        totals = dict(cursor.fetchall())
    if not everyone:
        return totals

    if sort == "recent":
        chosen = EventBase.objects.filter(_in_array(f'"{EventBase._meta.db_table}"."id"', totals))
        if keywords:
            chosen = chosen.filter(keyword_condition(keywords, indexed=False, prefix="search__"))
        ids = list(chosen.order_by("-last_seen", "-id").values_list("id", flat=True)[:limit])
    else:
        matching = set(
            EventBaseSearch.objects.filter(_in_array("event_base_id", totals))
            .filter(keyword_condition(keywords, indexed=False))
            .values_list("event_base_id", flat=True)
        )
        ids = [base_id for base_id in totals if base_id in matching][:limit]
    return {base_id: totals[base_id] for base_id in ids}


def _in_array(column: str, ids) -> RawSQL:
    # One array parameter, not an IN list the ORM would prepare value by value (~1,000 of them: ~4 ms).
    return RawSQL(f"{column} = ANY(%s::bigint[])", (bigint_array(ids),), output_field=BooleanField())


def bigint_array(ids) -> str:
    """Integers as PostgreSQL's text form of an array, for a `%s::bigint[]` parameter: one constant to
    read. psycopg2 writes a list as ARRAY[1, 2, ...], an expression per element, and PostgreSQL took
    ~3.5 ms more to parse and plan a query with 1,000 of them (6.1-7.7 against 3.1-3.3 ms)."""
    return "{" + ",".join(map(str, ids)) + "}"


BASES_SQL = """
SELECT b.id, b.event_type, b.event_name, b.event_group_id, b.environment_id, b.service_id, b.processed_data_hash,
       b.first_seen, b.last_seen, b.latest_message,
       CASE WHEN b.processed_data_hash = known.hash THEN NULL ELSE b.processed_data::text END
FROM events_eventbase b
LEFT JOIN unnest(%(known_ids)s::bigint[], %(known_hashes)s::text[]) AS known(id, hash) ON known.id = b.id
WHERE b.id = ANY(%(ids)s::bigint[])
"""
BASE_KEYS = (
    "id",
    "event_type",
    "event_name",
    "event_group_id",
    "environment_id",
    "service_id",
    "processed_data_hash",
    "first_seen",
    "last_seen",
    "latest_message",
)
# processed_data travels as the database's own JSON text, embedded in the answer unparsed. It changes only
# with its hash (EventBase.save), so each process keeps the text of the bases it answered lately, keyed by
# id with its hash, and the query writes it out only for the others: for 100 bases, ~300 KB of text and
# ~2 ms of PostgreSQL's time. About 3 KB an entry, text only (nothing for the garbage collector to walk);
# at most 32 MB of it, whatever the traces weigh.
_processed_texts = BoundedMemo(2_000, weigh=lambda entry: len(entry[1]), budget=32 * 2**20)  # {id: (hash, text)}


def _bases(ids: list[int]) -> dict[int, dict]:
    known = {base_id: entry for base_id in ids if (entry := _processed_texts.peek(base_id))}
    with connection.cursor() as cursor:
        cursor.execute(
            BASES_SQL,
            {
                "ids": bigint_array(ids),
                "known_ids": bigint_array(known),
                "known_hashes": [entry[0] for entry in known.values()],
            },
        )
        rows = cursor.fetchall()
    bases = {}
    for *values, text in rows:
        base = dict(zip(BASE_KEYS, values, strict=True))
        if text is None:  # the one this process has, under the same hash
            text = known[base["id"]][1]
        else:
            _processed_texts.put(base["id"], (base["processed_data_hash"], text))
        base["processed_text"] = text
        bases[base["id"]] = base
    return bases


def datapoint_step(start: datetime, end: datetime) -> tuple[datetime, int, int]:
    """The first point, the step in seconds (a multiple of the bucket size) and the number of points."""
    size = bucket_seconds()
    first = bucket_start(start)
    buckets = math.ceil((end - first).total_seconds() / size)
    step = size * max(1, math.ceil(buckets / MAX_DATAPOINTS))
    points = math.ceil((end - first).total_seconds() / step)
    return first, step, points


# One level of aggregation: each base's buckets in the window as arrays in slot order (two buckets of one
# slot, from different instances or when the step spans several buckets, are added up in Python), and its
# instance ids already written as JSON. Summing per slot first and joining the instances back cost
# PostgreSQL about twice as much. date_part is float arithmetic (extract() is numeric); bucket starts are
# whole seconds, so the slot is exact.
SERIES_SQL = """
SELECT event_base_id, array_agg(slot ORDER BY slot), array_agg(count ORDER BY slot),
       array_to_json(array_agg(DISTINCT event_instance_id))::text
FROM (
    SELECT event_base_id, event_instance_id, count,
           floor((date_part('epoch', bucket_start) - %(first)s) / %(step)s)::int AS slot
    FROM events_occurrencebucket
    WHERE event_base_id = ANY(%(ids)s::bigint[]) AND bucket_start >= %(start)s AND bucket_start < %(end)s
) AS window_buckets
GROUP BY event_base_id
"""


def _series(base_ids: list[int], start: datetime, end: datetime) -> tuple[dict, dict]:
    """Each base's datapoints and the ids of its instances seen in the window, as JSON text:
    ({base id: datapoints}, {base id: instance ids, ascending}). One row per base: its buckets' slots
    and counts as two arrays, and its instance ids already written as JSON by PostgreSQL."""
    first, step, points = datapoint_step(start, end)
    with connection.cursor() as cursor:
        cursor.execute(
            SERIES_SQL,
            {
                "first": (first - EPOCH).total_seconds(),
                "step": step,
                "ids": bigint_array(base_ids),
                "start": start,
                "end": end,
            },
        )
        rows = cursor.fetchall()
    # Up to 200 points for each of up to 1,000 bases, most of them zero: written as JSON text from
    # pieces made once per request, rather than as hundreds of thousands of small dicts (memory, and the
    # time to build and render them).
    first_ms, step_ms = to_unix_ms(first), step * 1000
    starts = range(first_ms, first_ms + points * step_ms, step_ms)
    zeros = [f'{{"count":0,"start":{at}}}' for at in starts]
    # A base whose buckets were pruned since the ranking still gets a (zero) series.
    datapoints = dict.fromkeys(base_ids, orjson.Fragment("[" + ",".join(zeros) + "]"))
    instance_ids = dict.fromkeys(base_ids, orjson.Fragment("[]"))
    for base_id, slots, counts, ids in rows:
        totals = {}
        for slot, count in zip(slots, counts, strict=True):
            totals[slot] = totals.get(slot, 0) + count
        pieces = zeros.copy()
        for slot, count in totals.items():
            pieces[slot] = f'{{"count":{count},"start":{starts[slot]}}}'
        datapoints[base_id] = orjson.Fragment("[" + ",".join(pieces) + "]")
        instance_ids[base_id] = orjson.Fragment(ids)
    return datapoints, instance_ids


# The grouping counters of an instance's buckets, summed per (grouping, key) as one set-based aggregate:
# an instance with 130,000 counted buckets answers /detail in ~0.55 s, where folding them one by one with
# eventsum_merge_counters took 2.4 s. Only instances that have counters pay it (has_counters).
SUMMED_COUNTERS = """
    SELECT COALESCE(jsonb_object_agg(grouping_name, totals), '{}'::jsonb)
    FROM (
        SELECT grouping_name, jsonb_object_agg(counter_key, total) AS totals
        FROM (
            SELECT g.key AS grouping_name, c.key AS counter_key, sum(c.value::numeric) AS total
            FROM events_occurrencebucket o,
                 LATERAL jsonb_each(o.counters) AS g,
                 LATERAL jsonb_each_text(CASE WHEN jsonb_typeof(g.value) = 'object' THEN g.value
                                              ELSE '{}'::jsonb END) AS c
            WHERE o.event_instance_id = i.id AND o.counters <> '{}'::jsonb
            GROUP BY 1, 2
        ) AS per_key
        GROUP BY grouping_name
    ) AS per_grouping
"""
DETAIL_SQL = f"""
SELECT i.id, b.id, b.event_group_id, b.environment_id, b.service_id, b.event_type, b.event_name,
       i.latest_message, i.raw_data::text, i.raw_details::text, i.generic_data::text, b.processed_data::text,
       i.processed_details::text, i.first_seen, i.last_seen, i.total_count,
       CASE WHEN i.has_counters THEN ({SUMMED_COUNTERS}) ELSE '{{}}'::jsonb END::text
FROM events_eventinstance i
JOIN events_eventbase b ON b.id = i.event_base_id
WHERE i.id = %(instance_id)s::bigint
"""
PREPARED_DETAIL = PreparedStatement("eventsum_detail", DETAIL_SQL)
DETAIL_KEYS = (
    "event_instance_id",
    "event_base_id",
    "event_group_id",
    "event_environment_id",
    "service_id",
    "event_type",
    "event_name",
    "message",
    "raw_data",
    "raw_details",
    "generic_data",
    "processed_data",
    "processed_details",
    "first_seen",
    "last_seen",
    "total_count",
    "counters",
)
JSON_KEYS = {"raw_data", "raw_details", "generic_data", "processed_data", "processed_details", "counters"}


def instance_detail(instance_id: int) -> dict:
    """One query; the JSON columns travel as the database's own text, embedded in the answer unparsed."""
    with connection.cursor() as cursor:
        rows = PREPARED_DETAIL.run(cursor, {"instance_id": instance_id})
    row = rows[0] if rows else None
    if row is None:
        raise Http404(f"No event instance with id {instance_id}.")
    detail = dict(zip(DETAIL_KEYS, row, strict=True))
    for key in JSON_KEYS:
        detail[key] = orjson.Fragment(detail[key])
    detail["first_seen"] = format_time(detail["first_seen"])
    detail["last_seen"] = format_time(detail["last_seen"])
    detail["total_count"] = int(detail["total_count"])
    return detail
