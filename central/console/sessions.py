"""Server-side sessions and CSRF tokens.

The cookie holds 32 random bytes; the database holds only their SHA-256, so a database dump opens no
session.  Each session has its own CSRF token (compared in constant time), required on every
state-changing request as the form field `csrf` or the header `X-CSRF-Token` (htmx).  Before login, a
separate short-lived cookie carries the login form's CSRF token (double submit), so a forged login is
refused too.  Sessions end after `idle_s` without a request or `max_age_s` in all, and at logout.

Cookies are `__Host-` prefixed (the browser enforces Secure, Path=/ and no Domain), HttpOnly and
SameSite=Strict.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete

from central.console.operators import Identity
from central.console.schema import Operator, SessionRow
from central.db import Database

SESSION_COOKIE = "__Host-facelock-session"
LOGIN_COOKIE = "__Host-facelock-login"
TOUCH_EVERY_S = 15.0


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and secrets.compare_digest(str(a).encode(), str(b).encode())


@dataclass(frozen=True)
class Session:
    identity: Identity
    csrf: str
    created_at: float


class Sessions:
    def __init__(self, db: Database, idle_s: float = 1800.0, max_age_s: float = 12 * 3600.0) -> None:
        self.db = db
        self.idle_s = idle_s
        self.max_age_s = max_age_s

    def create(self, identity: Identity) -> tuple[str, Session]:
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time()
        with self.db.session() as s:
            s.add(SessionRow(token_hash=_hash(token), username=identity.username, csrf=csrf, created_at=now,
                             last_seen=now))
        return token, Session(identity, csrf, now)

    def load(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        now = time.time()
        with self.db.session() as s:
            row = s.get(SessionRow, _hash(token))
            if row is None:
                return None
            if now - row.last_seen > self.idle_s or now - row.created_at > self.max_age_s:
                s.delete(row)
                return None
            op = s.get(Operator, row.username)
            if op is None:  # the operator was removed: the session dies with them
                s.delete(row)
                return None
            if now - row.last_seen > TOUCH_EVERY_S:
                row.last_seen = now
            return Session(Identity(op.username, op.role), row.csrf, row.created_at)

    def end(self, token: str | None) -> None:
        if token:
            with self.db.session() as s:
                s.execute(delete(SessionRow).where(SessionRow.token_hash == _hash(token)))
