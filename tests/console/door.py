"""The door of the console's end-to-end tests: the simulated door the centre's tests use
(central.simdoor.SimDoor: real keys and keystore, enrollment CSR, mutual TLS, a DoorAgent that verifies,
applies and acks the centre's signed bundles) beside the lock's real runtime, as facelockd runs it:

- `firmware.lock.runtime.LockRuntime` (the state machine, the relay on gpiozero mock pins, the door
  contact and tamper switch, the keyed audit log, the shipped face pipeline on a replay camera showing an
  empty scene), its loop on a thread of its own;
- the lock's telemetry client (events out through the durable outbox, signed commands in, checked by the
  lock's own `CommandVerifier`: signature, freshness, nonce, topic) handing commands to the lock's
  `RemoteCommands` over a `LockPort`, exactly the daemon's wiring (firmware.daemon.start_telemetry), so
  lockdown, lock/unlock and reset-tamper are carried out (or refused) by the lock's own code;
- the retained state topic published by `firmware.daemon.publish_state` after every state-machine move,
  as the daemon's loop does.

A face at the door is decided by `firmware.fleet.door.decide` under the bundle the door runs (this console
door keeps the simulated door's agent; the real daemon runs it itself, firmware/fleet/lockhook.py and
tests/central/test_daemon_fleet.py), refused
under the lock's lockdown, and reported as the lock's access_granted / access_denied event; it does not
move the state machine (only the camera's decider does, and it sees an empty scene here).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading
from pathlib import Path

import numpy as np

from central.broker import register_door
from central.simdoor import SimDoor
from firmware.audit import AuditLog
from firmware.config import CameraConfig, Config, DeviceConfig, LockConfig
from firmware.fleet.door import DoorDecision, decide
from firmware.lock.policy import Lockdown
from firmware.telemetry.client import TelemetryClient


class ConsoleDoor:
    def __init__(self, directory: Path, device_id: str) -> None:
        self.sim = SimDoor(directory, device_id)
        self.id = device_id
        self.dir = directory
        self.client: TelemetryClient | None = None
        self.rt = None  # firmware.lock.runtime.LockRuntime once started
        self._audit_key = os.urandom(32)
        self._anchor: int | None = None
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None

    def onboard(self, centre, broker, name: str, operator: str) -> None:  # noqa: ANN001
        self.sim.install(centre.registry.submit(self.sim.csr(), centre.registry.create_token(operator)))
        register_door(broker, self.id)
        centre.directory.add_door(self.id, name, operator)

    # -- the lock ----------------------------------------------------------------------------------
    def start(self, host: str, port: int) -> None:
        from gpiozero import Device
        from gpiozero.pins.mock import MockFactory

        from firmware.daemon import publish_state
        from firmware.hw.camera.replay import ReplayCamera
        from firmware.hw.gpio import LockIO
        from firmware.lock.port import LockPort
        from firmware.lock.remote import RemoteCommands
        from firmware.lock.runtime import LockRuntime
        from firmware.site import OutboxSink
        from firmware.vision import FacePipeline, Gallery
        from tests.support.decider import make_decider

        self.sim.start_agent(host, port)
        data = self.dir / "lock"
        data.mkdir(exist_ok=True)
        cfg = Config()
        cfg = dataclasses.replace(
            cfg, device=DeviceConfig(id=self.id, data_dir=str(data)), gpio=dataclasses.replace(cfg.gpio, bounce_s=0.0),
            lock=LockConfig(unlock_s=3.0, fault_retry_initial_s=0.05, fault_retry_max_s=0.5),
            camera=CameraConfig(backend="replay", source="mem", fps=4.0, stall_timeout_s=2.0))
        self._old_factory = Device.pin_factory
        self.pins = MockFactory()
        self.io = LockIO(cfg.gpio, pin_factory=self.pins)
        self.sink = OutboxSink(self.dir / "outbox.db", self.id)
        pipeline = FacePipeline.from_manifest(num_threads=1)
        empty = np.full((cfg.camera.height, cfg.camera.width, 3), 96, np.uint8)  # nobody in view
        ready = threading.Event()
        failed: list[BaseException] = []

        def loop() -> None:
            """The daemon's main thread (firmware.daemon.run): the lock is built, ticked and shut down on
            it (its audit log and state machine belong to it), minus systemd and the heartbeat timer."""
            try:
                self.audit = AuditLog(data / "audit.db", key=self._audit_key)
                self.rt = LockRuntime(
                    cfg, self.io, lambda: ReplayCamera([empty], fps=cfg.camera.fps, loop=True),
                    lambda: make_decider(pipeline, Gallery(dim=int(pipeline.embedder_spec.output_size)),
                                         pipeline.threshold("unlock")),
                    self.audit, self.sink, status_path=data / "status.json")
                self.port = LockPort(self.rt)
                self.rt.bring_up()
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failed.append(exc)
                ready.set()
                return
            ready.set()
            last = None
            try:
                while not self._stop.is_set():
                    self.rt.tick()
                    if self.rt.snap.state is not last and self.client is not None:
                        last = self.rt.snap.state
                        publish_state(self.client, self.port)
            finally:
                self.rt.shutdown("test")
                self.audit.close()

        self._loop = threading.Thread(target=loop, name=f"lock-{self.id}", daemon=True)
        self._loop.start()
        ready.wait(30)
        if failed:
            raise failed[0]
        self.client = TelemetryClient(self.sim.mqtt_config(host, port), self.sink.outbox,
                                      on_command=RemoteCommands(self.port).handle)
        self.client.start()

    def stop(self) -> None:
        from gpiozero import Device

        self._stop.set()
        if self._loop is not None:
            self._loop.join(10)
        if self.client is not None:
            self.client.stop()
        self.sim.stop_agent()
        if self.rt is not None:
            self.io.close()
            self.sink.close()
            self.pins.reset()
            Device.pin_factory = self._old_factory

    def wait_connected(self, timeout: float) -> bool:
        return bool(self.client and self.client.wait_connected(timeout) and self.sim.agent.wait_connected(timeout))

    def running_version(self) -> int:
        return self.sim.running_version()

    @property
    def state(self) -> str:
        """The lock's state machine's state (IDLE, TAMPER ...)."""
        return self.rt.snap.state.value

    @property
    def lockdown(self) -> str:
        return self.rt.lockdown.value

    def set_door(self, open_: bool) -> None:
        """The door contact: opened while locked, the lock calls it forced (TAMPER)."""
        self.io.simulate_door(open_)

    # -- on the lock's loop thread -------------------------------------------------------------------
    def heartbeat(self) -> None:
        fields = self.rt.call(lambda: self.audit.heartbeat_fields(self._anchor))
        self._anchor = fields["audit_seq"]
        self.sink.emit("heartbeat", **fields)

    def attempt(self, probe: np.ndarray, when: dt.datetime | None = None) -> DoorDecision:
        """One face at the door: decided under the running bundle, audited, reported as an event."""
        applied = self.sim.applied[-1] if self.sim.applied else None
        gallery = self.sim.galleries[-1] if self.sim.galleries else {}
        d = decide(applied, gallery, probe, when or dt.datetime.now())
        if d.granted and self.rt.lockdown is Lockdown.NOBODY:
            d = DoorDecision(False, "lockdown", d.person, d.score)
        kind = "access_granted" if d.granted else "access_denied"
        self.rt.call(lambda: self.audit.append(kind, user=d.person, reason=d.reason))
        self.sink.emit(kind, user_id=d.person, reason="granted" if d.granted else d.reason,
                       scores={"match": round(d.score, 4)})
        return d
