from django.conf import settings
from django.db import migrations

# Each process remembers the tokens it authenticated (events/authentication.py) and forgets them all when
# told that a token, or a user's right to use one, changed. Statement triggers: one notification per
# statement, and PostgreSQL folds identical notifications of one transaction into one.
FUNCTION = """
CREATE OR REPLACE FUNCTION eventsum_notify_auth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('eventsum_auth', '');
    RETURN NULL;
END
$$;
"""
USER_COLUMNS = ("is_active", "is_staff", "is_superuser")


def create_triggers(apps, schema_editor):
    token_table = apps.get_model("authtoken", "Token")._meta.db_table
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    columns = [field.column for field in user_model._meta.concrete_fields if field.name in USER_COLUMNS]
    user_update = f"UPDATE OF {', '.join(columns)} OR " if columns else ""
    quote = schema_editor.quote_name
    schema_editor.execute(FUNCTION)
    schema_editor.execute(
        f"CREATE TRIGGER eventsum_token_changed AFTER UPDATE OR DELETE OR TRUNCATE ON {quote(token_table)} "
        "FOR EACH STATEMENT EXECUTE FUNCTION eventsum_notify_auth()"
    )
    schema_editor.execute(
        f"CREATE TRIGGER eventsum_user_changed AFTER {user_update}DELETE OR TRUNCATE "
        f"ON {quote(user_model._meta.db_table)} FOR EACH STATEMENT EXECUTE FUNCTION eventsum_notify_auth()"
    )


def drop_triggers(apps, schema_editor):
    token_table = apps.get_model("authtoken", "Token")._meta.db_table
    user_table = apps.get_model(settings.AUTH_USER_MODEL)._meta.db_table
    quote = schema_editor.quote_name
    schema_editor.execute(f"DROP TRIGGER IF EXISTS eventsum_token_changed ON {quote(token_table)}")
    schema_editor.execute(f"DROP TRIGGER IF EXISTS eventsum_user_changed ON {quote(user_table)}")
    schema_editor.execute("DROP FUNCTION IF EXISTS eventsum_notify_auth()")


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0010_drop_redundant_fk_indexes"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
