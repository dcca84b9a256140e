"""A remote command's audit says what became of it: the attempt is recorded before anything leaves, and
its outcome after (sent when the broker acknowledged it; broker unreachable when it was stopped)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from central.app import Centre
from central.commands import send_command
from central.errors import CentralError
from central.models import AuditEntry
from central.simdoor import SimDoor
from tests.central.conftest import central_settings, start_broker


def _audit(centre: Centre) -> list[tuple[str, str | None, str]]:
    with centre.db.session() as s:
        return [(a.action, a.detail.get("outcome"), a.detail["nonce"])
                for a in s.scalars(select(AuditEntry).where(AuditEntry.action.like("command.%")).order_by(AuditEntry.id))]


def test_the_outcome_of_each_command_is_audited(centre: Centre, tmp_path: Path) -> None:
    broker = start_broker(centre, tmp_path / "broker")
    try:
        door = SimDoor(tmp_path / "door-a", "door-a")
        door.install(centre.registry.submit(door.csr(), centre.registry.create_token("op")))
        settings = central_settings(broker)
        sent = send_command(centre.db, centre.keys, settings, "olga", "door-a", "lock", timeout=10)
        broker.stop()
        with pytest.raises(CentralError, match="unreachable"):
            send_command(centre.db, centre.keys, settings, "olga", "door-a", "unlock", timeout=5)
    finally:
        broker.stop()
    entries = _audit(centre)
    assert [(a, o) for a, o, _ in entries] == [("command.lock", None), ("command.lock.result", "sent"),
                                               ("command.unlock", None),
                                               ("command.unlock.result", "broker unreachable")]
    assert entries[0][2] == entries[1][2] == sent and entries[2][2] == entries[3][2] != sent
