"""Recompute every instance's and base's running totals (total_count, has_counters) from their buckets.

The capture statement and prune_events keep them exact; run this after writing buckets by hand in SQL, or
once after a rolling upgrade to the release that introduced them, whose previous version, still serving
while the new one migrated, counted occurrences into buckets only.
"""

import time
from importlib import import_module

from django.core.management.base import BaseCommand
from django.db import connection, transaction

# The migration that introduced the totals owns the statement, so the two never disagree.
RECOUNT_SQL = import_module("events.migrations.0013_running_totals").BACKFILL


class Command(BaseCommand):
    help = "Recompute the instances' and bases' running totals from their buckets (holds captures back meanwhile)."

    def handle(self, **options):
        started = time.monotonic()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(RECOUNT_SQL)
        self.stdout.write(f"Recounted the running totals in {time.monotonic() - started:.1f}s")
