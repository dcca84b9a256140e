"""Serving the console: its TLS certificate (from the centre's CA unless the operator gives one) and
uvicorn over HTTPS only (the system OpenSSL's minimum protocol, TLS 1.2 on Debian; there is no plain-HTTP
listener, so the Secure cookies always apply)."""

from __future__ import annotations

import ipaddress
import logging
import signal
import ssl
from pathlib import Path
from typing import Any

from central.console.config import ConsoleConfig
from firmware import fsutil
from provisioning import pki

CERT_NAME, KEY_NAME = "console.pem", "console.key"


def ensure_certificate(centre: Any, cfg: ConsoleConfig) -> tuple[Path, Path]:
    """(cert, key) to serve: the configured pair, or one issued by the centre's CA into
    <data_dir>/console/ (re-issued when the hostnames change).  The key file is 0600."""
    if cfg.cert_file:
        return Path(cfg.cert_file), Path(cfg.key_file)
    d = centre.dir / "console"
    fsutil.make_private_dir(d)
    cert, key, names_file = d / CERT_NAME, d / KEY_NAME, d / "hostnames"
    names = sorted(set(cfg.hostnames) | {cfg.host})
    if cert.exists() and key.exists() and names_file.exists() and names_file.read_text() == "\n".join(names):
        return cert, key
    ips, dns = [], []
    for n in names:
        try:
            ips.append(str(ipaddress.ip_address(n)))
        except ValueError:
            dns.append(n)
    issued = pki.issue_cert(centre.keys.ca(), dns[0] if dns else names[0], server=True, dns_names=tuple(dns),
                            ip_addresses=tuple(ips))
    pki.write_key(key, issued.key)
    pki.write_cert(cert, issued.cert)
    fsutil.atomic_write(names_file, "\n".join(names).encode(), 0o644)
    return cert, key


def uvicorn_server(app: Any, cfg: ConsoleConfig, cert: Path, key: Path) -> Any:
    import uvicorn

    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, ssl_certfile=str(cert), ssl_keyfile=str(key),
                            ssl_version=ssl.PROTOCOL_TLS_SERVER, log_level="warning", access_log=False,
                            proxy_headers=False, server_header=False, date_header=True,
                            timeout_graceful_shutdown=2, lifespan="off")
    return uvicorn.Server(config)


def run_until_stopped(server: Any) -> str | None:
    """Run a uvicorn server in the main thread until SIGTERM or SIGINT; returns the signal's name.

    Why a handler of our own: uvicorn (0.29 and later) shuts down gracefully on SIGTERM and then raises the
    same signal again against the handler that was installed before it ran, so that with Python's default
    handler the process dies *by* SIGTERM (exit -15) after a clean shutdown, which systemd and a
    supervisor read as a crash.  With this handler installed first, that re-raise only records the
    signal, and `facelock-central console` exits 0."""
    log = logging.getLogger("facelock.central.console")
    got: list[int] = []
    sigs = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda signum, _frame: got.append(signum)) for sig in sigs}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    name = signal.Signals(got[0]).name if got else None
    log.info("console stopped (%s)", name or "server exited")
    return name
