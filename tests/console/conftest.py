"""Fixtures of the console's tests: the centre's real PostgreSQL and mosquitto fixtures (tests/central),
operators of each role, and a real browser: Playwright driving Debian's chromium by its executable path
(nothing downloads a browser; `make system-deps` installs chromium)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.central.conftest import centre, fleet_broker, pg_cluster, pg_url  # noqa: F401 - fixtures

CHROMIUM = os.environ.get("FACELOCK_CHROMIUM", "/usr/bin/chromium")
PASSWORDS = {"vera": "viewer-password-1", "olga": "operator-password-1", "adam": "admin-password-12"}
ROLE_OF = {"vera": "viewer", "olga": "operator", "adam": "admin"}


def add_operators(c) -> None:  # noqa: ANN001
    from central.console import schema
    from central.console.operators import Operators

    schema.upgrade(c.db)
    ops = Operators(c.db, c.keys)
    for name, pw in PASSWORDS.items():
        ops.add(name, ROLE_OF[name], pw, "test-setup")


def spki_pin(cert_file: str) -> str:
    """Chromium's --ignore-certificate-errors-spki-list value for this certificate: the browser then
    accepts exactly this key (the console's, issued by the centre's CA) and no other."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright (pip) is required for the console's browser tests: pip install -e '.[dev]'")
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(f"chromium is not installed at {CHROMIUM} (make system-deps installs Debian's chromium)")
    with sync_playwright() as p:
        yield p


def launch(p, cert_file: str):  # noqa: ANN001, ANN201
    return p.chromium.launch(executable_path=CHROMIUM, headless=True,
                             args=["--no-sandbox", f"--ignore-certificate-errors-spki-list={spki_pin(cert_file)}"])


def shots_dir(tmp_path: Path) -> Path:
    """Screenshots go under the test's output dir, or where FACELOCK_CONSOLE_SHOTS says
    (`make console-shots`: build/console-shots)."""
    d = Path(os.environ.get("FACELOCK_CONSOLE_SHOTS") or tmp_path / "console-shots")
    d.mkdir(parents=True, exist_ok=True)
    return d
