"""Recompute every instance's and base's running totals (total_count, has_counters) from their buckets.

The capture statement and prune_events keep them exact; run this after writing buckets by hand in SQL, or
once after a rolling upgrade to the release that introduced them, whose previous version, still serving
while the new one migrated, counted occurrences into buckets only.

Works in batches of rows, each its own short transaction, beside live captures: a batch locks its rows
first, in the order a capture locks them (events.batches), then sums their buckets in a statement of its
own. A capture changes a row's buckets only after it has locked the row (it updates the base, then the
instance, then their buckets), so no capture can slip between the sums and the update; captures of those
rows wait for the batch, not for the command, and the two never deadlock.
"""

import time
from functools import partial

from django.core.management.base import BaseCommand
from psycopg2 import errors as pg_errors

from events.batches import INSTANCE_LOCK_ORDER, MAX_BATCH, in_transaction_retrying, lock_bases_sql

# Each table: its name, the table, how a batch of its rows is locked, and how their totals are recounted.
TABLES = [
    (
        "instances",
        "events_eventinstance",
        f"""
        SELECT i.id FROM events_eventinstance i JOIN events_eventbase b ON b.id = i.event_base_id
        WHERE i.id = ANY(%(ids)s::bigint[]) ORDER BY {INSTANCE_LOCK_ORDER} FOR NO KEY UPDATE OF i
        """,
        """
        UPDATE events_eventinstance i
        SET total_count = COALESCE(s.total, 0), has_counters = COALESCE(s.has_counters, false)
        FROM unnest(%(ids)s::bigint[]) AS locked(id)
        LEFT JOIN LATERAL (
            SELECT sum(o.count) AS total, bool_or(o.counters <> '{}'::jsonb) AS has_counters
            FROM events_occurrencebucket o WHERE o.event_instance_id = locked.id
        ) AS s ON true
        WHERE i.id = locked.id
        """,
    ),
    (
        "bases",
        "events_eventbase",
        lock_bases_sql("b.id = ANY(%(ids)s::bigint[])"),
        """
        UPDATE events_eventbase b
        SET total_count = COALESCE((SELECT sum(o.count) FROM events_occurrencebucket o
                                    WHERE o.event_base_id = b.id), 0)
        WHERE b.id = ANY(%(ids)s::bigint[])
        """,
    ),
]


class Command(BaseCommand):
    help = "Recompute the instances' and bases' running totals from their buckets, beside live captures."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=2000)

    def handle(self, batch_size, **options):
        if not 1 <= batch_size <= MAX_BATCH:
            self.stderr.write(f"--batch-size must be from 1 to {MAX_BATCH}")
            raise SystemExit(2)
        started = time.monotonic()
        for name, table, lock_sql, update_sql in TABLES:
            done, after = 0, 0
            while True:
                batch = partial(
                    self.recount_batch,
                    table=table,
                    lock_sql=lock_sql,
                    update_sql=update_sql,
                    after=after,
                    size=batch_size,
                )
                ids = in_transaction_retrying(batch, (pg_errors.DeadlockDetected,))
                done += len(ids)
                if len(ids) < batch_size:
                    break
                after = ids[-1]
            self.stdout.write(f"  {name}: {done} recounted")
        self.stdout.write(f"Recounted the running totals in {time.monotonic() - started:.1f}s")

    @staticmethod
    def recount_batch(cursor, *, table: str, lock_sql: str, update_sql: str, after: int, size: int) -> list[int]:
        # The next page of ids, then their rows locked; the update is a statement of its own, whose snapshot
        # sees every capture that held one of these rows before.
        cursor.execute(f"SELECT id FROM {table} WHERE id > %s ORDER BY id LIMIT %s", [after, size])
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            cursor.execute(lock_sql, {"ids": ids})
            cursor.execute(update_sql, {"ids": ids})
        return ids
