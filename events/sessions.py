"""Sessions (the admin's, and reads through it): Django's database sessions, with the cookie's key checked
before it is looked up."""

from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS

KEY_CHARS = frozenset(VALID_KEY_CHARS)


class SessionStore(db.SessionStore):
    def _validate_session_key(self, key):
        # Keys are made of these characters only. A quoted cookie can carry any other ("\000" unquotes to a
        # NUL), and a NUL sent to PostgreSQL in the lookup was a 500 on every page that reads the session.
        return super()._validate_session_key(key) and KEY_CHARS.issuperset(key)
