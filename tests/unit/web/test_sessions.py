"""Session cookies carry their role under the signature: a read-only session cannot be
made an admin one, and each role's key follows from its tokens."""

from __future__ import annotations

import base64

import orjson
import pytest

from engine.web.sessions import Role, Sessions

ADMIN, READ = "an-admin-token-long-enough", "a-read-token-long-enough"


def _edit(cookie: str, **fields: object) -> str:
    body, mac = cookie.split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    edited = base64.urlsafe_b64encode(orjson.dumps(payload | fields)).rstrip(b"=").decode()
    return f"{edited}.{mac}"


def test_a_session_reads_back_with_its_role() -> None:
    sessions = Sessions(ADMIN, 3600, READ)
    for role in Role:
        session, cookie = sessions.issue("rita", role)
        assert sessions.read(cookie) == session
        assert session.read_only is (role is Role.READ)


def test_an_edited_role_fails_the_signature() -> None:
    sessions = Sessions(ADMIN, 3600, READ)
    _, read = sessions.issue("rita", Role.READ)
    _, admin = sessions.issue("alice", Role.ADMIN)
    assert sessions.read(_edit(read, role="admin")) is None
    assert sessions.read(_edit(admin, role="read")) is None
    assert sessions.read(_edit(read, role="root")) is None


def test_read_sessions_need_the_read_token_and_end_with_it() -> None:
    with pytest.raises(ValueError, match="no read sessions"):
        Sessions(ADMIN, 3600).issue(role=Role.READ)
    _, read = Sessions(ADMIN, 3600, READ).issue(role=Role.READ)
    _, admin = Sessions(ADMIN, 3600, READ).issue(role=Role.ADMIN)
    assert Sessions(ADMIN, 3600).read(read) is None
    assert Sessions(ADMIN, 3600, "another-read-token-xx").read(read) is None
    assert Sessions(ADMIN, 3600, "another-read-token-xx").read(admin) is not None
    assert Sessions("another-admin-token-xx", 3600, READ).read(read) is None


def test_the_csrf_token_does_not_depend_on_the_role() -> None:
    sessions = Sessions(ADMIN, 3600, READ)
    session, _ = sessions.issue(role=Role.READ)
    assert sessions.csrf_ok(session, sessions.csrf(session))


def test_a_cookie_from_before_roles_is_an_admin_one_only_under_the_admin_key() -> None:
    sessions = Sessions(ADMIN, 3600, READ)
    payload = orjson.dumps({"sid": "ab" * 16, "name": "old", "exp": 2**40})
    mac = sessions._mac(b"session", payload)  # as issued before sessions had a role
    cookie = f"{_b64(payload)}.{_b64(mac)}"
    session = sessions.read(cookie)
    assert session is not None and session.role is Role.ADMIN
    _, read = sessions.issue(role=Role.READ)
    body, read_mac = read.split(".")
    fields = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    del fields["role"]
    assert sessions.read(f"{_b64(orjson.dumps(fields))}.{read_mac}") is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
