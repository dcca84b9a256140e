"""Fixtures: a real PostgreSQL cluster (Debian's postgresql, Unix socket), a centre on it, and a real
mosquitto (mutual TLS) whose CA is the centre's, with the centre's ACL lines and CRL."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.app import Centre
from central.broker import CENTRAL_USER, enable_crl
from central.distributor import BrokerSettings
from central.pgserver import LocalPostgres, PostgresError
from provisioning.mosquitto import LocalBroker

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalPostgres]:
    try:
        pg = LocalPostgres()
        pg.start()
    except PostgresError as exc:
        pytest.fail(f"PostgreSQL is required for the centre's tests (make system-deps installs it): {exc}")
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def pg_url(pg_cluster: LocalPostgres) -> str:
    return pg_cluster.create_database(f"t{next(_names)}")


@pytest.fixture
def centre(tmp_path: Path, pg_url: str) -> Iterator[Centre]:
    c = Centre(tmp_path / "centre", pg_url)
    c.init()
    try:
        yield c
    finally:
        c.close()


def start_broker(centre: Centre, directory: Path) -> LocalBroker:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed (make system-deps installs it)")
    b = LocalBroker(directory, pki=centre.keys.loopback_pki(directory / "pki"))
    _register_enrolled_doors(centre, b)
    # The centre's rights (facelock-central) and the doors' policy topics are in the broker's own
    # dynamic-security roles (provisioning/mosquitto.py); an ACL file would not be consulted.
    enable_crl(b.conf_file, centre.keys.crl_path)
    b.start()
    return b


def _register_enrolled_doors(centre: Centre, broker: LocalBroker) -> None:
    """The broker grants a door its own topics only once the door is in its registry (dynamic-security,
    provisioning/mosquitto.py): register each door the moment the centre activates it.  (The centre itself
    does not drive a broker's registry yet; in a deployment `facelock broker add-device` does.)"""
    registry = centre.registry
    for dev in registry.list():
        if dev["status"] == "active":
            broker.register(dev["device"])
    for name in ("submit", "approve"):
        original = getattr(registry, name)

        def wrapped(*args, _original=original, **kwargs):
            enrollment = _original(*args, **kwargs)
            if enrollment.status == "active":
                broker.register(enrollment.device_id)
            return enrollment

        setattr(registry, name, wrapped)


@pytest.fixture
def fleet_broker(centre: Centre, tmp_path: Path) -> Iterator[LocalBroker]:
    b = start_broker(centre, tmp_path / "broker")
    try:
        yield b
    finally:
        b.stop()


def central_settings(broker: LocalBroker) -> BrokerSettings:
    f = broker.pki.client(CENTRAL_USER)
    return BrokerSettings(broker.host, broker.port, str(broker.pki.ca), str(f.cert), str(f.key))
