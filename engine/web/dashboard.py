"""The dashboard: server-rendered pages and htmx fragments over the same Admin as the API.

Buttons post to ``/ui/...`` routes that call :mod:`engine.admin.facade` and
:mod:`engine.admin.lifecycle` and answer with the refreshed fragment; nothing here decides.
A person logs in with a POST form and holds a signed session cookie; every state change
carries the page's CSRF token (htmx sends it as a header, see static/lazarus.js). Job
ids travel in form fields, not in paths, so any id (``/``, ``..``) is reachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException

from engine.admin.facade import Admin
from engine.admin.lifecycle import REQUESTED_BY_USER
from engine.errors import JobNotFound, JobStateConflict, LazarusError
from engine.filters import DeadFilter, bulk_selection
from engine.message import now_utc
from engine.pg.errors import DB_REJECTED
from engine.states import JobState, RequeueMode
from engine.web import models as m
from engine.web.deps import (
    AdminDep,
    Credentials,
    bearer,
    client_address,
    get_admin,
    get_settings,
    refuse_read_only,
    role_of,
    sessions_of,
    token_of,
)
from engine.web.errors import message
from engine.web.guard import SAFE_METHODS
from engine.web.sessions import COOKIE, CSRF_FIELD, CSRF_HEADER, Role, Session

log = logging.getLogger("lazarus.http")
Form = dict[str, str]
PAGE = 50  # dead letters per page
# Counts on the page stop at CAP ("10,000+") and groups cover the NEWEST matching dead
# letters: the refresh costs the same at a thousand rows or ten million.
CAP = 10_000
NEWEST = 20_000
T = TypeVar("T")
# A dead-letter filter's fields, as the page's form and its URL name them.
FILTERS = ("type", "queue", "error_type", "error", "since", "after", "before", "payload")
TIMES = {"after": "died after", "before": "died before"}  # read as UTC without an offset
TEMPLATES = Path(__file__).parent / "templates"


def age(when: datetime | None) -> str:
    """'42s', '5m', '3h' or '2d' since ``when``: how long a dead job has waited."""
    if when is None:
        return "-"
    seconds = max(0, int((now_utc() - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def page_start(form: Form) -> int | None:
    """The keyset of a page of dead letters: rows older than ``before_id``."""
    text = form.get("before_id", "")
    if not text:
        return None
    if not text.isdigit() or len(text) > 19:
        raise ValueError(f"before_id {text[:40]!r}: a row id")
    return int(text)


def form_time(form: Form, key: str) -> datetime | None:
    """A time of the filter: ISO 8601 as a datetime-local field sends it
    (``2026-01-31T12:00``), read as UTC unless it carries an offset, to the millisecond
    (what the field can hold, so the page, its refresh and its bulk actions agree)."""
    text = form.get(key, "").strip()
    if not text:
        return None
    label = TIMES[key]
    if len(text) > m.MAX_TIME:
        raise ValueError(f"{label}: at most {m.MAX_TIME} characters, an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{label} {text[:40]!r} is not a time: give 2026-01-31T12:00 (read as UTC) "
            "or add an offset such as +02:00"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def field_time(moment: datetime) -> str:
    """A time as the page's datetime-local fields (and its URLs) hold it: UTC, no offset."""
    plain = moment.astimezone(UTC).replace(tzinfo=None)
    return plain.isoformat(timespec="milliseconds" if plain.microsecond else "seconds")


def form_filter(form: Form) -> DeadFilter:
    """The dead letters the page's filter names; ValueError says which field is wrong."""
    after, before = form_time(form, "after"), form_time(form, "before")
    if after is not None and before is not None and after >= before:
        raise ValueError("died after must be earlier than died before")
    if after is not None and form.get("since"):
        raise ValueError("give 'died within' or 'died after', not both")
    texts = {k: form[k] for k in FILTERS if form.get(k) and k not in TIMES}
    return m.DeadFilterBody.model_validate(texts | {"after": after, "before": before}).to_filter()


def shown_filters(form: Form) -> dict[str, str]:
    """The filter's fields to put back in the page and its links; a valid time in the
    form its datetime-local field can show (else the field would drop it on refresh)."""
    shown = {k: v for k, v in form.items() if k in FILTERS and v}
    for key in TIMES:
        try:
            moment = form_time(form, key)
        except ValueError:
            continue  # shown as given; the flash says what is wrong with it
        if moment is not None:
            shown[key] = field_time(moment)
    return shown


