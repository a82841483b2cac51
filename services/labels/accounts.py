"""Annotators, argon2 password hashes, login sessions and token checks.

Tokens are stateless HMAC tokens (``lumenal.core.auth``) so every service can
verify them; the labels service additionally keeps a session row per login so
Logout and deactivation revoke a token before it expires. The role enforced
is the annotator's *current* role in the database, not the one in the token.

A valid session's row is cached for ``SESSION_CACHE_S``: the check otherwise
costs a database transaction on every call, a large share of NextTask's
latency. Changes made through this process (logout, deactivation, password or
role change) drop the cache entries at once; changes made elsewhere (another
replica, the ``lumenal users`` CLI) take effect within ``SESSION_CACHE_S``.
"""

from __future__ import annotations

import logging
import re
import threading
import time

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from lumenal.core import auth
from lumenal.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from lumenal.labels import models as m
from lumenal.labels.db import Database

log = logging.getLogger(__name__)

USER_ROLES = (auth.ANNOTATOR, auth.REVIEWER, auth.ADMIN)
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
_hasher = PasswordHasher()
# argon2 is memory-hard (64 MiB per hash by default): bound concurrent hashes so a burst of
# logins queues instead of exhausting memory.
_HASH_SLOTS = threading.BoundedSemaphore(4)
SESSION_CACHE_S = 2.0
# Built once: this runs on every authenticated call.
_SESSION_CHECK = (sa.select(m.Session.revoked_at, m.Annotator.role, m.Annotator.active)
                  .join(m.Annotator, m.Annotator.username == m.Session.username)
                  .where(m.Session.id == sa.bindparam("sid"), m.Session.username == sa.bindparam("sub")))


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidArgument(f"password must have at least {MIN_PASSWORD} characters")
    with _HASH_SLOTS:
        return _hasher.hash(password)


def check_username(username: str) -> str:
    if not _USERNAME.match(username or ""):
        raise InvalidArgument("username must be 1-64 characters of letters, digits, _ . @ -")
    return username


def check_role(role: str) -> str:
    if role not in USER_ROLES:
        raise InvalidArgument(f"role must be one of {', '.join(USER_ROLES)}, not {role!r}")
    return role


