from django.db import migrations

# Retention deletes bases in SQL; their search row goes with them, in the database itself. (Its own
# migration: Django creates 0004's foreign key only at the end of that migration.)
SQL = """
DO $$
DECLARE name text;
BEGIN
    SELECT conname INTO name FROM pg_constraint
    WHERE conrelid = 'events_eventbasesearch'::regclass AND contype = 'f';
    EXECUTE format('ALTER TABLE events_eventbasesearch DROP CONSTRAINT %I', name);
    ALTER TABLE events_eventbasesearch ADD CONSTRAINT eventbasesearch_base_fk
        FOREIGN KEY (event_base_id) REFERENCES events_eventbase (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("events", "0004_base_search_table")]

    operations = [migrations.RunSQL(SQL, migrations.RunSQL.noop)]
