from django.db import migrations

# Each capture rewrites its instance's raw data, and PostgreSQL compresses it: with pglz that was a quarter of
# the database's CPU on arrays of 100 (perf, 2026-12-05). lz4 does the same job at a fraction of the cost
# (PostgreSQL per array event 0.125-0.133 -> 0.107-0.111 ms on Debian's PostgreSQL 15, WAL +10%). Only a
# server built with lz4 offers it (the embedded pgserver is not): elsewhere nothing changes. Values already
# stored keep their compression; a new value is compressed with the column's method.
JSON_COLUMNS = {
    "events_eventinstance": ("generic_data", "filters", "raw_data", "raw_details", "processed_details"),
    "events_eventbase": ("processed_data",),
}


def _set_compression(method: str) -> str:
    statements = " ".join(
        f"ALTER TABLE {table} {', '.join(f'ALTER COLUMN {column} SET COMPRESSION {method}' for column in columns)};"
        for table, columns in JSON_COLUMNS.items()
    )
    return f"""
DO $$ BEGIN
    IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
        {statements}
    END IF;
END $$;"""


class Migration(migrations.Migration):
    dependencies = [("events", "0015_recency_by_hour")]

    operations = [migrations.RunSQL(_set_compression("lz4"), _set_compression("default"))]
