from django.db import migrations, models

# Subtracts grouping counters (what pruning removes with old buckets); a counter that reaches 0 is dropped,
# and so is a grouping left with none.
SUBTRACT = """
CREATE OR REPLACE FUNCTION eventsum_subtract_counters(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    result jsonb := COALESCE(a, '{}'::jsonb);
    grouping_name text;
    decrements jsonb;
    totals jsonb;
    counter_key text;
    amount text;
    remaining numeric;
BEGIN
    FOR grouping_name, decrements IN SELECT key, value FROM jsonb_each(COALESCE(b, '{}'::jsonb)) LOOP
        CONTINUE WHEN jsonb_typeof(decrements) <> 'object' OR jsonb_typeof(result -> grouping_name) <> 'object';
        totals := result -> grouping_name;
        FOR counter_key, amount IN SELECT key, value FROM jsonb_each_text(decrements) LOOP
            remaining := COALESCE((totals ->> counter_key)::numeric, 0) - amount::numeric;
            totals := CASE WHEN remaining > 0 THEN totals || jsonb_build_object(counter_key, remaining)
                           ELSE totals - counter_key END;
        END LOOP;
        result := CASE WHEN totals = '{}'::jsonb THEN result - grouping_name
                       ELSE result || jsonb_build_object(grouping_name, totals) END;
    END LOOP;
    RETURN result;
END
$$;
"""

# The totals of rows stored before this migration, from their buckets.
BACKFILL = """
UPDATE events_eventinstance i
SET total_count = per_instance.total, counters = per_instance.counters
FROM (
    SELECT event_instance_id, sum(count) AS total,
           COALESCE(eventsum_sum_counters(counters) FILTER (WHERE counters <> '{}'::jsonb), '{}'::jsonb) AS counters
    FROM events_occurrencebucket GROUP BY event_instance_id
) AS per_instance
WHERE i.id = per_instance.event_instance_id;

UPDATE events_eventbase b
SET total_count = per_base.total
FROM (SELECT event_base_id, sum(total_count) AS total FROM events_eventinstance GROUP BY event_base_id) AS per_base
WHERE b.id = per_base.event_base_id;
"""


class Migration(migrations.Migration):
    dependencies = [("events", "0012_drop_bucket_time_index")]

    operations = [
        migrations.AddField(
            model_name="eventbase",
            name="total_count",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="eventinstance",
            name="counters",
            field=models.JSONField(db_default=models.Value({}, output_field=models.JSONField()), default=dict),
        ),
        migrations.AddField(
            model_name="eventinstance",
            name="total_count",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.RunSQL(SUBTRACT, "DROP FUNCTION IF EXISTS eventsum_subtract_counters(jsonb, jsonb);"),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
