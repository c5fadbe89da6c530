"""DRF's token authentication, with the token and its user read by one prepared statement and then
remembered by each process until the database says a token or a user changed.

DRF's own `Token.objects.select_related("user").get(key=...)` compiles the same ORM query on every
authenticated request, which cost more than the query itself; /search and /detail run it each time.
A prepared statement fixed that; the round trip itself still cost ~10% of a `/detail` request's CPU.

How a remembered token stops working: a trigger (migration 0011) sends `NOTIFY eventsum_auth` whenever
a token is changed or deleted and whenever a user is deleted or has `is_active`, `is_staff` or
`is_superuser` set. Each connection that authenticates by token `LISTEN`s, and before every lookup
reads what the server has sent (no round trip: a non-blocking read of the socket); any notification
empties the process's memory. A notification arrives when the change commits, so a revoked token
answers 401 from the next request on, as it did without the memory. Changes made through the ORM in
this process empty it at once (signals: a test's uncommitted change is never notified), and an entry
is trusted for at most a minute whatever happens (a pooler that drops notifications, say; the
operations doc asks for PgBouncer's session mode, which keeps them). Permissions are not remembered:
each request gets fresh user and token instances built from the remembered row. On a hot standby,
where LISTEN is refused and no notification arrives, nothing is remembered: every request reads its token.
"""

import weakref
from functools import cache
from time import monotonic

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _
from psycopg2 import errors as pg_errors
from rest_framework import authentication, exceptions

from events.prepared import PreparedStatement
from grouping.memo import BoundedMemo

CHANNEL = "eventsum_auth"
TRUSTED_SECONDS = 60
_rows = BoundedMemo(256)  # {token key: (the token's and its user's row, when it was read)}
_listening = weakref.WeakSet()  # the raw connections that LISTEN on CHANNEL
_deaf = weakref.WeakSet()  # the raw connections that can't (to a hot standby): nothing is remembered on them
_forgotten = 0  # how many times the memory was emptied (a row read before that is not remembered)


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
        row = _token_row(statement, key) if "\x00" not in key else None  # PostgreSQL can't take NUL in text
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = token_model.from_db(DEFAULT_DB_ALIAS, token_fields, row[: len(token_fields)])
        token.user = user_model.from_db(DEFAULT_DB_ALIAS, user_fields, row[len(token_fields) :])
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token


def _token_row(statement: PreparedStatement, key: str) -> tuple | None:
    if connection.in_atomic_block:  # a LISTEN there would wait for a commit: look it up, remember nothing
        return _read_token_row(statement, key)
    connection.ensure_connection()
    raw = connection.connection
    if raw in _deaf:
        return _read_token_row(statement, key)
    if raw not in _listening:
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
        except DatabaseError as error:
            if not isinstance(error.__cause__, pg_errors.ReadOnlySqlTransaction):
                raise
            # A hot standby ("cannot execute LISTEN during recovery"), where no NOTIFY arrives either: read
            # the token on every request, so a revoked one is refused as soon as the standby has replayed it.
            _deaf.add(raw)
            return _read_token_row(statement, key)
        _listening.add(raw)
        forget_tokens()  # whatever was remembered before may have changed unheard
    with connection.wrap_database_errors:  # a server gone away is an outage (503), not a crash
        raw.poll()  # reads any notification already sent, without waiting
    if raw.notifies:
        raw.notifies.clear()
        forget_tokens()
    remembered = _rows.peek(key)
    if remembered is not None and monotonic() - remembered[1] < TRUSTED_SECONDS:
        return remembered[0]
    forgotten = _forgotten
    row = _read_token_row(statement, key)
    # Another thread may have heard of a change while this one read: then the row may be the old one.
    if row is not None and forgotten == _forgotten:
        _rows.put(key, (row, monotonic()))
    return row


def _read_token_row(statement: PreparedStatement, key: str) -> tuple | None:
    with connection.cursor() as cursor:
        rows = statement.run(cursor, {"key": key})
    return rows[0] if rows else None


def forget_tokens(**kwargs) -> None:
    global _forgotten
    _forgotten += 1
    _rows.clear()


def connect_signals() -> None:
    """Changes made through the ORM in this process: forgotten at once, committed or not."""
    token_model, user_model = TokenAuthentication().get_model(), get_user_model()
    for model in (token_model, user_model):
        post_save.connect(forget_tokens, sender=model, dispatch_uid=f"forget_tokens_save_{model._meta.label}")
        post_delete.connect(forget_tokens, sender=model, dispatch_uid=f"forget_tokens_delete_{model._meta.label}")
