import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("events", "0013_running_totals")]

    # Each repeated the start of a unique index: (service, environment) leads the base's identity, and the
    # rate window's service leads its identity. A base row is rewritten, with every index, by each capture.
    # Only the rate window's index goes: Django's own AlterField would also drop and re-add its foreign key.
    operations = [
        migrations.RemoveIndex(model_name="eventbase", name="eventbase_service_env"),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS events_ratewindow_service_id_273eb87f;",
                    "CREATE INDEX IF NOT EXISTS events_ratewindow_service_id_273eb87f "
                    "ON events_ratewindow (service_id);",
                )
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="ratewindow",
                    name="service",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="events.service",
                    ),
                ),
            ],
        ),
    ]
