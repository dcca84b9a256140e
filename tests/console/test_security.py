"""The console's trust boundaries, attacked over real HTTPS (uvicorn, the centre's CA) against a centre
on real PostgreSQL: CSRF, roles, login brute force (per-address throttle and per-account lockout),
cookie flags, CSP and inline script, TOTP, bad input, a database outage, a broker outage, the vendored
htmx pin, and `facelock-central operators add`."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select

from central.app import Centre
from central.console.assets import STATIC_DIR, AssetError, verify_vendored
from central.console.operators import Operators
from central.distributor import BrokerSettings
from central.models import AuditEntry
from central.simdoor import SimDoor
from tests.console.conftest import PASSWORDS, add_operators
from tests.console.server import RunningConsole, login_token, serve

OP = "test-setup"


def _centre(pg_cluster, directory: Path) -> Centre:  # noqa: ANN001
    c = Centre(directory, pg_cluster.create_database(f"c{uuid.uuid4().hex[:10]}"))
    c.init()
    add_operators(c)
    door = SimDoor(directory / "door-a", "door-a")
    door.install(c.registry.submit(door.csr(), c.registry.create_token(OP)))
    c.directory.add_door("door-a", "Front door", OP)
    pid = c.directory.add_person("Alice", OP)
    c.directory.add_group("staff", OP)
    c.directory.add_member("staff", "Alice", OP)
    c.directory.grant("staff", "door-a", OP)
    c.person_id = pid  # for the tests
    return c


@pytest.fixture(scope="module")
def site(pg_cluster, tmp_path_factory) -> Iterator[tuple[Centre, RunningConsole]]:  # noqa: ANN001
    c = _centre(pg_cluster, tmp_path_factory.mktemp("console-sec") / "centre")
    try:
        with serve(c, login_limit=1000) as console:
            yield c, console
    finally:
        c.close()


def _audit(c: Centre, action_prefix: str) -> list[AuditEntry]:
    with c.db.session() as s:
        return [a for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id)) if a.action.startswith(action_prefix)]


def _csrf(client, path: str = "/fleet") -> str:  # noqa: ANN001
    return login_token(client.get(path).text)


def test_session_cookie_flags(site):
    _, console = site
    c = console.client()
    r = c.get("/login")
    login_cookie = r.headers["set-cookie"]
    r = c.post("/login", data={"csrf": login_token(r.text), "username": "vera", "password": PASSWORDS["vera"]})
    assert r.status_code == 303
    cookies = r.headers.get_list("set-cookie")
    session = next(h for h in cookies if h.startswith("__Host-facelock-session="))
    for cookie in (session, login_cookie):
        flags = [f.strip().lower() for f in cookie.split(";")]
        assert "httponly" in flags and "secure" in flags and "samesite=strict" in flags and "path=/" in flags
        assert not any(f.startswith("domain=") for f in flags)
    assert c.get("/fleet").status_code == 200
    # the database keeps only the cookie value's hash
    token = session.split(";")[0].split("=", 1)[1]
    from central.console.schema import SessionRow

    with site[0].db.session() as s:
        hashes = set(s.scalars(select(SessionRow.token_hash)))
    assert hashlib.sha256(token.encode()).hexdigest() in hashes and token not in hashes


def test_csrf_missing_or_wrong_is_403_and_changes_nothing(site):
    c, console = site
    olga = console.login("olga", PASSWORDS["olga"])
    other = console.login("adam", PASSWORDS["adam"])
    good = _csrf(olga)
    assert good != _csrf(other)
    before = len(_audit(c, ""))
    posts = [("/doors/door-a/command", {"action": "lockdown-on", "confirm": "yes"}),
             (f"/people/{c.person_id}/revoke", {"confirm": "yes"}),
             ("/alerts/1/ack", {"note": "x"}), ("/alerts/1/resolve", {}), ("/logout", {}),
             ("/operators/olga/unlock", {})]
    for path, data in posts:
        for token in (None, "", "wrong", _csrf(other)):  # missing, empty, forged, another session's
            body = dict(data) if token is None else {**data, "csrf": token}
            r = olga.post(path, data=body)
            assert r.status_code == 403, (path, token, r.status_code)
            assert "CSRF" in r.text or "role" in r.text
        r = olga.post(path, data=data, headers={"X-CSRF-Token": "wrong"})
        assert r.status_code == 403
    assert len(_audit(c, "")) == before  # nothing was done
    assert olga.get("/fleet").status_code == 200  # the logout without a token did not log out
    # the right token passes the check (the revoke then asks for confirmation)
    r = olga.post(f"/people/{c.person_id}/revoke", data={"csrf": good})
    assert r.status_code == 200 and 'id="confirm-form"' in r.text
    # a login form posted without its own token (login CSRF) is refused too
    fresh = console.client()
    r = fresh.post("/login", data={"username": "olga", "password": PASSWORDS["olga"]})
    assert r.status_code == 403 and "__Host-facelock-session" not in r.headers.get("set-cookie", "")


def test_viewer_cannot_send_commands_revoke_or_ack(site):
    c, console = site
    vera = console.login("vera", PASSWORDS["vera"])
    page = vera.get("/doors/door-a")
    assert page.status_code == 200 and "may not send commands" in page.text and 'name="action"' not in page.text
    token = login_token(page.text)
    before = len(_audit(c, ""))
    for action in ("lockdown-on", "unlock", "lock", "reset-tamper"):
        for confirm in ("", "yes"):
            r = vera.post("/doors/door-a/command", data={"csrf": token, "action": action, "confirm": confirm})
            assert r.status_code == 403 and "viewer" in r.text
    assert vera.post(f"/people/{c.person_id}/revoke", data={"csrf": token, "confirm": "yes"}).status_code == 403
    assert vera.post("/alerts/1/ack", data={"csrf": token}).status_code == 403
    assert vera.get("/operators").status_code == 403
    assert len(_audit(c, "")) == before and not _audit(c, "command.")
    # an operator reaches the same command: it asks for confirmation first
    olga = console.login("olga", PASSWORDS["olga"])
    r = olga.post("/doors/door-a/command", data={"csrf": _csrf(olga), "action": "lockdown-on"})
    assert r.status_code == 200 and 'id="confirm-form"' in r.text and not _audit(c, "command.")


def test_login_brute_force_is_throttled_and_locks_the_account(pg_cluster, tmp_path):
    c = _centre(pg_cluster, tmp_path / "centre")
    try:
        with serve(c, max_failures=3, lockout_s=600.0, login_limit=6, login_window_s=60.0) as console:
            client = console.client()
            token = login_token(client.get("/login").text)

            def attempt(password: str):  # noqa: ANN202
                return client.post("/login", data={"csrf": token, "username": "olga", "password": password})

            for i in range(2):
                r = attempt(f"guess-{i}-xxxxxxx")
                assert r.status_code == 401 and "wrong user name, password or code" in r.text
            r = attempt("guess-3-xxxxxxx")
            assert r.status_code == 401 and "now locked" in r.text
            # three failures lock the account: now even the right password is refused
            r = attempt(PASSWORDS["olga"])
            assert r.status_code == 401 and "locked" in r.text
            assert "__Host-facelock-session" not in r.headers.get("set-cookie", "")
            assert [a.detail.get("reason") for a in _audit(c, "console.login.refused")][-1] == "locked"
            # and this address is throttled after login_limit attempts per window
            codes = [attempt("another-guess-xx").status_code for _ in range(4)]
            assert codes[:2] == [401, 401] and codes[2:] == [429, 429]
            r = attempt(PASSWORDS["olga"])
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "Too many" in r.text
            # an admin lifts the lockout (audited); the address limit is separate
            Operators(c.db, c.keys).unlock("olga", "adam")
            assert _audit(c, "operator.unlock")[-1].operator == "adam"
    finally:
        c.close()


class _PageScan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.tags: set[str] = set()
        self.ids: set[str] = set()
        self._in_script = False

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.add(tag)
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "script":
            self._in_script = True
            if not a.get("src", "").startswith("/static/"):
                self.problems.append(f"script without a same-origin src: {attrs}")
        if tag == "style":
            self.problems.append("a <style> element")
        for k, v in attrs:
            if k.startswith("on"):
                self.problems.append(f"inline handler {k} on <{tag}>")
            if k == "style":
                self.problems.append(f"inline style on <{tag}>")
            if k in ("href", "src", "action") and (v or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"javascript: URL in {k}")

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):  # noqa: ANN001
        if self._in_script and data.strip():
            self.problems.append(f"inline script body: {data[:60]!r}")


def _pages(c: Centre, client) -> dict[str, object]:  # noqa: ANN001
    token = _csrf(client)
    out = {}
    for path in ("/fleet", "/fleet?sort=denials&dir=desc&status=online&q=door", "/fleet?fragment=1", "/events",
                 "/events?type=access_denied&severity=warning&door=door-a", "/alerts", "/alerts?status=all",
                 "/alerts?status=acknowledged&fragment=1", "/doors/door-a", "/people", "/people?q=ali",
                 f"/people/{c.person_id}", "/charts", "/operators", "/doors/nope", "/people/nobody",
                 "/fleet?sort=evil", "/no-such-page"):
        out[path] = client.get(path)
    out["confirm command"] = client.post("/doors/door-a/command", data={"csrf": token, "action": "lockdown-on"})
    out["confirm revoke"] = client.post(f"/people/{c.person_id}/revoke", data={"csrf": token})
    out["csrf refusal"] = client.post("/alerts/1/ack", data={"csrf": "x"})
    return out


def test_csp_header_and_no_inline_script_in_any_page(site):
    c, console = site
    anon = console.client()
    pages = {"/login": anon.get("/login"), "/fleet (anonymous)": anon.get("/fleet"),
             "/static/htmx.min.js": anon.get("/static/htmx.min.js")}
    pages |= _pages(c, console.login("adam", PASSWORDS["adam"]))
    for name, r in pages.items():
        csp = r.headers.get("content-security-policy", "")
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
        assert directives.get("script-src") == "'self'", (name, csp)
        assert directives.get("style-src") == "'self'" and directives.get("default-src") == "'none'", (name, csp)
        assert directives.get("frame-ancestors") == "'none'" and directives.get("form-action") == "'self'"
        assert "unsafe" not in csp
        assert r.headers["x-content-type-options"] == "nosniff" and "max-age" in r.headers["strict-transport-security"]
        if r.headers.get("content-type", "").startswith("text/html"):
            scan = _PageScan()
            scan.feed(r.text)
            assert scan.problems == [], (name, scan.problems)
            if "fragment=1" not in name:  # htmx fragments are parts of a page
                assert {"header", "main", "footer"} <= scan.tags, (name, scan.tags)
            assert "Traceback" not in r.text
    assert pages["/fleet (anonymous)"].status_code == 303


def test_device_and_operator_strings_are_escaped(site):
    """A door (or anyone who names one) controls some strings the console shows: they must stay text."""
    from firmware.telemetry.events import encode, make_event

    c, console = site
    evil = '<img src=x onerror=alert(1)>'
    e = dataclasses.replace(make_event("door-a", "access_denied", reason=evil[:60], note=evil), seq=1)
    c.monitor.insert_events([(e, encode(e))])
    client = console.login("adam", PASSWORDS["adam"])
    for path in ("/events", "/doors/door-a", "/events?type=access_denied"):
        html = client.get(path).text
        assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html, path


def test_bad_input_gets_a_clear_message_and_unknown_things_a_404(site):
    c, console = site
    client = console.login("olga", PASSWORDS["olga"])
    token = _csrf(client)
    cases = [
        (client.get("/fleet?sort=evil"), 400, "sort must be one of"),
        (client.get("/fleet?status=maybe"), 400, "status must be one of"),
        (client.get("/fleet?q=" + "x" * 65), 400, "at most 64 characters"),
        (client.get("/fleet?debug=1"), 400, "unknown query parameter"),
        (client.get("/events?type=open_sesame"), 400, "unknown event type"),
        (client.get("/events?severity=loud"), 400, "unknown severity"),
        (client.get("/alerts?status=closed"), 400, "status must be one of"),
        (client.get("/doors/nope"), 404, "no door"),
        (client.get("/people/00000000-0000-0000-0000-000000000000"), 404, "no person"),
        (client.get("/no/such/page"), 404, "no such page"),
        (client.post("/alerts/abc/ack", data={"csrf": token}), 400, "whole number"),
        (client.post("/alerts/99999/ack", data={"csrf": token}), 404, "no alert 99999"),
        (client.post("/alerts/99999/ack", data={"csrf": token, "note": "n" * 501}), 400, "at most 500"),
        (client.post("/doors/door-a/command", data={"csrf": token, "action": "self-destruct"}), 400,
         "unknown action"),
        (client.post("/doors/nope/command", data={"csrf": token, "action": "lock"}), 404, "no door"),
        (client.post("/doors/door-a/command", data={"csrf": token, "action": "lock", "confirm": "yes"}), 400,
         "no broker is configured"),
        (client.get("/stream?after=-5"), 400, "between"),
    ]
    for r, status, text in cases:
        assert r.status_code == status, (r.request.url, r.status_code, r.text[:300])
        assert text in r.text.lower() or text in r.text, (r.request.url, text, r.text[:600])
        assert "Traceback" not in r.text


def test_logout_ends_the_session(site):
    _, console = site
    client = console.login("vera", PASSWORDS["vera"])
    cookie = client.cookies.get("__Host-facelock-session")
    assert client.post("/logout", data={"csrf": _csrf(client)}).status_code == 303
    replay = console.client()
    replay.cookies.set("__Host-facelock-session", cookie, domain="127.0.0.1")
    r = replay.get("/fleet")
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_totp_is_required_when_enrolled_and_each_code_works_once(site):
    import pyotp

    c, console = site
    secret = Operators(c.db, c.keys).add("tess", "viewer", "totp-user-password", OP, totp=True)
    with c.db.session() as s:
        from central.console.schema import Operator

        sealed = s.get(Operator, "tess").totp_sealed
    assert secret.encode() not in sealed  # sealed, not stored in the clear
    client = console.client()

    def login(code: str):  # noqa: ANN202
        t = login_token(client.get("/login").text)
        return client.post("/login", data={"csrf": t, "username": "tess", "password": "totp-user-password",
                                           "code": code})

    assert login("").status_code == 401
    assert login("000000" if pyotp.TOTP(secret).now() != "000000" else "111111").status_code == 401
    code = pyotp.TOTP(secret).now()
    assert login(code).status_code == 303
    client.cookies.clear()
    assert login(code).status_code == 401  # replayed code


def test_vendored_htmx_is_pinned_and_served_as_pinned(site, tmp_path):
    import json
    import shutil

    _, console = site
    pinned = verify_vendored()
    manifest = json.loads((STATIC_DIR / "VENDORED.json").read_text())
    assert manifest["htmx.min.js"]["package"] == "htmx.org"
    served = console.client().get("/static/htmx.min.js")
    assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == pinned["htmx.min.js"]
    copy = tmp_path / "static"
    shutil.copytree(STATIC_DIR, copy)
    (copy / "htmx.min.js").write_bytes((copy / "htmx.min.js").read_bytes() + b"\n;alert(1)")
    with pytest.raises(AssetError, match="differs from its pinned sha256"):
        verify_vendored(copy)
    assert console.client().get("/static/../assets.py").status_code == 404
    assert console.client().get("/static/VENDORED.json").status_code == 404


def test_database_outage_shows_a_banner_not_a_stack_trace(tmp_path):
    from central.pgserver import LocalPostgres

    pg = LocalPostgres()  # its own cluster (a temp dir postgres can traverse), stopped mid-test
    pg.start()
    c = None
    try:
        c = Centre(tmp_path / "centre", pg.url)
        c.init()
        add_operators(c)
        with serve(c) as console:
            client = console.login("vera", PASSWORDS["vera"])
            assert client.get("/fleet").status_code == 200
            pg.stop()
            for path in ("/fleet", "/alerts", "/people", "/doors/door-a", "/charts"):
                r = client.get(path)
                assert r.status_code == 503, (path, r.status_code)
                assert 'role="alert"' in r.text and "Database unavailable" in r.text and "Traceback" not in r.text
            anon = console.client()
            t = login_token(anon.get("/login").text)
            r = anon.post("/login", data={"csrf": t, "username": "vera", "password": PASSWORDS["vera"]})
            assert r.status_code == 503 and "Database unavailable" in r.text
            pg.start()
            assert client.get("/fleet").status_code == 200  # the session survived the outage
    finally:
        if c is not None:
            c.close()
        pg.destroy()


def test_broker_outage_shows_a_banner_and_a_command_fails_clearly(pg_cluster, tmp_path):
    import socket

    c = _centre(pg_cluster, tmp_path / "centre")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    try:
        pki = c.keys.loopback_pki(tmp_path / "pki")
        cf = pki.client("facelock-central")
        broker = BrokerSettings("127.0.0.1", port, str(pki.ca), str(cf.cert), str(cf.key))
        with serve(c, broker) as console:
            client = console.login("olga", PASSWORDS["olga"])
            page = client.get("/fleet")
            assert page.status_code == 200 and re.search(r"MQTT broker \(127\.0\.0\.1:\d+\) is unreachable", page.text)
            r = client.post("/doors/door-a/command", data={"csrf": login_token(page.text), "action": "lock",
                                                           "confirm": "yes"})
            assert r.status_code == 400 and "unreachable" in r.text and "Traceback" not in r.text
    finally:
        c.close()


def test_operators_add_cli_stores_only_an_argon2id_hash(pg_cluster, tmp_path):
    from click.testing import CliRunner

    from central.cli import main

    url = pg_cluster.create_database(f"c{uuid.uuid4().hex[:10]}")
    base = ["--data-dir", str(tmp_path / "centre"), "--db", url, "--operator", "installer"]
    r = CliRunner().invoke(main, [*base, "init"])
    assert r.exit_code == 0, r.output
    password = "a-long-enough-secret"
    r = CliRunner().invoke(main, [*base, "operators", "add", "nina", "--role", "operator", "--password-stdin"],
                           input=password + "\n")
    assert r.exit_code == 0 and "operator nina (operator) added" in r.output, r.output
    r = CliRunner().invoke(main, [*base, "operators", "add", "nina", "--role", "viewer", "--password-stdin"],
                           input=password + "\n")
    assert r.exit_code == 1 and "exists" in r.output
    r = CliRunner().invoke(main, [*base, "operators", "add", "Bad Name", "--role", "viewer", "--password-stdin"],
                           input=password + "\n")
    assert r.exit_code == 1 and "user name" in r.output
    r = CliRunner().invoke(main, [*base, "operators", "add", "short", "--role", "viewer", "--password-stdin"],
                           input="short\n")
    assert r.exit_code == 1 and "12-256 characters" in r.output
    c = Centre(tmp_path / "centre", url)
    try:
        from central.console.schema import Operator

        with c.db.session() as s:
            h = s.get(Operator, "nina").password_hash
        assert h.startswith("$argon2id$") and password not in h
        assert Operators(c.db, c.keys).authenticate("nina", password).role == "operator"
        assert [a.operator for a in _audit(c, "operator.add")] == ["installer"]
    finally:
        c.close()