async def read_form(request: Request) -> Form:
    """The urlencoded body (bounded by the guard); the last value of a repeated field wins."""
    return dict(parse_qsl((await request.body()).decode(errors="replace")))


async def dashboard_auth(request: Request, credentials: Credentials) -> None:
    """A session cookie (or a bearer token, for scripts); a state change from a session
    must carry its CSRF token, and none may come from a read-only session or token.
    Sets ``request.state.actor`` for the audit log."""
    await authenticate(request, credentials, acting=True)


async def logout_auth(request: Request, credentials: Credentials) -> None:
    """As :func:`dashboard_auth`, but a read-only session may end itself."""
    await authenticate(request, credentials, acting=False)


async def authenticate(request: Request, credentials: Credentials, *, acting: bool) -> None:
    token = token_of(request)
    where = client_address(request)
    if token is not None and credentials is not None:
        role = role_of(request, credentials.credentials)
        if role is None:
            raise HTTPException(401, "wrong bearer token")
        refuse_read_only(request, role, "this token")
        request.state.actor = f"http:{'token' if role is Role.ADMIN else 'read-token'}@{where}"
        return  # a header no other site can make a browser send: no CSRF token needed
    sessions = sessions_of(request)
    session = await live_session(request)
    if session is None:
        raise HTTPException(401, "log in first (your session ended)" if token else "reload")
    request.state.session = session
    request.state.actor = f"http:{session.who}@{where}"
    if acting:
        refuse_read_only(request, session.role, "this session")
    else:
        request.state.role = session.role
    if request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER) or (await read_form(request)).get(CSRF_FIELD)
        if not sessions.csrf_ok(session, given):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page")


async def live_session(request: Request) -> Session | None:
    """The session of the request's cookie, unless forged, expired or logged out."""
    session = sessions_of(request).read(request.cookies.get(COOKIE))
    if session is None or await get_admin(request).session_ended(session.sid):
        return None
    return session


def set_session(request: Request, response: Response, cookie: str) -> None:
    settings = get_settings(request)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=sessions_of(request).lifetime,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.admin_secure_cookies or request.url.scheme == "https",
    )


def when(moment: datetime | None) -> Markup:
    """An absolute UTC time with its age beside it; the page's script adds local time."""
    if moment is None:
        return Markup("-")
    utc = moment.astimezone(UTC)
    return Markup(
        '<time datetime="{iso}">{text} UTC</time> <small class="muted">{ago} ago</small>'
    ).format(iso=utc.isoformat(), text=utc.strftime("%Y-%m-%d %H:%M:%S"), ago=age(moment))


templates = Jinja2Templates(directory=TEMPLATES)
templates.env.filters |= {
    "age": age,
    "when": when,
    "quote": lambda text: quote(str(text), safe=""),
}


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """A template with what every page carries: the CSRF token and who is logged in."""
    session: Session | None = getattr(request.state, "session", None)
    common = {
        "csrf": sessions_of(request).csrf(session) if session else "",
        "who": session.who if session else "",
        "auth": token_of(request) is not None,
        # Controls that act are left out of a read-only page (the routes refuse anyway).
        "read_only": getattr(request.state, "role", Role.ADMIN) is Role.READ,
    }
    return templates.TemplateResponse(request, name, common | context, status_code=status)


