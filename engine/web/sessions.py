"""Dashboard sessions and CSRF tokens: signed cookies, no server-side state.

A person logs in once with the admin token or the read-only token (a POST form, never a
URL) and gets a session cookie, signed with a key derived from the admin token, that
records the session's role: every admin process sharing the tokens accepts it, and
changing the admin token ends every session. A read-only session is signed with a key
derived from both tokens, so changing the read-only token ends those sessions too, and a
cookie whose role was edited fails its signature. The CSRF token of a page is a MAC
of its session id, so another site, which can neither read the page nor the cookie,
cannot produce it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

import orjson

COOKIE = "lazarus_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_NAME = re.compile(r"[^A-Za-z0-9_.@+-]")
MAX_NAME = 64
MAX_COOKIE = 1024  # a real one is about 150 bytes; longer is not ours


class Role(StrEnum):
    """What a token, and a session made with it, may do."""

    ADMIN = "admin"  # everything (LAZARUS_ADMIN_TOKEN)
    READ = "read"  # look only: every unsafe request is refused (LAZARUS_ADMIN_READ_TOKEN)


@dataclass(frozen=True, slots=True)
class Session:
    """Who holds a dashboard session: an id for the audit log, an optional name and
    what the session may do."""

    sid: str
    name: str
    expires: int  # Unix time
    role: Role = Role.ADMIN

    @property
    def read_only(self) -> bool:
        return self.role is Role.READ

    @property
    def who(self) -> str:
        """``alice#3f2a9c1b``: the name given at login (or 'session') and the id's start."""
        return f"{self.name or 'session'}#{self.sid[:8]}"


def clean_name(text: str) -> str:
    """A name typed at login, reduced to characters safe in the audit log and bounded."""
    return _NAME.sub("", text)[:MAX_NAME]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and checks session cookies and CSRF tokens under one key."""

    def __init__(
        self, token: str | None, lifetime_seconds: float, read_token: str | None = None
    ) -> None:
        # With a token, the key follows from it; without one (auth turned off), a key
        # of this process serves the CSRF tokens only.
        secret = token.encode() if token else secrets.token_bytes(32)
        self._key = hmac.new(secret, b"lazarus-admin-session-v1", hashlib.sha256).digest()
        self._keys = {Role.ADMIN: self._key}
        if read_token:
            both = secret + b"\0" + read_token.encode()
            read_key = hmac.new(both, b"lazarus-read-session-v1", hashlib.sha256).digest()
            self._keys[Role.READ] = read_key
        self.lifetime = int(lifetime_seconds)

    def _mac(self, purpose: bytes, data: bytes, role: Role = Role.ADMIN) -> bytes:
        return hmac.new(self._keys[role], purpose + b"\0" + data, hashlib.sha256).digest()

    def issue(self, name: str = "", role: Role = Role.ADMIN) -> tuple[Session, str]:
        """A new session and its cookie value; the role is signed with the rest."""
        if role not in self._keys:
            raise ValueError(f"no {role.value} sessions without their token")
        expires = int(time.time()) + self.lifetime
        session = Session(secrets.token_hex(16), clean_name(name), expires, role)
        payload = orjson.dumps(
            {"sid": session.sid, "name": session.name, "exp": expires, "role": role.value}
        )
        return session, f"{_b64(payload)}.{_b64(self._mac(b'session', payload, role))}"

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None if absent, forged, malformed or expired."""
        if not cookie or len(cookie) > MAX_COOKIE or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
            # Each role has its key: a role edited in the payload fails the check below.
            # A cookie from before roles has none and was signed with the admin key.
            role = Role(orjson.loads(payload).get("role", Role.ADMIN.value))
            if role not in self._keys or not hmac.compare_digest(
                given, self._mac(b"session", payload, role)
            ):
                return None
            fields = orjson.loads(payload)
            session = Session(str(fields["sid"]), str(fields["name"]), int(fields["exp"]), role)
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None
        return session if session.expires > time.time() else None

    def csrf(self, session: Session) -> str:
        """The CSRF token of a session's pages."""
        return _b64(self._mac(b"csrf", session.sid.encode()))

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(
            given.encode(), self.csrf(session).encode()
        )


def same_token(expected: str, given: str) -> bool:
    """Constant-time comparison of a presented admin token (as digests: equal lengths)."""
    want, got = (hashlib.sha256(t.encode()).digest() for t in (expected, given))
    return hmac.compare_digest(want, got)
