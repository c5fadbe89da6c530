"""Retention: drop occurrence buckets older than EVENTSUM_RETENTION_DAYS, then the instances and bases
left with no occurrences (bases triaged into a group other than 0 stay, with their instances).

Runs in batches, each its own short transaction, so captures are never blocked for long. The running
totals of the instances and bases (total_count) lose what their deleted buckets held, in the same
transaction.
"""

import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from psycopg2 import errors as pg_errors

from events.batches import MAX_BATCH, in_transaction_retrying, lock_bases_sql
from events.models import DEFAULT_GROUP_ID

# A bucket batch deletes buckets and then updates their instances' and bases' totals, the opposite of the
# order in which a capture locks them: so it first locks the bases, in the capture's order.
LOCK_BASES_OF_BUCKETS = lock_bases_sql(
    "b.id IN (SELECT event_base_id FROM events_occurrencebucket WHERE id = ANY(%(ids)s))"
)
# An instance batch locks its instances' bases the same way, then reads their group again in its delete: a
# base triaged since keeps its instances.
LOCK_BASES_OF_INSTANCES = lock_bases_sql(
    "b.id IN (SELECT event_base_id FROM events_eventinstance WHERE id = ANY(%(ids)s))"
)

# Each step: what it removes, the rows to lock first (or None), and the rows it removes (at most
# %(batch)s of them per statement). The last_seen conditions matter under concurrency: a capture that
# touches a row while we wait for its lock moves last_seen, and PostgreSQL re-checks that row before
# deleting it.
STEPS = [
    (
        "buckets",
        # In the (service, bucket_start) index's order, so that index serves it (there is none on time alone).
        """
        SELECT id FROM events_occurrencebucket
        WHERE service_id = ANY(ARRAY(SELECT id FROM events_service)) AND bucket_start < %(cutoff)s
        ORDER BY service_id, bucket_start LIMIT %(batch)s
        """,
        LOCK_BASES_OF_BUCKETS,
        # RETURNING gives the counts as deleted, after any capture that updated the row meanwhile.
        """
        WITH gone AS (
            DELETE FROM events_occurrencebucket WHERE id = ANY(%(ids)s) AND bucket_start < %(cutoff)s
            RETURNING event_instance_id, event_base_id, count
        ), instances AS (
            UPDATE events_eventinstance i SET total_count = i.total_count - g.total
            FROM (SELECT event_instance_id, sum(count) AS total FROM gone GROUP BY event_instance_id) AS g
            WHERE i.id = g.event_instance_id
        ), bases AS (
            UPDATE events_eventbase b SET total_count = b.total_count - g.total
            FROM (SELECT event_base_id, sum(count) AS total FROM gone GROUP BY event_base_id) AS g
            WHERE b.id = g.event_base_id
        )
        SELECT count(*) FROM gone
        """,
    ),
    (
        "instances",
        """
        SELECT i.id FROM events_eventinstance i JOIN events_eventbase b ON b.id = i.event_base_id
        WHERE i.last_seen < %(cutoff)s AND b.event_group_id = %(default_group)s
          AND NOT EXISTS (SELECT 1 FROM events_occurrencebucket o WHERE o.event_instance_id = i.id)
        LIMIT %(batch)s
        """,
        LOCK_BASES_OF_INSTANCES,
        """
        DELETE FROM events_eventinstance i WHERE i.id = ANY(%(ids)s) AND i.last_seen < %(cutoff)s
          AND NOT EXISTS (SELECT 1 FROM events_occurrencebucket o WHERE o.event_instance_id = i.id)
          AND EXISTS (SELECT 1 FROM events_eventbase b
                      WHERE b.id = i.event_base_id AND b.event_group_id = %(default_group)s)
        """,
    ),
    (
        "bases",
        # last_seen_hour < cutoff follows from last_seen < cutoff (the hour is at most last_seen); it is
        # stated so that the (event_group, last_seen_hour) index finds the group's old bases.
        """
        SELECT b.id FROM events_eventbase b
        WHERE b.last_seen < %(cutoff)s AND b.last_seen_hour < %(cutoff)s AND b.event_group_id = %(default_group)s
          AND NOT EXISTS (SELECT 1 FROM events_eventinstance i WHERE i.event_base_id = b.id)
        LIMIT %(batch)s
        """,
        None,
        """
        DELETE FROM events_eventbase b WHERE b.id = ANY(%(ids)s) AND b.last_seen < %(cutoff)s
          AND b.event_group_id = %(default_group)s
          AND NOT EXISTS (SELECT 1 FROM events_eventinstance i WHERE i.event_base_id = b.id)
        """,
    ),
]