class Accounts:
    def __init__(self, db: Database, secret: str, token_ttl_s: float) -> None:
        self.db, self.secret, self.token_ttl_s = db, secret, token_ttl_s
        # session id -> (monotonic time checked, username, current role); valid sessions only
        self._sessions: dict[str, tuple[float, str, str]] = {}
        self._generation = 0  # bumped by every revocation: a check that raced with one is not cached

    # -- annotators -----------------------------------------------------------
    def create(self, username: str, password: str, role: str, display_name: str = "") -> m.Annotator:
        user = m.Annotator(username=check_username(username), role=check_role(role),
                           password_hash=hash_password(password), display_name=display_name or username,
                           active=True, created_at=time.time())

        def tx(s: DbSession) -> m.Annotator:
            s.add(user)
            s.flush()
            return user
        try:
            return self.db.write(tx)
        except IntegrityError:
            raise AlreadyExists(f"annotator {username!r} already exists") from None

    def update(self, username: str, *, password: str = "", role: str = "", active: bool = True,
               display_name: str = "") -> m.Annotator:
        """Change an annotator; empty password/role/display_name keep the old value."""
        new_hash = hash_password(password) if password else None
        if role:
            check_role(role)

        def tx(s: DbSession) -> m.Annotator:
            user = s.scalar(sa.select(m.Annotator).where(m.Annotator.username == username).with_for_update())
            if user is None:
                raise NotFound(f"no annotator {username!r}")
            demoted = user.role == auth.ADMIN and (not active or (role and role != auth.ADMIN))
            if demoted and self._active_admins(s) <= 1:
                raise FailedPrecondition("cannot deactivate or demote the last active admin")
            if new_hash or (user.active and not active):
                s.execute(sa.update(m.Session).where(m.Session.username == username,
                                                     m.Session.revoked_at.is_(None))
                          .values(revoked_at=time.time()))
            user.password_hash = new_hash or user.password_hash
            user.role = role or user.role
            user.display_name = display_name or user.display_name
            user.active = active
            return user
        try:
            return self.db.write(tx)
        finally:
            self._forget(username)

    @staticmethod
    def _active_admins(s: DbSession) -> int:
        return s.scalar(sa.select(sa.func.count()).select_from(m.Annotator)
                        .where(m.Annotator.role == auth.ADMIN, m.Annotator.active.is_(True))) or 0

    def get(self, username: str) -> m.Annotator:
        with self.db.read() as s:
            user = s.scalar(sa.select(m.Annotator).where(m.Annotator.username == username))
        if user is None:
            raise NotFound(f"no annotator {username!r}")
        return user

    def list(self) -> list[m.Annotator]:
        with self.db.read() as s:
            return list(s.scalars(sa.select(m.Annotator).order_by(m.Annotator.username)))

    def count(self) -> int:
        with self.db.read() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(m.Annotator)) or 0

    def bootstrap_admin(self, username: str, password: str) -> bool:
        """Create the first admin when the database has no annotators (first start)."""
        if self.count() > 0:
            return False
        if not password:
            log.warning("no annotators yet: set LUMENAL_LABELS_ADMIN_PASSWORD or run 'lumenal users add'")
            return False
        try:
            self.create(username, password, auth.ADMIN, "Administrator")
        except AlreadyExists:
            return False
        log.info("bootstrap admin created", extra={"username": username})
        return True

    # -- sessions -------------------------------------------------------------
    def login(self, username: str, password: str) -> tuple[str, m.Annotator, float]:
        """Check the password; return (token, annotator, expires_at)."""
        with self.db.read() as s:
            user = s.scalar(sa.select(m.Annotator).where(m.Annotator.username == username))
        if user is None or not self._verify(user.password_hash, password):
            raise Unauthenticated("invalid username or password")
        if not user.active:
            raise Unauthenticated(f"annotator {username!r} is deactivated")
        token, principal = auth.issue_token(self.secret, user.username, user.role, self.token_ttl_s)
        session = m.Session(id=principal.session_id, username=user.username, created_at=time.time(),
                            expires_at=principal.expires_at)
        self.db.write(lambda s: s.add(session))
        if _hasher.check_needs_rehash(user.password_hash):
            new_hash = hash_password(password)
            self.db.write(lambda s: s.execute(sa.update(m.Annotator).where(m.Annotator.id == user.id)
                                              .values(password_hash=new_hash)))
        return token, user, principal.expires_at

    @staticmethod
    def _verify(password_hash: str, password: str) -> bool:
        try:
            with _HASH_SLOTS:
                return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def logout(self, principal: auth.Principal) -> None:
        self.db.write(lambda s: s.execute(sa.update(m.Session).where(m.Session.id == principal.session_id)
                                          .values(revoked_at=time.time())))
        self._generation += 1
        self._sessions.pop(principal.session_id, None)

    def _forget(self, username: str) -> None:
        """Drop cached sessions of ``username`` (its role, activity or password changed)."""
        self._generation += 1
        for sid, (_, who, _) in list(self._sessions.items()):
            if who == username:
                self._sessions.pop(sid, None)

    def authenticate(self, token: str | None) -> auth.Principal:
        """Verify the token, its session and the annotator; the current role wins."""
        if not token:
            raise Unauthenticated("missing bearer token: log in first")
        p = auth.verify_token(self.secret, token)
        if p.role == auth.SERVICE:
            return p  # service tokens are stateless (no login, no session row)
        cached = self._sessions.get(p.session_id)
        if cached is not None and time.monotonic() - cached[0] < SESSION_CACHE_S and cached[1] == p.subject:
            return auth.Principal(p.subject, cached[2], p.session_id, p.expires_at)
        checked, generation = time.monotonic(), self._generation
        with self.db.read_conn() as conn:
            row = conn.execute(_SESSION_CHECK, {"sid": p.session_id, "sub": p.subject}).first()
        if row is None:
            raise Unauthenticated("unknown session: log in again")
        revoked_at, role, active = row
        if revoked_at is not None:
            raise Unauthenticated("session was revoked (logout, deactivation or password change): log in again")
        if not active:
            raise Unauthenticated(f"annotator {p.subject!r} is deactivated")
        if len(self._sessions) > 10_000:  # bound the memory: stale entries go, live ones are re-read
            self._sessions.clear()
        if generation == self._generation:
            self._sessions[p.session_id] = (checked, p.subject, role)
        return auth.Principal(p.subject, role, p.session_id, p.expires_at)
