"""A console served for tests: the real app under uvicorn over HTTPS (certificate from the centre's CA),
in a thread of the test process, on a free loopback port."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx

from central.console.app import build_app
from central.console.config import ConsoleConfig
from central.console.server import ensure_certificate, uvicorn_server


@dataclass
class RunningConsole:
    url: str
    ca_file: str
    cert_file: str
    app: Any

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=self.ca_file),
                            follow_redirects=False, timeout=10, **kw)

    def login(self, username: str, password: str, code: str = "") -> httpx.Client:
        c = self.client()
        r = c.get("/login")
        assert r.status_code == 200, r.text
        r = c.post("/login", data={"csrf": login_token(r.text), "username": username, "password": password,
                                   "code": code})
        assert r.status_code == 303 and r.headers["location"] == "/fleet", (r.status_code, r.text[:500])
        return c


def login_token(html: str) -> str:
    import re

    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no csrf field in the page"
    return m.group(1)


@contextlib.contextmanager
def serve(centre: Any, broker: Any = None, **cfg: Any) -> Iterator[RunningConsole]:
    config = ConsoleConfig(host="127.0.0.1", port=0, hostnames=("localhost", "127.0.0.1"), **cfg)
    cert, key = ensure_certificate(centre, replace(config, port=8443))
    app = build_app(centre, config, broker)
    server = uvicorn_server(app, config, cert, key)
    t = threading.Thread(target=server.run, name="console-test-server", daemon=True)
    t.start()
    end = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > end or not t.is_alive():
            raise RuntimeError("the console did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningConsole(f"https://127.0.0.1:{port}", str(centre.keys.ca_cert_path), str(cert), app)
    finally:
        server.should_exit = True
        t.join(10)
