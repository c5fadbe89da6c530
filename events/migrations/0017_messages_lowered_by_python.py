from django.db import migrations

# Messages were lower-cased for keyword search by PostgreSQL's lower(), which follows the server's locale:
# under the C locale it leaves every letter outside ASCII as it was, so "Übertrag" could never match a
# keyword (keywords are lower-cased by Python). Captures now lower-case messages in Python; this does the
# same to what is stored. Only texts with a character outside ASCII can differ.
BATCH = 2000


def lower_messages(apps, schema_editor):
    EventBaseSearch = apps.get_model("events", "EventBaseSearch")
    outside_ascii = EventBaseSearch.objects.filter(messages_text__regex=r"[^\x01-\x7f]").only("messages_text")
    changed = []
    for row in outside_ascii.iterator(chunk_size=BATCH):
        if (lowered := row.messages_text.lower()) != row.messages_text:
            row.messages_text = lowered
            changed.append(row)
        if len(changed) == BATCH:
            EventBaseSearch.objects.bulk_update(changed, ["messages_text"])
            changed.clear()
    EventBaseSearch.objects.bulk_update(changed, ["messages_text"])


class Migration(migrations.Migration):
    dependencies = [("events", "0016_lz4_json")]

    operations = [migrations.RunPython(lower_messages, migrations.RunPython.noop)]
