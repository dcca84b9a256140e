"""Console operators: accounts with a role, argon2id password hashes, lockout after repeated failures,
optional TOTP (RFC 6238, pyotp), all in the centre's database; every change in the centre's audit.

Why this shape:
- The password is hashed with argon2id (argon2-cffi's RFC 9106 low-memory profile: 64 MiB, t=3), and
  passwords longer than MAX_PASSWORD are refused before hashing, so a huge body cannot pin a core.
- An unknown user name costs the same argon2 verification as a known one (a dummy hash), so response
  time does not say which names exist.
- After `max_failures` consecutive failures the account is locked for `lockout_s`; a locked account is
  refused even with the right password (that is the point), and the lock is lifted by time or by an admin.
- A TOTP secret is sealed under a key of the centre's keystore (ChaCha20-Poly1305, bound to the user
  name); a code is accepted once (the last used time step is kept), within one step of clock drift.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from central import audit
from central.console.schema import ROLES, Operator
from central.db import Database
from central.errors import AlreadyExists, CentralError, NotFound
from central.keys import CentreKeys

USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD, MAX_PASSWORD = 12, 256
TOTP_KEY_ID = "console-totp"
TOTP_AAD = b"facelock console totp v1"

_hasher = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16)
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class LoginRefused(CentralError):
    """Wrong name, password or code, or a locked account.  `locked` says which (shown to the user)."""

    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


@dataclass(frozen=True)
class Identity:
    username: str
    role: str

    def may(self, need: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(need)


def check_username(name: str) -> str:
    if not isinstance(name, str) or not USERNAME_RE.match(name):
        raise CentralError("a user name is 2-64 characters: lower-case letters, digits, '.', '_' or '-', "
                           "starting with a letter")
    return name


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise CentralError(f"a password is {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    return password


class Operators:
    def __init__(self, db: Database, keys: CentreKeys, max_failures: int = 5, lockout_s: float = 900.0) -> None:
        self.db = db
        self.keys = keys
        self.max_failures = max_failures
        self.lockout_s = lockout_s

    # -- sealing the TOTP secret ----------------------------------------------------------------
    def _aead(self) -> ChaCha20Poly1305:
        return ChaCha20Poly1305(self.keys.keystore.ensure(TOTP_KEY_ID)[:32])

    def _seal(self, username: str, secret: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead().encrypt(nonce, secret.encode(), TOTP_AAD + b"\0" + username.encode())

    def _open(self, username: str, sealed: bytes) -> str:
        try:
            return self._aead().decrypt(sealed[:12], sealed[12:], TOTP_AAD + b"\0" + username.encode()).decode()
        except (InvalidTag, ValueError):
            raise CentralError(f"the TOTP secret of {username!r} does not open (keystore changed?)") from None

    # -- accounts ---------------------------------------------------------------------------------
    def add(self, username: str, role: str, password: str, by: str, totp: bool = False) -> str | None:
        """Create an operator; returns the TOTP secret (base32, shown once) when `totp`."""
        check_username(username)
        check_password(password)
        if role not in ROLES:
            raise CentralError(f"role is one of {', '.join(ROLES)}")
        secret = None
        if totp:
            import pyotp

            secret = pyotp.random_base32()
        row = Operator(username=username, role=role, password_hash=_hasher.hash(password),
                       totp_sealed=self._seal(username, secret) if secret else None, totp_last_step=0,
                       failures=0, locked_until=0.0, created_at=time.time())
        try:
            with self.db.session() as s:
                s.add(row)
                s.flush()
                audit.record(s, by, "operator.add", username, role=role, totp=bool(secret))
        except IntegrityError:
            raise AlreadyExists(f"operator {username!r} exists") from None
        return secret

    def unlock(self, username: str, by: str) -> None:
        with self.db.session() as s:
            op = s.get(Operator, username)
            if op is None:
                raise NotFound(f"no operator {username!r}")
            op.failures, op.locked_until = 0, 0.0
            audit.record(s, by, "operator.unlock", username)

    def list(self) -> list[dict]:
        now = time.time()
        with self.db.session() as s:
            return [{"username": o.username, "role": o.role, "totp": o.totp_sealed is not None,
                     "locked": o.locked_until > now, "failures": o.failures, "last_login_at": o.last_login_at}
                    for o in s.scalars(select(Operator).order_by(Operator.username))]

    def get(self, username: str) -> Identity | None:
        with self.db.session() as s:
            op = s.get(Operator, username)
            return Identity(op.username, op.role) if op is not None else None

    # -- login --------------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str, code: str = "", now: float | None = None) -> Identity:
        """The operator, or LoginRefused.  Every outcome is in the centre's audit."""
        now = time.time() if now is None else now
        generic = "wrong user name, password or code"
        if (not isinstance(username, str) or not USERNAME_RE.match(username) or not isinstance(password, str)
                or len(password) > MAX_PASSWORD):
            _verify(_DUMMY_HASH, "x")
            raise LoginRefused(generic)
        with self.db.session() as s:
            op = s.get(Operator, username, with_for_update=True)
            if op is None:
                _verify(_DUMMY_HASH, password)
                audit.record(s, username, "console.login.refused", username, reason="unknown_user")
                refused = LoginRefused(generic)
            elif op.locked_until > now:
                audit.record(s, username, "console.login.refused", username, reason="locked")
                refused = LoginRefused("this account is locked after repeated failures: try again later, "
                                       "or ask an admin to unlock it", locked=True)
            elif not _verify(op.password_hash, password) or not self._totp_ok(op, code, now):
                op.failures += 1
                locked = op.failures >= self.max_failures
                if locked:
                    op.locked_until, op.failures = now + self.lockout_s, 0
                audit.record(s, username, "console.login.refused", username, reason="bad_credentials",
                             locked=locked)
                refused = LoginRefused(generic if not locked else
                                       "this account is now locked after repeated failures", locked=locked)
            else:
                op.failures, op.last_login_at = 0, now
                if _hasher.check_needs_rehash(op.password_hash):
                    op.password_hash = _hasher.hash(password)
                audit.record(s, username, "console.login", username)
                return Identity(op.username, op.role)
        raise refused

    def _totp_ok(self, op: Operator, code: str, now: float) -> bool:
        if op.totp_sealed is None:
            return True
        import pyotp

        code = (code or "").strip()
        if not (len(code) == 6 and code.isdigit()):
            return False
        totp = pyotp.TOTP(self._open(op.username, op.totp_sealed))
        step = int(now // totp.interval)
        for s in (step - 1, step, step + 1):
            if s > op.totp_last_step and secrets.compare_digest(totp.at(s * totp.interval), code):
                op.totp_last_step = s  # each code once
                return True
        return False


def _verify(hash_: str, password: str) -> bool:
    try:
        return _hasher.verify(hash_, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False

