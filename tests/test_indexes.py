"""The events tables' indexes, read from PostgreSQL's catalog after the migrations: every filter and
ordering the API and the admin offer leads an index, and no index only repeats the start of another
(each costs every capture that writes the row, and a base row is written by every capture)."""

import re
from datetime import UTC, datetime

import pytest
from django.db import connection

from events import services
from events.models import EventBase
from tests.conftest import make_event

pytestmark = pytest.mark.django_db

INDEXES_SQL = r"""
SELECT t.relname, i.relname, x.indisunique, x.indpred IS NOT NULL OR x.indexprs IS NOT NULL, am.amname,
       (SELECT array_agg(a.attname ORDER BY k.n)
        FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
        WHERE k.n <= x.indnkeyatts),
       ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey::int2[])),
       (SELECT array_agg(c.opcname ORDER BY k.n)
        FROM unnest(x.indclass::oid[]) WITH ORDINALITY AS k(opclass, n)
        JOIN pg_opclass c ON c.oid = k.opclass)
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_am am ON am.oid = i.relam
WHERE t.relname LIKE 'events\_%'
"""


def _indexes() -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(INDEXES_SQL)
        keys = ("table", "name", "unique", "partial_or_expression", "method", "columns", "held", "opclasses")
        return [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]


# What each table is filtered or ordered by, as the leading columns an index needs.
NEEDED = {
    "events_eventbase": [
        ("service_id", "environment_id", "event_type", "event_name", "processed_data_hash"),  # capture
        ("service_id", "last_seen_hour"),  # admin: a service's bases, latest first
        ("environment_id",),  # /search env_id, admin filter, the foreign key
        ("event_group_id", "last_seen_hour"),  # /search group_id, admin: a group's bases, pruning
        ("processed_data_hash",),  # /search hash
        ("event_type",),  # admin filter
        ("last_seen_hour",),  # admin: every base, latest first; its date filter
    ],
    "events_eventinstance": [("event_base_id", "generic_data_hash")],
    "events_occurrencebucket": [
        ("service_id", "bucket_start"),  # /search ranking, pruning
        ("event_base_id", "bucket_start"),  # /search series
        ("event_instance_id", "bucket_start"),  # capture, /detail
    ],
    "events_eventbasesearch": [("event_base_id",)],
    "events_ratewindow": [("service_id", "window_start")],
}


def test_every_filter_and_ordering_leads_an_index():
    indexes = _indexes()
    for table, needs in NEEDED.items():
        led = [tuple(index["columns"]) for index in indexes if index["table"] == table]
        for columns in needs:
            assert any(lead[: len(columns)] == columns for lead in led), f"{table}: no index leads with {columns}"


def test_no_index_only_repeats_the_start_of_another():
    indexes = [index for index in _indexes() if index["method"] == "btree" and not index["partial_or_expression"]]
    redundant = [
        (shorter["name"], longer["name"])
        for shorter in indexes
        if not shorter["unique"]  # a unique index enforces something
        for longer in indexes
        if longer is not shorter
        and longer["table"] == shorter["table"]
        and len(longer["columns"]) >= len(shorter["columns"])
        and longer["columns"][: len(shorter["columns"])] == shorter["columns"]
        and longer["opclasses"][: len(shorter["opclasses"])] == shorter["opclasses"]
    ]
    assert redundant == []


# What a capture changes in rows that exist: the SET clauses of its upserts.
UPSERTS = {
    "events_eventbase": services.BASE_CONFLICT,
    "events_eventinstance": services.INSTANCE_CONFLICT,
    "events_occurrencebucket": services.BUCKET_CONFLICT,
}


def test_no_index_holds_a_column_that_a_capture_changes():
    """An update that changes no indexed value is HOT: PostgreSQL writes no index entry for it. A capture
    updates its base, instance and bucket; an index on a column it sets would be written every time."""
    indexes = _indexes()
    for table, conflict in UPSERTS.items():
        # key and included columns alike
        indexed = {column for index in indexes if index["table"] == table for column in index["held"]}
        changed = set(re.findall(r"^\s*(\w+) =", conflict.split("DO UPDATE SET", 1)[1], re.MULTILINE))
        assert "last_seen" in changed and "id" in indexed, table  # the parsing found them
        assert changed & indexed == set(), table


def test_the_recency_indexes_hold_the_hour_of_last_seen(capture):
    capture(make_event(timestamp="2020-01-01 10:05:00"))
    capture(make_event(timestamp="2020-01-01 11:15:00"))
    base = EventBase.objects.get()
    assert (base.last_seen, base.last_seen_hour) == (
        datetime(2020, 1, 1, 11, 15, tzinfo=UTC),
        datetime(2020, 1, 1, 11, tzinfo=UTC),
    )
