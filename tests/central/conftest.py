"""Fixtures: a real PostgreSQL cluster (Debian's postgresql, Unix socket), a centre on it, and a real
mosquitto (mutual TLS) whose CA is the centre's, with the centre's ACL lines and CRL."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from central import broker as central_broker
from central.app import Centre
from central.broker import central_files
from central.distributor import BrokerSettings, Distributor
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
    b = central_broker.fleet_broker(directory, centre.keys)
    b.start()
    # the centre keeps this broker's accounts in step with its registry (approve adds, revoke deletes)
    centre.registry.accounts = central_broker.BrokerAccounts.for_local(b)
    return b


@pytest.fixture
def fleet_broker(centre: Centre, tmp_path: Path) -> Iterator[LocalBroker]:
    b = start_broker(centre, tmp_path / "broker")
    try:
        yield b
    finally:
        b.stop()


def central_settings(broker: LocalBroker) -> BrokerSettings:
    f = central_files(broker)
    return BrokerSettings(broker.host, broker.port, str(broker.pki.ca), str(f.cert), str(f.key))

@pytest.fixture
def distributor(centre: Centre, fleet_broker: LocalBroker) -> Iterator[Distributor]:
    d = Distributor(centre.db, central_settings(fleet_broker), retry_s=0.5)
    d.start()
    assert d.wait_connected(10)
    try:
        yield d
    finally:
        d.stop()
