"""Django's database sessions (``SESSION_ENGINE``), with the read every request makes
written out (``tasks.sqlrows``): the ORM's ``get`` cost most of that request's share of
the session. Stored, saved, expired and cleared exactly as ``django.contrib.sessions.
backends.db`` does; the table is the same."""

from django.contrib.sessions.backends import db
from django.contrib.sessions.models import Session
from django.utils import timezone

from tasks import sqlrows


class SessionStore(db.SessionStore):
    def _get_session_from_db(self):
        # Sessions are the whole deployment's (they say which user, not which organization).
        where = "session_key = %s AND expire_date > %s"
        found = sqlrows.rows(Session, where, [self.session_key, timezone.now()])
        if not found:
            self._session_key = None  # as the ORM's DoesNotExist: a new session if saved
            return None
        return found[0]
