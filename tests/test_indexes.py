"""The events tables' indexes, read from PostgreSQL's catalog after the migrations: every filter and
ordering the API and the admin offer leads an index, and no index only repeats the start of another
(each costs every capture that writes the row, and a base row is written by every capture)."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

INDEXES_SQL = r"""
SELECT t.relname, i.relname, x.indisunique, x.indpred IS NOT NULL OR x.indexprs IS NOT NULL, am.amname,
       (SELECT array_agg(a.attname ORDER BY k.n)
        FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
        WHERE k.n <= x.indnkeyatts),
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
        keys = ("table", "name", "unique", "partial_or_expression", "method", "columns", "opclasses")
        return [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]


# What each table is filtered or ordered by, as the leading columns an index needs.
NEEDED = {
    "events_eventbase": [
        ("service_id", "environment_id", "event_type", "event_name", "processed_data_hash"),  # capture
        ("service_id", "last_seen"),  # admin: a service's bases, latest first
        ("environment_id",),  # /search env_id, admin filter, the foreign key
        ("event_group_id", "last_seen"),  # /search group_id, admin: a group's bases
        ("processed_data_hash",),  # /search hash
        ("event_type",),  # admin filter
        ("last_seen",),  # admin: every base, latest first
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