async def render(request: Request, admin: Admin, form: Form, flash: str = "",
                 ok: bool = True, name: str = "_panel.html") -> Response:  # fmt: skip
    """The panel; a card whose data cannot be read shows why, and the others render.

    The cards are read concurrently (over the admin's pool of connections), so the panel
    takes about as long as its slowest card, not the sum of them all.
    """
    problems: dict[str, str] = {}

    async def card(key: str, read: Awaitable[T], empty: T) -> T:
        try:
            return await read
        except Exception as exc:  # one broken card must not take the page down
            log.warning("dashboard card %s failed: %r", key, exc)
            problems[key] = message(exc)
            return empty

    try:
        selector = form_filter(form)
        before_id = page_start(form)
    except ValueError as exc:
        selector, before_id, flash, ok = DeadFilter(), None, f"filter: {message(exc)}", False
    lifecycle = admin.jobs
    async with asyncio.TaskGroup() as cards:
        read = cards.create_task
        counts = read(card("counts", lifecycle.counts(cap=CAP), {}))
        chart = read(card("chart", lifecycle.activity(), []))
        dead = read(card("dead", admin.list_dead(selector, limit=PAGE, before_id=before_id), []))
        groups = read(card("groups", admin.groups(selector, newest=NEWEST), []))
        suspended_groups = read(card("groups", admin.suspended_groups(), []))
        queues = read(card("queues", lifecycle.list_queues(), []))
        types = read(card("types", lifecycle.list_types(every_parked_queue=False), []))
        matching = read(card("dead", admin.count(selector, cap=CAP), 0))
        suspended = read(
            card("suspended", lifecycle.list_jobs(state=JobState.SUSPENDED, limit=20), [])
        )
        audit = read(card("audit", admin.audit_log(10), []))
        workers = read(card("workers", admin.list_workers(20), []))
    rows = dead.result()
    more = rows[-1].id if len(rows) == PAGE else None
    shown = shown_filters(form)
    bars = chart.result()
    return page(request, name, {
        "flash": flash, "ok": ok, "filters": shown, "problems": problems,
        "groups": groups.result(), "suspended_groups": suspended_groups.result(),
        "next_before_id": more,
        "page_query": urlencode(shown | {"before_id": more}),
        "queues": queues.result(), "types": types.result(),
        "counts": {s.value: counts.result().get(s.value, 0) for s in JobState},
        "dead": rows, "matching": matching.result(), "cap": CAP, "newest": NEWEST,
        "suspended": suspended.result(), "audit": audit.result(), "workers": workers.result(),
        "chart": bars, "top": max([1, *(n for b in bars for n in b.values())]),
    })  # fmt: skip


async def act(request: Request, admin: Admin, do: Callable[[Form], Awaitable[str]]) -> Response:
    form = await read_form(request)
    try:
        return await render(request, admin, form, await do(form))
    except (LazarusError, ValueError, *DB_REJECTED) as exc:
        return await render(request, admin, form, message(exc), ok=False)


def options(form: Form, default: RequeueMode) -> dict[str, Any]:
    """Retries and mode from the page's boxes; an unset mode is the operation's default
    (requeue: restart, resume: recover), the same as in the CLI and the API."""
    chosen = m.RequeueOptions.model_validate(form, extra="ignore")
    return {"retries": chosen.retries, "mode": chosen.mode or default}


def job_id_of(form: Form) -> str:
    job_id = form.get("job_id", "")
    if not job_id or len(job_id) > m.MAX_ID:
        raise ValueError(f"job_id: give 1 to {m.MAX_ID} characters")
    return job_id


SESSION = [Depends(dashboard_auth)]  # a live session (or the bearer token), CSRF-checked

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index(request: Request) -> Response:
    sessions = sessions_of(request)
    session = await live_session(request)
    fresh = None
    if session is None and token_of(request) is not None:
        if request.headers.get("authorization") is None:
            return RedirectResponse("/login", status_code=303)
        await dashboard_auth(request, await bearer(request))
    elif session is None:  # no auth: an anonymous session carries the CSRF token
        session, fresh = sessions.issue()
    if session is not None:
        request.state.session = session
        request.state.role = session.role
        request.state.actor = f"http:{session.who}@{client_address(request)}"
    response = await render(request, get_admin(request), dict(request.query_params),
                            name="index.html")  # fmt: skip
    if fresh is not None:
        set_session(request, response, fresh)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    if token_of(request) is None:
        return RedirectResponse("/", status_code=303)
    return page(request, "login.html", {"error": ""})


@router.post("/login")
async def login(request: Request) -> Response:
    token = token_of(request)
    if token is None:
        return RedirectResponse("/", status_code=303)
    form = await read_form(request)
    role = role_of(request, form.get("token", ""))
    if role is None:
        return page(request, "login.html", {"error": "wrong token"}, status=401)
    session, cookie = sessions_of(request).issue(form.get("name", ""), role)
    actor = f"http:{session.who}@{client_address(request)}"
    details = {"session": session.sid[:8]} | ({"role": "read"} if session.read_only else {})
    await get_admin(request).acting_as(actor).note("login", details)
    response = RedirectResponse("/", status_code=303)
    set_session(request, response, cookie)
    return response