# Races with captures of events older than the cutoff (their rows' last_seen stays old), after which a
# batch runs again:
# - a deadlock with a writer the lock order above does not cover (an UPDATE by hand, say);
# - a capture adds a bucket to an instance (or an instance to a base) this batch found empty; the foreign
#   key refuses the delete at commit, and the batch is selected again without it.
RACES = (pg_errors.DeadlockDetected, pg_errors.ForeignKeyViolation)

DRY_RUN_COUNTS = {
    "buckets": "SELECT count(*) FROM events_occurrencebucket WHERE bucket_start < %(cutoff)s",
    "instances": """
        SELECT count(*) FROM events_eventinstance i JOIN events_eventbase b ON b.id = i.event_base_id
        WHERE i.last_seen < %(cutoff)s AND b.event_group_id = %(default_group)s
          AND NOT EXISTS (SELECT 1 FROM events_occurrencebucket o
                          WHERE o.event_instance_id = i.id AND o.bucket_start >= %(cutoff)s)
    """,
    "bases": """
        SELECT count(*) FROM events_eventbase b
        WHERE b.last_seen < %(cutoff)s AND b.last_seen_hour < %(cutoff)s AND b.event_group_id = %(default_group)s
          AND NOT EXISTS (SELECT 1 FROM events_occurrencebucket o
                          WHERE o.event_base_id = b.id AND o.bucket_start >= %(cutoff)s)
    """,
}


class Command(BaseCommand):
    help = "Delete occurrences older than EVENTSUM_RETENTION_DAYS, then instances and bases left empty."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="override EVENTSUM_RETENTION_DAYS")
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")

    def handle(self, days, batch_size, dry_run, **options):
        days = days if days is not None else settings.EVENTSUM_RETENTION_DAYS
        if days < 1 or not 1 <= batch_size <= MAX_BATCH:
            self.stderr.write(f"--days must be at least 1, and --batch-size from 1 to {MAX_BATCH}")
            raise SystemExit(2)
        try:
            cutoff = datetime.now(UTC) - timedelta(days=days)
        except OverflowError:
            self.stderr.write(f"{days} days reach back past the year 1: keep fewer (--days, EVENTSUM_RETENTION_DAYS)")
            raise SystemExit(2) from None
        parameters = {"cutoff": cutoff, "batch": batch_size, "default_group": DEFAULT_GROUP_ID}
        self.stdout.write(f"Pruning occurrences before {cutoff:%Y-%m-%d %H:%M:%S} UTC ({days} days)")
        if dry_run:
            with connection.cursor() as cursor:
                for name, sql in DRY_RUN_COUNTS.items():
                    cursor.execute(sql, parameters)
                    self.stdout.write(f"would delete {cursor.fetchone()[0]} {name}")
            return
        started = time.monotonic()
        totals = {}
        for name, select_sql, lock_sql, delete_sql in STEPS:
            totals[name] = 0
            while True:
                selected, deleted = self.delete_batch(select_sql, lock_sql, delete_sql, parameters)
                if not selected:
                    break
                totals[name] += deleted
                self.stdout.write(f"  {name}: {totals[name]} deleted so far")
                if selected < batch_size:
                    break
        with connection.cursor() as cursor:  # rate-limit minutes are only read while current
            cursor.execute("DELETE FROM events_ratewindow WHERE window_start < now() - interval '1 hour'")
        summary = ", ".join(f"{count} {name}" for name, count in totals.items())
        self.stdout.write(f"Deleted {summary} in {time.monotonic() - started:.1f}s")

    @staticmethod
    def delete_batch(select_sql: str, lock_sql: str | None, delete_sql: str, parameters: dict) -> tuple[int, int]:
        """One batch in one transaction: how many rows were selected, and how many deleted."""

        def work(cursor) -> tuple[int, int]:
            cursor.execute(select_sql, parameters)
            ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                return 0, 0
            if lock_sql:
                cursor.execute(lock_sql, {"ids": ids})
            cursor.execute(delete_sql, {**parameters, "ids": ids})
            return len(ids), cursor.fetchone()[0] if cursor.description else cursor.rowcount

        return in_transaction_retrying(work, RACES)
