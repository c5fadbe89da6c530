"""Work in short transactions beside live captures (triage, prune_events, recount_totals), run again when it
races one."""

import time

from django.db import DatabaseError, connection, transaction

# The order in which a capture locks rows: its bases by key (events.services.coalesce sorts the keys as
# Python sorts tuples, strings by code point: the "C" collation's order), then their instances by generic
# hash, then their buckets. A batch that locks the same rows in this order (an ORDER BY over events_eventbase
# b, and events_eventinstance i for instances) never waits on a capture in a cycle: a capture of its rows
# waits at its first lock, holding none that the batch needs.
BASE_LOCK_ORDER = (
    'b.service_id, b.environment_id, b.event_type COLLATE "C", b.event_name COLLATE "C", '
    'b.processed_data_hash COLLATE "C"'
)
INSTANCE_LOCK_ORDER = f'{BASE_LOCK_ORDER}, i.generic_data_hash COLLATE "C"'
MAX_BATCH = 1_000_000  # the commands' largest --batch-size: each batch holds its rows' locks until it ends


def lock_bases_sql(condition: str) -> str:
    """A statement that locks the bases matching `condition` (SQL over events_eventbase b) in a capture's
    order, for an update that does not change their keys; it returns their ids."""
    return f"SELECT b.id FROM events_eventbase b WHERE {condition} ORDER BY {BASE_LOCK_ORDER} FOR NO KEY UPDATE OF b"


def in_transaction_retrying(work, races: tuple, attempts: int = 5):
    """Run work(cursor) in one transaction; run it again when it fails with one of `races` (psycopg2 error
    classes: a deadlock with a capture, say), up to `attempts` times."""
    attempt = 1
    while True:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                return work(cursor)
        except DatabaseError as error:
            if not isinstance(error.__cause__, races) or attempt >= attempts:
                raise
            time.sleep(0.05 * attempt)
            attempt += 1
