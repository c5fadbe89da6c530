from django.db import migrations

# Sums the grouping counters of many buckets in SQL (for /detail), with the same merge the upsert uses.
SQL = """
CREATE AGGREGATE eventsum_sum_counters(jsonb) (
    SFUNC = eventsum_merge_counters,
    STYPE = jsonb,
    INITCOND = '{}'
);
"""


class Migration(migrations.Migration):
    dependencies = [("events", "0001_initial")]

    operations = [migrations.RunSQL(SQL, "DROP AGGREGATE IF EXISTS eventsum_sum_counters(jsonb);")]
