"""The locks' retained state topic (`facelock/<door>/state`) into the centre's database.

Each lock publishes its current state there, retained (firmware.telemetry.client.publish_state, set by
firmware.daemon after every state-machine move): the relay read back (LOCKED / UNLOCKED ...), the door
contact, the tamper switch, whether a lockdown is on, and the state machine's state.  Events tell what
happened; this topic tells what *is*, even for a door that has been quiet for a week, so the console's
fleet and door pages show it (central.console.readmodel), falling back to the events when a door never
published its state.

Why a plain (not shared) subscription: the broker sends retained messages only to non-shared
subscriptions, and the point is to get every door's current state at start.  So every worker receives
every state message and writes it; the write keeps the newest by the lock's own timestamp, so any
number of workers agree.  The broker's ACL lets only the lock itself publish on its topic; states of
devices the registry does not know as active are dropped.

`parse_state` is pure; `DoorStateIngest` is the MQTT client and a writer thread (a database outage is
waited out: the newest state per door stays pending and is written when the database is back).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from central.db import Database
from central.errors import DatabaseUnavailable
from central.models import Device, DoorReportedState
from firmware import boundedjson
from firmware.lock.statemachine import State
from firmware.telemetry import topics
from firmware.telemetry.ha_discovery import DOOR_STATES, LOCK_STATES
from firmware.telemetry.tls import client_context

log = logging.getLogger("facelock.central.doorstate")
STATE_FILTER = f"{topics.ROOT}/+/state"
MAX_STATE_BYTES = 1024
MACHINE_STATES = tuple(s.value.lower() for s in State)  # as firmware.daemon.publish_state sends them


class StateError(ValueError):
    """A state message that is not the lock's state schema (dropped, counted, never stored)."""


@dataclass(frozen=True)
class ReportedState:
    device: str
    lock: str  # LOCK_STATES
    door: str  # DOOR_STATES
    tamper: bool
    lockdown: bool
    machine: str | None  # the state machine's state, upper case (IDLE, TAMPER ...), None: not given
    ts: float  # the lock's clock when it published


def parse_state(topic: str, payload: bytes) -> ReportedState:
    """The state one lock published on its own `facelock/<device>/state` topic (StateError if malformed)."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != topics.ROOT or parts[2] != "state" or not topics.valid_device_id(parts[1]):
        raise StateError("not a state topic")
    if len(payload) > MAX_STATE_BYTES:
        raise StateError("state message too large")
    try:
        d = boundedjson.loads(payload.decode("utf-8"), max_depth=3)
    except (UnicodeDecodeError, ValueError):
        raise StateError("state message is not JSON") from None
    if not isinstance(d, dict) or d.get("v") != 1:
        raise StateError("state message has no v=1")
    lock, door, tamper, lockdown = d.get("lock"), d.get("door"), d.get("tamper"), d.get("lockdown")
    ts, machine = d.get("ts"), d.get("last_event")
    if lock not in LOCK_STATES or door not in DOOR_STATES:
        raise StateError("lock or door state out of the schema")
    if not isinstance(tamper, bool) or not isinstance(lockdown, bool):
        raise StateError("tamper and lockdown must be booleans")
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not 0 < ts < 1e11:
        raise StateError("ts must be a Unix time")
    if machine is not None and machine not in MACHINE_STATES:
        raise StateError("unknown state-machine state")
    return ReportedState(parts[1], lock, door, tamper, lockdown, machine.upper() if machine else None, float(ts))


class DoorStateStore:
    """Upserts of reported states: the newest by the lock's timestamp wins (several workers write)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = postgresql.insert if db.is_postgres else sqlite.insert

    def write(self, states: list[ReportedState], received_at: float) -> int:
        """Store those of active devices; returns how many were (new or newer)."""
        if not states:
            return 0
        with self.db.session() as s:
            active = set(s.scalars(select(Device.id).where(Device.id.in_([x.device for x in states]),
                                                           Device.status == "active")))
            n = 0
            for st in states:
                if st.device not in active:
                    continue
                vals = {"lock": st.lock, "door": st.door, "tamper": st.tamper, "lockdown": st.lockdown,
                        "machine": st.machine, "ts": st.ts, "received_at": received_at}
                stmt = self._insert(DoorReportedState).values(device=st.device, **vals)
                stmt = stmt.on_conflict_do_update(index_elements=["device"], set_=vals,
                                                  where=DoorReportedState.ts <= st.ts)
                n += len(s.execute(stmt.returning(DoorReportedState.device)).all())
            return n


class DoorStateIngest:
    """The MQTT side: subscribe to every door's retained state, hand the newest per door to a writer."""

    def __init__(self, db: Database, broker: Any, retry_s: float = 1.0) -> None:  # broker: BrokerSettings
        self.store = DoorStateStore(db)
        self.broker = broker
        self.retry_s = retry_s
        self.stats = {"received": 0, "malformed": 0, "stored": 0}
        self._pending: dict[str, ReportedState] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None
        self._writer: threading.Thread | None = None

    def start(self) -> None:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.broker.client_id}-state-{time.monotonic_ns()}",
                        protocol=mqtt.MQTTv5)
        c.tls_set_context(client_context(self.broker.ca_file, self.broker.cert_file, self.broker.key_file))
        c.reconnect_delay_set(0.2, 5.0)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *_a: self._connected.clear()
        c.on_message = self._on_message
        c.connect_async(self.broker.host, self.broker.port)
        c.loop_start()
        self._client = c
        self._writer = threading.Thread(target=self._write_loop, name="central-doorstate", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self._writer is not None:
            self._writer.join(10)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.warning("broker refused the door-state subscriber: %s", reason_code)
            return
        client.subscribe([(STATE_FILTER, SubscribeOptions(qos=1))])
        self._connected.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        self.stats["received"] += 1
        try:
            st = parse_state(msg.topic, msg.payload)
        except StateError as exc:
            self.stats["malformed"] += 1
            log.warning("door state on %s dropped: %s", topics.device_of(msg.topic) or "?", exc)
            return
        with self._lock:
            old = self._pending.get(st.device)
            if old is None or old.ts <= st.ts:
                self._pending[st.device] = st
        self._wake.set()

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                batch, self._pending = list(self._pending.values()), {}
            if not batch:
                continue
            try:
                self.stats["stored"] += self.store.write(batch, time.time())
            except DatabaseUnavailable:
                log.warning("database unavailable; %d door states wait", len(batch))
                with self._lock:
                    for st in batch:  # keep the newest: a message that came meanwhile wins
                        if st.device not in self._pending or self._pending[st.device].ts < st.ts:
                            self._pending[st.device] = st
                self._stop.wait(self.retry_s)
                self._wake.set()
