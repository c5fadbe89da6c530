"""Server-side prepared statements for the hot queries."""

import hashlib
import re
import weakref

from django.db import connection


class PreparedStatement:
    """SQL with %(name)s parameters as a server-side prepared statement, prepared once per database
    connection on first use.

    Planning the capture upsert cost more than running it for a single event, and /detail's query spends
    half its time in the planner; prepared, PostgreSQL plans each once per connection. The name carries a
    digest of the SQL, so a new release never runs an old plan.
    """

    def __init__(self, prefix: str, sql: str):
        # Each parameter with the cast it has in the SQL: EXECUTE needs its values typed the same way.
        casts = dict(reversed(re.findall(r"%\((\w+)\)s((?:::[\w\[\]]+)?)", sql)))
        self.names = list(casts)
        positional = sql
        for position, name in enumerate(self.names, start=1):
            positional = positional.replace(f"%({name})s", f"${position}")
        self.statement = f"{prefix}_{hashlib.sha1(sql.encode()).hexdigest()[:12]}"
        self.prepare_sql = f"PREPARE {self.statement} AS {positional}"
        self.execute_sql = f"EXECUTE {self.statement} ({', '.join('%s' + casts[name] for name in self.names)})"
        self._prepared_on = weakref.WeakKeyDictionary()

    def run(self, cursor, parameters: dict) -> list[tuple]:
        raw_connection = connection.connection
        if raw_connection not in self._prepared_on:
            cursor.execute(self.prepare_sql)
            self._prepared_on[raw_connection] = True
        cursor.execute(self.execute_sql, [parameters[name] for name in self.names])
        return cursor.fetchall()
