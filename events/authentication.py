"""DRF's token authentication, with the token and its user read by one prepared statement.

DRF's own `Token.objects.select_related("user").get(key=...)` compiles the same ORM query on every
authenticated request, which cost more than the query itself; /search and /detail run it each time.
"""

from functools import cache

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from events.prepared import PreparedStatement


@cache  # once per process: DRF makes a new authenticator for every request
def _token_lookup() -> tuple[PreparedStatement, type, list[str], type, list[str]]:
    token_model, user_model = TokenAuthentication().get_model(), get_user_model()
    token_fields = [field.attname for field in token_model._meta.concrete_fields]
    user_fields = [field.attname for field in user_model._meta.concrete_fields]
    columns = [f't."{name}"' for name in token_fields] + [f'u."{name}"' for name in user_fields]
    sql = (
        f"SELECT {', '.join(columns)} FROM {token_model._meta.db_table} t "
        f'JOIN {user_model._meta.db_table} u ON u."{user_model._meta.pk.attname}" = t."user_id" '
        "WHERE t.key = %(key)s::text"
    )
    return PreparedStatement("eventsum_token", sql), token_model, token_fields, user_model, user_fields


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        statement, token_model, token_fields, user_model, user_fields = _token_lookup()
        rows = []
        if "\x00" not in key:  # PostgreSQL can't take NUL in text: no such token, not a server error
            with connection.cursor() as cursor:
                rows = statement.run(cursor, {"key": key})
        if not rows:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        row = rows[0]
        token = token_model.from_db(DEFAULT_DB_ALIAS, token_fields, row[: len(token_fields)])
        token.user = user_model.from_db(DEFAULT_DB_ALIAS, user_fields, row[len(token_fields) :])
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
