"""Work in short transactions beside live captures (triage, prune_events, recount_totals), run again when it
races one."""

import time

from django.db import DatabaseError, connection, transaction


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
