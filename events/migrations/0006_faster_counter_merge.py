from django.db import migrations

# The merge of 0001, in PL/pgSQL: it walks only the increments (usually one key) instead of
# re-aggregating every counter the bucket already holds, which made busy buckets slow to update.
SQL = """
CREATE OR REPLACE FUNCTION eventsum_merge_counters(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    result jsonb := COALESCE(a, '{}'::jsonb);
    grouping_name text;
    increments jsonb;
    totals jsonb;
    counter_key text;
    amount text;
BEGIN
    FOR grouping_name, increments IN SELECT key, value FROM jsonb_each(COALESCE(b, '{}'::jsonb)) LOOP
        CONTINUE WHEN jsonb_typeof(increments) <> 'object';
        totals := CASE WHEN jsonb_typeof(result -> grouping_name) = 'object'
                       THEN result -> grouping_name ELSE '{}'::jsonb END;
        FOR counter_key, amount IN SELECT key, value FROM jsonb_each_text(increments) LOOP
            totals := totals || jsonb_build_object(
                counter_key, COALESCE((totals ->> counter_key)::numeric, 0) + amount::numeric);
        END LOOP;
        result := result || jsonb_build_object(grouping_name, totals);
    END LOOP;
    RETURN result;
END
$$;
"""

# The aggregate of 0002 keeps using this function by name.
PREVIOUS = """
CREATE OR REPLACE FUNCTION eventsum_merge_counters(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(jsonb_object_agg(grouping_name, totals), '{}'::jsonb)
    FROM (
        SELECT grouping_name, jsonb_object_agg(counter_key, total) AS totals
        FROM (
            SELECT g.key AS grouping_name, c.key AS counter_key, sum(c.value::numeric) AS total
            FROM (SELECT * FROM jsonb_each(a) UNION ALL SELECT * FROM jsonb_each(b)) AS g,
                 LATERAL jsonb_each_text(CASE WHEN jsonb_typeof(g.value) = 'object' THEN g.value ELSE '{}'::jsonb END) AS c
            GROUP BY 1, 2
        ) AS per_key
        GROUP BY grouping_name
    ) AS per_grouping
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("events", "0005_search_cascades_with_base")]

    operations = [migrations.RunSQL(SQL, PREVIOUS)]
