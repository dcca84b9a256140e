"""Fixtures for the telemetry suite: a real mosquitto per test (helpers live in tests/support/mqtt_broker.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.mosquitto import LocalBroker
from tests.support.mqtt_broker import broker_fixture


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    yield from broker_fixture(tmp_path)
