"""Django's PostgreSQL backend with this service's session settings and a health check that costs no round
trip.

Each new connection turns off JIT compilation: PostgreSQL compiles a query whose estimated cost passes
jit_above_cost, and the capture statement's input tables are estimated at 100 rows each, so on a server
built with LLVM (Debian's, Ubuntu's, the official Docker images) every capture spent ~0.5 s compiling a
statement that runs in under a millisecond. With EVENTSUM_DB_ASYNC_COMMIT it also turns off
synchronous_commit. Both are set with SET rather than the connection's startup `options`, which PgBouncer
refuses for parameters it does not track.

Django checks a reused connection with `SELECT 1` before each request's first query: a round trip per
request, about as costly as a small capture's own statement. An idle connection that the server has
closed (a restart, a terminated backend, a killed server) has the server's goodbye or the end of the
stream waiting on its socket, so a zero-timeout poll of the socket tells the same without asking.
Notifications (a connection that authenticates tokens listens for some) are read and the connection
kept; anything else a server may send unprompted (a parameter change after a configuration reload)
only costs a reconnect.
"""

import select

import psycopg2
import psycopg2.extras
from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        # `json` columns (events.models.JSONTextField) come back as text for the field to parse, as Django
        # has psycopg2 do for jsonb; psycopg2 would otherwise parse them first.
        psycopg2.extras.register_default_json(conn_or_curs=connection, loads=lambda text: text)
        return connection

    def init_connection_state(self):
        super().init_connection_state()
        statements = "SET jit = off"
        if settings.EVENTSUM_DB_ASYNC_COMMIT:
            statements += "; SET synchronous_commit = off"
        with self.connection.cursor() as cursor:  # one round trip, once per connection
            cursor.execute(statements)

    def close_if_health_check_failed(self):
        if self.connection is None or not self.health_check_enabled or self.health_check_done:
            return
        if self.connection.closed or (_has_unread_input(self.connection.fileno()) and not _read_ok(self.connection)):
            self.close()
        self.health_check_done = True


def _has_unread_input(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _read_ok(raw_connection) -> bool:
    """Reads what is waiting (notifications are kept in `raw_connection.notifies`); False if it was the
    server hanging up."""
    notified = len(raw_connection.notifies)
    try:
        raw_connection.poll()
    except psycopg2.Error:
        return False
    # Only notifications are sure to be harmless: the server's goodbye can arrive just before the end of
    # the stream, and anything else keeps the old rule (a reconnect). Nothing may be left unread.
    return (
        not raw_connection.closed
        and len(raw_connection.notifies) > notified
        and not _has_unread_input(raw_connection.fileno())
    )
