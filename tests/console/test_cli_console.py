"""`facelock-central console` as an operator runs it: a separate process on the centre's real PostgreSQL,
serving HTTPS with a certificate issued by the centre's CA (verified against that CA alone, for the
configured host names), a login page that answers and a login that works, and SIGTERM stopping it
cleanly with exit status 0 (uvicorn re-raises the signal after its graceful shutdown; before the fix
the process died by it, -15)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from cryptography import x509

from central.app import Centre
from tests.central.conftest import central_settings
from tests.console.conftest import PASSWORDS, add_operators
from tests.console.server import login_token

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_console_process_serves_https_with_the_centres_certificate_and_stops_on_sigterm(
        pg_cluster, fleet_broker, tmp_path):  # noqa: ANN001
    data = tmp_path / "centre"
    db = pg_cluster.create_database(f"c{uuid.uuid4().hex[:10]}")
    c = Centre(data, db)
    c.init()
    add_operators(c)
    ca_file = str(c.keys.ca_cert_path)
    c.close()
    b = central_settings(fleet_broker)
    port = _free_port()
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'''[central]
data_dir = "{data}"
db = "{db}"
host = "{b.host}"
port = {b.port}
ca_file = "{b.ca_file}"
cert_file = "{b.cert_file}"
key_file = "{b.key_file}"

[console]
host = "127.0.0.1"
port = {port}
hostnames = ["localhost", "console.example"]
''')
    env = dict(os.environ, PYTHONPATH=str(REPO), FACELOCK_OPERATOR="op-cli")
    p = subprocess.Popen([sys.executable, "-m", "central.cli", "console", "--config", str(cfg)], cwd=REPO,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        verify = ssl.create_default_context(cafile=ca_file)  # the centre's CA and nothing else
        client = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=verify, timeout=5,
                              follow_redirects=False)
        end = time.monotonic() + 60
        while True:
            assert p.poll() is None, p.communicate(timeout=10)
            try:
                r = client.get("/login")
                break
            except httpx.ConnectError:
                assert time.monotonic() < end, "the console never answered"
                time.sleep(0.2)
        assert r.status_code == 200 and 'id="login-form"' in r.text
        assert "content-security-policy" in r.headers
        # the certificate served is the one issued into the data dir, by the centre's CA, for the names
        pem = ssl.get_server_certificate(("127.0.0.1", port))
        served = x509.load_pem_x509_certificate(pem.encode())
        issued = x509.load_pem_x509_certificate((data / "console" / "console.pem").read_bytes())
        assert served == issued
        ca = x509.load_pem_x509_certificate(Path(ca_file).read_bytes())
        assert served.issuer == ca.subject
        san = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"localhost", "console.example"} <= set(san.get_values_for_type(x509.DNSName))
        assert stat.S_IMODE((data / "console" / "console.key").stat().st_mode) == 0o600
        # a login through the process (its own database connection)
        r = client.post("/login", data={"csrf": login_token(r.text), "username": "olga",
                                        "password": PASSWORDS["olga"]})
        assert r.status_code == 303 and r.headers["location"] == "/fleet", r.text[:300]
        assert client.get("/fleet").status_code == 200
        client.close()
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, (p.returncode, err[-2000:])
    assert "console on https://127.0.0.1:" in out
    assert "Traceback" not in err and "console stopped (SIGTERM)" in err, err[-2000:]