@router.post("/logout", dependencies=[Depends(logout_auth)])
async def logout(request: Request, admin: AdminDep) -> Response:
    session: Session | None = getattr(request.state, "session", None)
    if session is not None:
        await admin.end_session(session.sid, datetime.fromtimestamp(session.expires, UTC))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/ui/panel", dependencies=SESSION)
async def panel(request: Request, admin: AdminDep) -> Response:
    return await render(request, admin, dict(request.query_params))


@router.get("/ui/dead", dependencies=SESSION)
async def deaths(request: Request, admin: AdminDep, job_id: str = "") -> Response:
    try:
        history, problem = await admin.show(job_id_of({"job_id": job_id})), ""
    except (JobNotFound, ValueError) as exc:
        history, problem = [], str(exc)
    return page(request, "_deaths.html", {"job_id": job_id, "history": history,
                                          "problem": problem})  # fmt: skip


@router.get("/ui/jobs/cause", dependencies=SESSION)
async def why(request: Request, admin: AdminDep, job_id: str = "") -> Response:
    try:
        found, problem = asdict(await admin.jobs.cause(job_id_of({"job_id": job_id}))), ""
    except (JobNotFound, JobStateConflict, ValueError) as exc:
        found, problem = {"job_id": job_id}, str(exc)
    return page(request, "_cause.html", found | {"problem": problem})


@router.post("/ui/dead/requeue", dependencies=SESSION)
async def requeue_one(request: Request, admin: AdminDep) -> Response:
    async def do(form: Form) -> str:
        job_id = job_id_of(form)
        await admin.requeue_one(job_id, **options(form, RequeueMode.RESTART))
        return f"requeued job {job_id}"

    return await act(request, admin, do)


@router.post("/ui/dead/delete", dependencies=SESSION)
async def delete_one(request: Request, admin: AdminDep) -> Response:
    async def do(form: Form) -> str:
        job_id = job_id_of(form)
        await admin.delete_one(job_id)
        return f"deleted dead letter of job {job_id}"

    return await act(request, admin, do)


@router.post("/ui/requeue-matching", dependencies=SESSION)
async def requeue_matching(request: Request, admin: AdminDep) -> Response:
    async def do(form: Form) -> str:
        # The API's and the CLI's rule: an empty filter needs "all" ticked.
        selector = bulk_selection((), form_filter(form), form.get("all") == "true")
        moved = await admin.requeue(selector, **options(form, RequeueMode.RESTART))
        return f"requeued {moved} dead jobs matching the filter"

    return await act(request, admin, do)


@router.post("/ui/queues/{queue}/{verb}", dependencies=SESSION)
async def queue_verb(request: Request, admin: AdminDep, queue: str, verb: str) -> Response:
    async def do(form: Form) -> str:
        lifecycle = admin.jobs
        if verb == "pause":
            changed = await lifecycle.pause_queue(queue, form.get("reason") or REQUESTED_BY_USER)
        elif verb == "resume":
            changed = await lifecycle.resume_queue(queue)
        else:
            raise ValueError(f"no queue action {verb!r}")
        return f"queue {queue}: {verb}d" if changed else f"queue {queue}: nothing to {verb}"

    return await act(request, admin, do)


@router.post("/ui/types/{job_type}/{verb}", dependencies=SESSION)
async def type_verb(request: Request, admin: AdminDep, job_type: str, verb: str) -> Response:
    async def do(form: Form) -> str:
        lifecycle = admin.jobs
        if verb == "pause":
            reason = form.get("reason") or REQUESTED_BY_USER
            changed = await lifecycle.pause_type(job_type, reason)
            return f"job type {job_type}: " + ("paused" if changed else "already paused")
        if verb == "resume":
            changed, moved = await lifecycle.resume_type(job_type)
            done = "resumed" if changed else "was not paused"
            return f"job type {job_type}: {done}; {moved} parked jobs moved back"
        raise ValueError(f"no job type action {verb!r}")

    return await act(request, admin, do)


@router.post("/ui/jobs/resume", dependencies=SESSION)
async def resume(request: Request, admin: AdminDep) -> Response:
    async def do(form: Form) -> str:
        job_id = job_id_of(form)
        row = await admin.jobs.resume(job_id, **options(form, RequeueMode.RECOVER))
        return f"resumed job {job_id} as generation {row.generation}"

    return await act(request, admin, do)
