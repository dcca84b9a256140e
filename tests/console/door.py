"""The door of the console's end-to-end test: the simulated door the centre's tests use
(central.simdoor.SimDoor: real keys and keystore, enrollment CSR, mutual TLS, a DoorAgent that verifies,
applies and acks the centre's signed bundles) plus what the lock's runtime adds around it: the lock's
telemetry client (events out through the outbox, signed commands in, verified by the lock's own
verifier), a keyed audit log whose head goes out in heartbeats, and the remote lockdown.

Decisions are `firmware.fleet.door.decide` under the bundle the door runs, and a remote lockdown refuses
everyone, as firmware.lock.controller does; the events are the ones the lock's controller emits
(access_granted / access_denied, command_result with reason "lockdown" and data.mode, heartbeat).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import numpy as np

from central.broker import register_door
from central.simdoor import SimDoor
from firmware.audit import AuditLog
from firmware.fleet.door import DoorDecision, decide
from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.commands import Command
from firmware.telemetry.events import make_event
from firmware.telemetry.outbox import Outbox


class ConsoleDoor:
    def __init__(self, directory: Path, device_id: str) -> None:
        self.sim = SimDoor(directory, device_id)
        self.id = device_id
        self.dir = directory
        self.lockdown = "off"
        self.client: TelemetryClient | None = None
        self._audit_key = os.urandom(32)
        self._lock = threading.Lock()
        self._anchor: int | None = None

    def onboard(self, centre, broker, name: str, operator: str) -> None:  # noqa: ANN001
        self.sim.install(centre.registry.submit(self.sim.csr(), centre.registry.create_token(operator)))
        register_door(broker, self.id)
        centre.directory.add_door(self.id, name, operator)

    def start(self, host: str, port: int) -> None:
        self.sim.start_agent(host, port)
        self.client = TelemetryClient(self.sim.mqtt_config(host, port), Outbox(self.dir / "outbox.db"),
                                      on_command=self._on_command)
        self.client.start()

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop()
        self.sim.stop_agent()

    def wait_connected(self, timeout: float) -> bool:
        return bool(self.client and self.client.wait_connected(timeout) and self.sim.agent.wait_connected(timeout))

    def running_version(self) -> int:
        return self.sim.running_version()

    # -- the lock's side -------------------------------------------------------------------------
    def _audit(self, kind: str, **data) -> None:  # noqa: ANN003
        with self._lock, AuditLog(self.dir / "audit.db", key=self._audit_key) as log:
            log.append(kind, **data)

    def _emit(self, type_: str, **fields) -> None:  # noqa: ANN003
        assert self.client is not None
        self.client.outbox.put(make_event(self.id, type_, **fields))

    def heartbeat(self) -> None:
        with self._lock, AuditLog(self.dir / "audit.db", key=self._audit_key) as log:
            fields = log.heartbeat_fields(self._anchor)
        self._anchor = fields["audit_seq"]
        self._emit("heartbeat", **fields)

    def attempt(self, probe: np.ndarray, when: dt.datetime | None = None) -> DoorDecision:
        """One face at the door: decided under the running bundle, audited, reported as an event."""
        applied = self.sim.applied[-1] if self.sim.applied else None
        gallery = self.sim.galleries[-1] if self.sim.galleries else {}
        d = decide(applied, gallery, probe, when or dt.datetime.now())
        if d.granted and self.lockdown != "off":
            d = DoorDecision(False, "lockdown", d.person, d.score)
        self._audit("access_granted" if d.granted else "access_denied", user=d.person, reason=d.reason)
        self._emit("access_granted" if d.granted else "access_denied", user_id=d.person,
                   reason="granted" if d.granted else d.reason, scores={"match": round(d.score, 4)})
        if d.granted:  # the state machine's moves, as the controller reports them (relock is immediate here)
            self._emit("state_changed", reason="granted", state="UNLOCKED", prev="IDLE")
            self._emit("state_changed", reason="relock", state="IDLE", prev="UNLOCKED")
        return d

    def _on_command(self, command: Command) -> str:
        if command.name == "lockdown":
            self.lockdown = "nobody" if command.args.get("on") else "off"
            self._audit("lockdown", mode=self.lockdown, by="management")
            self._emit("command_result", reason="lockdown", mode=self.lockdown)
            return f"lockdown {self.lockdown}"
        if command.name in ("lock", "unlock"):
            self._audit(f"remote_{command.name}", by="management")
            return command.name
        return "ignored"
