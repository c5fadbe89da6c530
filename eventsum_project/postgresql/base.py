"""Django's PostgreSQL backend with a health check that costs no round trip.

Django checks a reused connection with `SELECT 1` before each request's first query: a round trip per
request, about as costly as a small capture's own statement. An idle connection that the server has
closed (a restart, a terminated backend, a killed server) has the server's goodbye or the end of the
stream waiting on its socket, so a zero-timeout poll of the socket tells the same without asking.
Anything else a server may send unprompted (a parameter change after a configuration reload) only
costs a reconnect.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        if self.connection is None or not self.health_check_enabled or self.health_check_done:
            return
        if self.connection.closed or _has_unread_input(self.connection.fileno()):
            self.close()
        self.health_check_done = True


def _has_unread_input(fd: int) -> bool:
    # Between requests nothing is owed to us: anything readable means the server has hung up.
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))
