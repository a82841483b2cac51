"""Signed bearer tokens shared by every service.

The labels service issues tokens at login and keeps sessions (so logout
revokes them); every service verifies the HMAC signature, expiry and role
statelessly with ``LUMENAL_AUTH_SECRET``, without calling another service.
Services call each other with a token of role ``service``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

import grpc

from lumenal.core.errors import PermissionDenied, Unauthenticated

ANNOTATOR, REVIEWER, ADMIN, SERVICE = "annotator", "reviewer", "admin", "service"
ROLES = (ANNOTATOR, REVIEWER, ADMIN, SERVICE)
# Higher roles may do what lower ones may; SERVICE may do everything.
_RANK = {ANNOTATOR: 1, REVIEWER: 2, ADMIN: 3, SERVICE: 4}


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    session_id: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, body: str) -> str:
    return _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())


def issue_token(secret: str, subject: str, role: str, ttl_s: float,
                session_id: str | None = None) -> tuple[str, Principal]:
    """A signed token for ``subject`` with ``role``, valid for ``ttl_s`` seconds."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    p = Principal(subject, role, session_id or secrets.token_hex(12), time.time() + ttl_s)
    body = _b64(json.dumps({"sub": p.subject, "role": p.role, "sid": p.session_id,
                            "exp": p.expires_at}).encode())
    return f"{body}.{_sign(secret, body)}", p


def service_token(secret: str, name: str = "lumenal", ttl_s: float = 365 * 86400) -> str:
    """Token other services present (role ``service``)."""
    return issue_token(secret, f"svc:{name}", SERVICE, ttl_s, session_id=f"svc-{name}")[0]


def verify_token(secret: str, token: str, now: float | None = None) -> Principal:
    """Check signature and expiry; raise ``Unauthenticated`` with the reason."""
    try:
        body, sig = token.split(".")
    except ValueError:
        raise Unauthenticated("malformed token") from None
    if not hmac.compare_digest(_sign(secret, body), sig):
        raise Unauthenticated("invalid token signature")
    try:
        claims = json.loads(_unb64(body))
        p = Principal(str(claims["sub"]), str(claims["role"]), str(claims["sid"]), float(claims["exp"]))
    except (ValueError, KeyError, TypeError):
        raise Unauthenticated("malformed token claims") from None
    if p.expires_at < (time.time() if now is None else now):
        raise Unauthenticated("token expired; log in again")
    return p


def bearer(context: grpc.ServicerContext) -> str | None:
    """The bearer token in the call's ``authorization`` metadata, if any."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


def authenticate(context: grpc.ServicerContext, secret: str) -> Principal:
    token = bearer(context)
    if not token:
        raise Unauthenticated("missing bearer token: log in first")
    return verify_token(secret, token)


def require(principal: Principal, role: str) -> None:
    """Raise ``PermissionDenied`` unless ``principal`` has at least ``role``."""
    if _RANK.get(principal.role, 0) < _RANK[role]:
        raise PermissionDenied(f"{principal.subject} ({principal.role}) may not do this: needs {role}")


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token`` (client side)."""
    return (("authorization", f"Bearer {token}"),)
