"""The console's web app (Starlette): routes, the login flow, and the checks every request passes.

Every page handler is a plain function run in the thread pool behind `_guard`, which in this order
loads the session (none: GET goes to the login page, anything else is 403), checks the CSRF token of
every state-changing request (missing or wrong: 403), checks the role (403), and turns the centre's
typed errors into pages: NotFound -> 404, CentralError (bad input) -> 400 with its message,
DatabaseUnavailable -> 503 with a banner.  Nothing else reaches the browser: an unexpected exception is
logged and answered with a generic 500 page, never a stack trace.

Security headers (`SecurityHeaders`) go on every response: a strict Content-Security-Policy (scripts,
styles and connections from this origin only, no inline script or style, no framing, forms post here
only), HSTS, nosniff, no referrer, and no caching of pages.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from central.console import charts, readmodel
from central.console.assets import STATIC_DIR, STATIC_FILES, TEMPLATE_DIR, verify_vendored
from central.console.commands import ACTIONS
from central.console.config import ConsoleConfig
from central.console.operators import LoginRefused, Operators
from central.console.schema import ROLES, AlertState
from central.console.sessions import LOGIN_COOKIE, SESSION_COOKIE, Session, Sessions, tokens_equal
from central.console.throttle import LoginThrottle
from central.errors import CentralError, DatabaseUnavailable, NotFound

log = logging.getLogger("facelock.central.console")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"strict-transport-security", b"max-age=31536000"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
MAX_NOTE = 500
MAX_FORM_FIELDS = 20


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response (pages, fragments, static, errors)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() not in dict(SECURITY_HEADERS)]
                headers += SECURITY_HEADERS
                if not any(h[0].lower() == b"cache-control" for h in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BrokerHealth:
    """Whether the broker answers (a TCP connect, at most every `every_s`), for the outage banner."""

    def __init__(self, broker: Any, every_s: float = 3.0) -> None:
        self.broker = broker
        self.every_s = every_s
        self._ok: bool | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def ok(self) -> bool | None:
        if self.broker is None:
            return None
        with self._lock:
            if time.monotonic() - self._at > self.every_s:
                try:
                    socket.create_connection((self.broker.host, self.broker.port), timeout=0.5).close()
                    self._ok = True
                except OSError:
                    self._ok = False
                self._at = time.monotonic()
            return self._ok


@dataclass
class ConsoleState:
    centre: Any  # central.app.Centre
    cfg: ConsoleConfig
    operators: Operators
    sessions: Sessions
    throttle: LoginThrottle
    broker: Any  # central.distributor.BrokerSettings | None
    health: BrokerHealth
    env: Environment


def _fmt_ts(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + " UTC" if ts else "never"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ts"] = _fmt_ts
    env.globals["ROLES"] = ROLES
    # the SVG is built by charts.py, which escapes every text it puts in
    env.globals["sparkline"] = lambda *a: Markup(charts.denials_sparkline(*a))
    return env


class Page:
    """What a handler returns: a template and its context (rendered by `_guard`), or a Response."""

    def __init__(self, template: str, http_status: int = 200, **ctx: Any) -> None:
        self.template, self.http_status, self.ctx = template, http_status, ctx


def _render(request: Request, template: str, http_status: int = 200, session: Session | None = None,
            **ctx: Any) -> HTMLResponse:
    st: ConsoleState = request.app.state.console
    banners = list(ctx.pop("banners", []))
    if session is not None and st.health.ok() is False:
        banners.append(f"The MQTT broker ({st.broker.host}:{st.broker.port}) is unreachable: the doors' events "
                       "and commands wait until it is back.")
    html = st.env.get_template(template).render(request=request, me=session.identity if session else None,
                                                csrf=session.csrf if session else "", banners=banners, **ctx)
    return HTMLResponse(html, status_code=http_status)


def error_page(request: Request, status: int, title: str, message: str, session: Session | None = None,
               banner: str | None = None) -> HTMLResponse:
    return _render(request, "error.html", status, session, title=title, message=message,
                   banners=[banner] if banner else [])


def _guard(need: str = "viewer") -> Callable:
    """Wrap a sync handler fn(request, session, form) -> Page | Response (see the module docstring)."""

    def deco(fn: Callable) -> Callable:
        async def endpoint(request: Request) -> Response:
            st: ConsoleState = request.app.state.console
            try:
                sess = await run_in_threadpool(st.sessions.load, request.cookies.get(SESSION_COOKIE))
            except DatabaseUnavailable:
                return error_page(request, 503, "Database unavailable", "The centre's database cannot be "
                                  "reached; nothing was changed. Retry in a moment.",
                                  banner="Database unavailable")
            if sess is None:
                if request.method == "GET":
                    return RedirectResponse("/login", 303)
                return error_page(request, 403, "Not logged in", "Log in first.")
            form: dict[str, str] = {}
            if request.method != "GET":
                try:
                    raw = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
                except Exception:  # noqa: BLE001 - any unparsable body is bad input
                    return error_page(request, 400, "Bad request", "The form could not be read.", sess)
                form = {k: v for k, v in raw.items() if isinstance(v, str)}
                token = form.get("csrf") or request.headers.get("x-csrf-token")
                if not tokens_equal(token, sess.csrf):
                    log.warning("CSRF token missing or wrong for %s %s", request.method, request.url.path)
                    return error_page(request, 403, "Forbidden", "The form's security token (CSRF) is missing "
                                      "or wrong. Reload the page and try again.", sess)
            if not sess.identity.may(need):
                return error_page(request, 403, "Forbidden", f"Your role ({sess.identity.role}) may not do this; "
                                  f"it needs {need}.", sess)
            try:
                out = await run_in_threadpool(fn, request, sess, form)
                if isinstance(out, Page):
                    return await run_in_threadpool(_render, request, out.template, out.http_status, sess, **out.ctx)
                return out
            except NotFound as exc:
                return error_page(request, 404, "Not found", str(exc), sess)
            except DatabaseUnavailable:
                return error_page(request, 503, "Database unavailable", "The centre's database cannot be "
                                  "reached; nothing was changed. Retry in a moment.", sess,
                                  banner="Database unavailable")
            except CentralError as exc:
                return error_page(request, 400, "Cannot do that", " ".join(str(exc).split()), sess)

        endpoint.__name__ = fn.__name__
        return endpoint

    return deco


def _choice(value: str | None, allowed: tuple[str, ...], name: str, default: str) -> str:
    value = default if value in (None, "") else value
    if value not in allowed:
        raise CentralError(f"{name} must be one of {', '.join(allowed)} (got {str(value)[:40]!r})")
    return value


def _text(value: str | None, name: str, max_len: int, required: bool = False) -> str:
    value = (value or "").strip()
    if required and not value:
        raise CentralError(f"{name} is required")
    if len(value) > max_len:
        raise CentralError(f"{name} is at most {max_len} characters")
    if any(not (c.isprintable() or c in "\n\t") for c in value):
        raise CentralError(f"{name} contains control characters")
    return value


def _int(value: str | None, name: str, lo: int = 0, hi: int = 2**62) -> int:
    try:
        v = int(value or "0")
    except ValueError:
        raise CentralError(f"{name} must be a whole number") from None
    if not lo <= v <= hi:
        raise CentralError(f"{name} must be between {lo} and {hi}")
    return v


def _query(request: Request, allowed: set[str]) -> dict[str, str]:
    unknown = set(request.query_params) - allowed
    if unknown:
        raise CentralError(f"unknown query parameter {sorted(unknown)[0][:40]!r}")
    return {k: request.query_params.get(k, "") for k in allowed}


# -- login / logout -------------------------------------------------------------------------------
async def login_form(request: Request) -> Response:
    return await run_in_threadpool(_login_page, request, None, 200)


def _login_page(request: Request, message: str | None, status: int) -> Response:
    token = request.cookies.get(LOGIN_COOKIE)
    if not token or len(token) > 64:
        token = secrets.token_urlsafe(32)
    resp = _render(request, "login.html", status, None, login_csrf=token, message=message)
    resp.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/", secure=True, httponly=True, samesite="strict")
    return resp


async def login_submit(request: Request) -> Response:
    st: ConsoleState = request.app.state.console
    client = request.client.host if request.client else "?"
    wait = st.throttle.allow(client, time.monotonic())
    if wait:
        resp = _render(request, "login.html", 429, None, login_csrf=request.cookies.get(LOGIN_COOKIE, ""),
                       message=f"Too many login attempts from this address: wait {wait:.0f} s.")
        resp.headers["Retry-After"] = str(int(wait) + 1)
        return resp
    try:
        raw = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except Exception:  # noqa: BLE001
        return error_page(request, 400, "Bad request", "The form could not be read.")
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    if not tokens_equal(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        return error_page(request, 403, "Forbidden", "The login form's security token (CSRF) is missing or wrong. "
                          "Reload the login page and try again.")
    try:
        identity = await run_in_threadpool(st.operators.authenticate, form.get("username", ""),
                                           form.get("password", ""), form.get("code", ""))
        token, _ = await run_in_threadpool(st.sessions.create, identity)
    except LoginRefused as exc:
        return await run_in_threadpool(_login_page, request, str(exc), 401)
    except DatabaseUnavailable:
        return error_page(request, 503, "Database unavailable", "The centre's database cannot be reached, so "
                          "nobody can log in right now. Retry in a moment.", banner="Database unavailable")
    resp = RedirectResponse("/fleet", 303)
    resp.set_cookie(SESSION_COOKIE, token, path="/", secure=True, httponly=True, samesite="strict")
    resp.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return resp


@_guard("viewer")
def logout(request: Request, sess: Session, form: dict) -> Response:
    from central import audit

    st: ConsoleState = request.app.state.console
    st.sessions.end(request.cookies.get(SESSION_COOKIE))
    with st.centre.db.session() as s:
        audit.record(s, sess.identity.username, "console.logout", sess.identity.username)
    resp = RedirectResponse("/login", 303)
    resp.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return resp


async def root(request: Request) -> Response:
    return RedirectResponse("/fleet", 303)


# -- fleet ------------------------------------------------------------------------------------------
@_guard()
def fleet(request: Request, sess: Session, form: dict) -> Page:
    q = _query(request, {"sort", "dir", "q", "status", "lock", "fragment"})
    sort = _choice(q["sort"], readmodel.FLEET_SORTS, "sort", "id")
    direction = _choice(q["dir"], ("asc", "desc"), "dir", "asc")
    status = _choice(q["status"], ("all", "online", "offline"), "status", "all")
    lock = _choice(q["lock"], readmodel.LOCK_FILTERS, "lock", "all")
    text = _text(q["q"], "the filter", 64)
    rows = readmodel.fleet(request.app.state.console.centre.db)
    if status != "all":
        rows = [r for r in rows if r["online"] == (status == "online")]
    if text:
        rows = [r for r in rows if text.lower() in r["id"].lower() or text.lower() in r["name"].lower()]
    rows = [r for r in rows if readmodel.lock_filter(r, lock)]
    rows = readmodel.sort_fleet(rows, sort, direction == "desc")
    params = {"sort": sort, "dir": direction, "status": status, "lock": lock, "q": text}
    ctx = dict(rows=rows, params=params, qs=urlencode(params), page="fleet", lock_filters=readmodel.LOCK_FILTERS)
    return Page("_fleet_table.html" if q["fragment"] == "1" else "fleet.html", **ctx)


# -- events + live stream -----------------------------------------------------------------------------
def _event_filters(request: Request, extra: set[str] = frozenset()) -> dict[str, str]:
    q = _query(request, {"door", "type", "severity", *extra})
    readmodel.check_event_filters(q["door"], q["type"], q["severity"])
    return q


@_guard()
def events_page(request: Request, sess: Session, form: dict) -> Page:
    q = _event_filters(request)
    db = request.app.state.console.centre.db
    rows = readmodel.events(db, q["door"], q["type"], q["severity"], limit=100)
    ev_cursor, al_cursor = readmodel.cursors(db)
    after = max([r["rowid"] for r in rows], default=ev_cursor) if rows else ev_cursor
    from firmware.telemetry.events import EVENT_TYPES, SEVERITIES

    stream = "/stream?" + urlencode({"door": q["door"], "type": q["type"], "severity": q["severity"],
                                     "after": after, "alert_after": al_cursor})
    return Page("events.html", rows=rows, filters=q, types=sorted(EVENT_TYPES), severities=SEVERITIES,
                doors=[d["id"] for d in readmodel.fleet(db)], stream=stream, page="events")


async def stream(request: Request) -> Response:
    """Server-Sent Events: `feed` (one rendered event row per new stored event matching the filters),
    `alert` (new alerts exist), `outage` (the database is unreachable; the feed resumes by itself)."""
    st: ConsoleState = request.app.state.console
    try:
        sess = await run_in_threadpool(st.sessions.load, request.cookies.get(SESSION_COOKIE))
    except DatabaseUnavailable:
        return PlainTextResponse("database unavailable", 503)
    if sess is None:
        return PlainTextResponse("log in first", 403)
    try:
        q = _event_filters(request, {"after", "alert_after", "feed"})
        feed = _choice(q["feed"], ("0", "1"), "feed", "1") == "1"
        after = _int(q["after"], "after")
        alert_after = _int(q["alert_after"], "alert_after")
    except CentralError as exc:
        return PlainTextResponse(str(exc), 400)
    db = st.centre.db
    template = st.env.get_template("_event_row.html")
    token = request.cookies.get(SESSION_COOKIE)

    def poll(after: int, alert_after: int) -> tuple[list[dict], int]:
        rows = readmodel.events(db, q["door"], q["type"], q["severity"], after=after, limit=200) if feed else []
        return rows, readmodel.cursors(db)[1]

    async def gen():
        nonlocal after, alert_after
        yield "retry: 1000\n\n"
        last_auth = last_beat = time.monotonic()
        while not await request.is_disconnected():
            try:
                rows, newest_alert = await run_in_threadpool(poll, after, alert_after)
                if rows:
                    after = max(r["rowid"] for r in rows)
                for r in reversed(rows):  # oldest first, so the page ends newest on top
                    html = template.render(e=r)
                    yield "event: feed\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"
                if newest_alert > alert_after:
                    yield f"event: alert\ndata: {newest_alert - alert_after}\n\n"
                    alert_after = newest_alert
                if time.monotonic() - last_auth > 10:
                    last_auth = time.monotonic()
                    if await run_in_threadpool(st.sessions.load, token) is None:
                        yield "event: logout\ndata: session ended\n\n"
                        return
            except DatabaseUnavailable:
                yield "event: outage\ndata: database unavailable\n\n"
                await asyncio.sleep(2.0)
            if time.monotonic() - last_beat > 15:
                last_beat = time.monotonic()
                yield ": keepalive\n\n"
            await asyncio.sleep(st.cfg.stream_poll_s)

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- alerts ------------------------------------------------------------------------------------------
@_guard()
def alerts_page(request: Request, sess: Session, form: dict) -> Page:
    q = _query(request, {"status", "fragment", "done"})
    status = _choice(q["status"], (*readmodel.ALERT_STATUSES, "all"), "status", "open")
    db = request.app.state.console.centre.db
    rows = readmodel.alerts(db, status)
    counts = readmodel.alert_counts(db)
    ctx = dict(rows=rows, status=status, counts=counts, page="alerts", done=q["done"][:40])
    if q["fragment"] == "1":
        return Page("_alerts_table.html", **ctx)
    ev_cursor, al_cursor = readmodel.cursors(db)
    stream_url = "/stream?" + urlencode({"feed": "0", "after": ev_cursor, "alert_after": al_cursor})
    return Page("alerts.html", stream=stream_url, **ctx)


def _alert_change(request: Request, sess: Session, form: dict, to: str) -> Response:
    from sqlalchemy import select

    from central import audit
    from central.models import AlertRow

    alert_id = _int(request.path_params["alert_id"], "alert id", 1)
    note = _text(form.get("note"), "the note", MAX_NOTE)
    st: ConsoleState = request.app.state.console
    who, now = sess.identity.username, time.time()
    with st.centre.db.session() as s:
        if s.get(AlertRow, alert_id) is None:
            raise NotFound(f"no alert {alert_id}")
        row = s.get(AlertState, alert_id, with_for_update=True)
        if to == "acknowledged" and row is not None:
            raise CentralError(f"alert {alert_id} was already {row.status} by {row.ack_by or row.resolved_by}")
        if row is not None and row.status == "resolved":
            raise CentralError(f"alert {alert_id} was already resolved by {row.resolved_by}")
        ids = readmodel.alert_group(s, alert_id)  # the row stands for these (one door, one rule)
        states = {r.alert_id: r for r in s.scalars(select(AlertState).where(AlertState.alert_id.in_(ids)))}
        for i in ids:
            r = states.get(i)
            if to == "acknowledged":
                s.add(AlertState(alert_id=i, status="acknowledged", ack_by=who, ack_at=now, ack_note=note))
                continue
            if r is None:
                r = AlertState(alert_id=i, status="resolved")
                s.add(r)
            r.status, r.resolved_by, r.resolved_at, r.resolved_note = "resolved", who, now, note
        audit.record(s, who, f"alert.{'ack' if to == 'acknowledged' else 'resolve'}", str(alert_id), note=note,
                     alerts=ids)
    return RedirectResponse("/alerts?" + urlencode({"status": to, "done": f"alert {alert_id} {to}"}), 303)


@_guard("operator")
def alert_ack(request: Request, sess: Session, form: dict) -> Response:
    return _alert_change(request, sess, form, "acknowledged")


@_guard("operator")
def alert_resolve(request: Request, sess: Session, form: dict) -> Response:
    return _alert_change(request, sess, form, "resolved")


# -- one door ------------------------------------------------------------------------------------------
def _door_id(request: Request) -> str:
    door = request.path_params["door_id"]
    if len(door) > 64 or not door.isprintable():
        raise NotFound("no such door")
    return door


@_guard()
def door_page(request: Request, sess: Session, form: dict) -> Page:
    q = _query(request, {"sent", "fragment"})
    door = _door_id(request)
    st: ConsoleState = request.app.state.console
    d = readmodel.door(st.centre.db, door)
    ev_cursor, al_cursor = readmodel.cursors(st.centre.db)
    after = max([e["rowid"] for e in d["events"]], default=ev_cursor)
    stream_url = "/stream?" + urlencode({"door": door, "after": after, "alert_after": al_cursor})
    sent = ACTIONS.get(q["sent"])
    return Page("door.html", d=d, actions=list(ACTIONS.values()), sent=sent, stream=stream_url, page="fleet",
                broker=st.broker is not None)


@_guard("operator")
def door_command(request: Request, sess: Session, form: dict) -> Response | Page:
    from central.commands import send_command

    door = _door_id(request)
    st: ConsoleState = request.app.state.console
    action = ACTIONS.get(form.get("action", ""))
    if action is None:
        raise CentralError(f"unknown action {form.get('action', '')[:40]!r}: one of {', '.join(ACTIONS)}")
    d = readmodel.door(st.centre.db, door)
    if not action.available:
        raise CentralError(f"this lock firmware has no {action.command!r} command yet")
    if form.get("confirm") != "yes":
        return Page("confirm.html", title=f"{action.label} at {d['name']}?",
                    message=action.warning or f"Send {action.label.lower()} to {d['name']} ({door}).",
                    post_to=f"/doors/{door}/command", fields={"action": action.key}, confirm_label=action.label,
                    cancel=f"/doors/{door}", page="fleet")
    if st.broker is None:
        raise CentralError("no broker is configured for this console: commands cannot be sent")
    send_command(st.centre.db, st.centre.keys, st.broker, sess.identity.username, door, action.command,
                 dict(action.args))
    return RedirectResponse(f"/doors/{door}?" + urlencode({"sent": action.key}), 303)


# -- people -----------------------------------------------------------------------------------------
@_guard()
def people_page(request: Request, sess: Session, form: dict) -> Page:
    q = _query(request, {"q"})
    text = _text(q["q"], "the filter", 64)
    rows = readmodel.people(request.app.state.console.centre.db, text)
    return Page("people.html", rows=rows, q=text, page="people")


@_guard()
def person_page(request: Request, sess: Session, form: dict) -> Page:
    q = _query(request, {"revoked"})
    p = readmodel.person(request.app.state.console.centre.db, request.path_params["person_id"])
    return Page("person.html", p=p, revoked=q["revoked"][:200], page="people")


@_guard("operator")
def person_revoke(request: Request, sess: Session, form: dict) -> Response | Page:
    """Withdraw every door: the person leaves all their groups and every affected door gets a new bundle
    at once (the running service pushes it).  Their sealed templates stay for re-granting; deleting a
    person for good is `facelock-central people delete`."""
    from central import audit

    st: ConsoleState = request.app.state.console
    p = readmodel.person(st.centre.db, request.path_params["person_id"])
    if form.get("confirm") != "yes":
        doors = ", ".join(sorted({d["name"] for d in p["doors"]})) or "no door"
        return Page("confirm.html", title=f"Revoke {p['name']}?",
                    message=f"{p['name']} leaves {len(p['groups'])} group(s) and can no longer open: {doors}.",
                    post_to=f"/people/{p['id']}/revoke", fields={}, confirm_label="Revoke access",
                    cancel=f"/people/{p['id']}", page="people")
    who = sess.identity.username
    for g in p["groups"]:
        st.centre.directory.remove_member(g, p["id"], who)
    with st.centre.db.session() as s:
        audit.record(s, who, "person.revoke", p["id"], groups=p["groups"])
    changed = st.centre.policy.refresh()
    msg = (f"revoked; new bundles for {', '.join(sorted(changed))}" if changed else "revoked; no door had them")
    return RedirectResponse(f"/people/{p['id']}?" + urlencode({"revoked": msg}), 303)


# -- charts, operators ---------------------------------------------------------------------------------
@_guard()
def charts_page(request: Request, sess: Session, form: dict) -> Page:
    _query(request, set())
    data = readmodel.chart_data(request.app.state.console.centre.db)
    return Page("charts.html", hourly=charts.hourly_chart(data), per_door=charts.door_charts(data), page="charts")


@_guard("admin")
def operators_page(request: Request, sess: Session, form: dict) -> Page:
    return Page("operators.html", rows=request.app.state.console.operators.list(), page="operators")


@_guard("admin")
def operator_unlock(request: Request, sess: Session, form: dict) -> Response:
    request.app.state.console.operators.unlock(request.path_params["username"], sess.identity.username)
    return RedirectResponse("/operators", 303)


# -- static, errors -------------------------------------------------------------------------------
_STATIC_CACHE: dict[str, bytes] = {}


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        raise HTTPException(404)
    if name not in _STATIC_CACHE:
        _STATIC_CACHE[name] = (STATIC_DIR / name).read_bytes()
    return Response(_STATIC_CACHE[name], media_type=STATIC_FILES[name],
                    headers={"Cache-Control": "public, max-age=3600"})


async def http_error(request: Request, exc: HTTPException) -> Response:
    titles = {404: "Not found", 405: "Method not allowed"}
    msg = "There is no such page." if exc.status_code == 404 else (exc.detail or "")
    return error_page(request, exc.status_code, titles.get(exc.status_code, "Error"), msg)


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("console: unexpected %s on %s %s", exc.__class__.__name__, request.method, request.url.path,
              exc_info=exc)
    return HTMLResponse("<!doctype html><title>Internal error</title><h1>Internal error</h1>"
                        "<p>Something went wrong; the details are in the console's log.</p>", 500)


def build_app(centre: Any, cfg: ConsoleConfig, broker: Any = None, migrate: bool = True) -> Any:
    """The ASGI app for one centre (`central.app.Centre`).  `broker`: the BrokerSettings commands go
    through (None: the console is read-only for doors).  Refuses to build when a vendored file differs
    from its pin."""
    from central.console import schema

    verify_vendored()
    if migrate:
        schema.upgrade(centre.db)
    state = ConsoleState(centre=centre, cfg=cfg,
                         operators=Operators(centre.db, centre.keys, cfg.max_failures, cfg.lockout_s),
                         sessions=Sessions(centre.db, cfg.idle_s, cfg.max_age_s),
                         throttle=LoginThrottle(cfg.login_limit, cfg.login_window_s), broker=broker,
                         health=BrokerHealth(broker), env=_environment())
    routes = [
        Route("/", root), Route("/login", login_form, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]), Route("/logout", logout, methods=["POST"]),
        Route("/fleet", fleet), Route("/events", events_page), Route("/stream", stream),
        Route("/alerts", alerts_page), Route("/alerts/{alert_id}/ack", alert_ack, methods=["POST"]),
        Route("/alerts/{alert_id}/resolve", alert_resolve, methods=["POST"]),
        Route("/doors/{door_id}", door_page), Route("/doors/{door_id}/command", door_command, methods=["POST"]),
        Route("/people", people_page), Route("/people/{person_id}", person_page),
        Route("/people/{person_id}/revoke", person_revoke, methods=["POST"]),
        Route("/charts", charts_page), Route("/operators", operators_page),
        Route("/operators/{username}/unlock", operator_unlock, methods=["POST"]),
        Route("/static/{name}", static),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.console = state
    return SecurityHeaders(app)

