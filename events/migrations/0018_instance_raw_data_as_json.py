from importlib import import_module

from django.db import migrations

import events.models

# An instance's latest raw data and details as `json`, not `jsonb` (events.models.JSONTextField). One ALTER
# TABLE for the three columns, so the table is rewritten once (AlterField would rewrite it per column). It
# holds the table's lock while it runs, and captures wait: 13.4 s for the bench's 104,000 instances
# (~4.7 KB of raw data each, 487 MB, 423 MB after) on its 2-core machine. docs/operations.md, "Upgrades".
COLUMNS = ("raw_data", "raw_details", "processed_details")
# A change of type resets a column's compression to the default: 0016's lz4, where the server has it, again.
set_compression = import_module("events.migrations.0016_lz4_json")._set_compression


def _alter(type_name: str) -> str:
    changes = ", ".join(f"ALTER COLUMN {column} TYPE {type_name} USING {column}::{type_name}" for column in COLUMNS)
    return f"ALTER TABLE events_eventinstance {changes}; {set_compression('lz4')}"


class Migration(migrations.Migration):
    dependencies = [("events", "0017_messages_lowered_by_python")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(_alter("json"), _alter("jsonb"))],
            state_operations=[
                migrations.AlterField(
                    model_name="eventinstance",
                    name="processed_details",
                    field=events.models.JSONTextField(default=dict),
                ),
                migrations.AlterField(
                    model_name="eventinstance",
                    name="raw_data",
                    field=events.models.JSONTextField(help_text="The event_data of the latest occurrence."),
                ),
                migrations.AlterField(
                    model_name="eventinstance",
                    name="raw_details",
                    field=events.models.JSONTextField(default=dict, help_text="The extra_args of the latest occurrence."),
                ),
            ],
        )
    ]
