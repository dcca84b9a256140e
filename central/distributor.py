"""Pushes each door's bundle over MQTT until the door acknowledges that version; records the acks.

Bundles go retained (QoS 1) on facelock/<door>/policy, so a door that is offline gets the newest one
when it reconnects; the distributor also re-sends every `retry_s` until the ack arrives, and at once
when a door reports (on connect) that it runs an older version.  Acks come through a shared
subscription, so any number of centre workers split them; two workers sending the same bundle is
harmless (the door re-acks an equal version without re-applying).  Database outages are waited out:
the loop backs off and nothing is lost (an unrecorded ack is recovered by the next re-send).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import or_, select

from central.db import Database
from central.errors import DatabaseUnavailable
from central.models import Device, PolicyState
from firmware.fleet import topics as fleet_topics
from firmware.telemetry.tls import client_context

log = logging.getLogger("facelock.central.distributor")
MAX_ACK_BYTES = 1024


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int
    ca_file: str
    cert_file: str
    key_file: str
    client_id: str = "facelock-central"
    group: str = "facelock-central"


def parse_ack(topic: str, payload: bytes) -> dict | None:
    """The ack's fields, or None when it is malformed or names another door than its topic."""
    door = fleet_topics.door_of_ack(topic)
    if door is None or len(payload) > MAX_ACK_BYTES:
        return None
    # Plain json.loads: at most MAX_ACK_BYTES can nest at most 512 levels, well inside the parser's
    # recursion limit (RecursionError is caught all the same), and every field used is checked below.
    # boundedjson's depth scan (numpy) cost ~2 ms an ack: most of the centre's time during a 1,000-door push.
    try:
        d = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(d, dict) or d.get("v") != 1 or d.get("door") != door:
        return None
    version, status = d.get("version"), d.get("status")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        return None
    if status not in ("applied", "running", "refused"):
        return None
    reason = d.get("reason")
    return {"door": door, "version": version, "status": status,
            "reason": reason[:200] if isinstance(reason, str) else None}


class Distributor:
    def __init__(self, db: Database, broker: BrokerSettings, retry_s: float = 5.0, poll_s: float = 0.1) -> None:
        self.db = db
        self.broker = broker
        self.retry_s = retry_s
        self.poll_s = poll_s
        self.stats = {"sent": 0, "acks": 0, "refusals": 0, "bad_acks": 0, "db_errors": 0}
        self._acks: queue.Queue[dict] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{broker.client_id}-dist-{id(self):x}",
                                   protocol=mqtt.MQTTv5)
        self._client.tls_set_context(client_context(broker.ca_file, broker.cert_file, broker.key_file))
        self._client.reconnect_delay_set(0.1, 2.0)
        self._client.max_inflight_messages_set(200)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *a: self._connected.clear()
        self._client.on_message = self._on_message

    def start(self) -> None:
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="facelock-central-dist", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the distributor: %s", reason_code)
            return
        client.subscribe(f"$share/{self.broker.group}/{fleet_topics.POLICY_ACK_FILTER}", qos=1)
        self._connected.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        ack = parse_ack(msg.topic, bytes(msg.payload))
        if ack is None:
            self.stats["bad_acks"] += 1
            log.warning("malformed policy ack on %s dropped", msg.topic[:80])
            return
        self._acks.put(ack)

    def _run(self) -> None:
        delay = self.poll_s
        while not self._stop.wait(delay):
            try:
                self._record_acks()
                if self._connected.is_set():
                    self._send_due()
                delay = self.poll_s
            except DatabaseUnavailable:
                self.stats["db_errors"] += 1
                delay = min(max(delay * 2, 0.2), 2.0)
            except Exception:  # noqa: BLE001 - keep distributing whatever happens
                log.exception("distributor loop failed")
                delay = 1.0

    def _record_acks(self) -> None:
        batch: list[dict] = []
        while len(batch) < 1000:
            try:
                batch.append(self._acks.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
        try:
            with self.db.session() as s:
                states = {st.door_id: st for st in s.scalars(
                    select(PolicyState).where(PolicyState.door_id.in_({a["door"] for a in batch}))
                    .order_by(PolicyState.door_id).with_for_update())}
                for ack in batch:
                    st = states.get(ack["door"])
                    if st is None:
                        continue
                    if ack["status"] == "refused":
                        self.stats["refusals"] += 1
                        st.last_refusal = ack["reason"] or "refused"
                        continue
                    self.stats["acks"] += 1
                    if st.acked_version <= ack["version"] <= st.version:
                        st.acked_version, st.acked_at = ack["version"], time.time()
                    if ack["version"] < st.version and ack["status"] == "running":
                        st.last_sent_at = None  # a door back online on an old version: send now
        except DatabaseUnavailable:
            for ack in batch:  # keep them for when the database is back
                self._acks.put(ack)
            raise

    def _send_due(self) -> None:
        now = time.time()
        due = (select(PolicyState.door_id).join(Device, Device.id == PolicyState.door_id)
               .where(Device.status == "active", PolicyState.acked_version < PolicyState.version,
                      or_(PolicyState.last_sent_at.is_(None), PolicyState.last_sent_at < now - self.retry_s))
               .limit(500))
        with self.db.session() as s:
            # Polled every poll_s by every worker: the usual answer (nothing due) is one row-less query of
            # door ids; rows (and their bundles) are loaded as ORM objects only when some are due.
            if s.execute(due).first() is None:
                return
            rows = s.scalars(select(PolicyState).where(PolicyState.door_id.in_(due))).all()
            for st in rows:
                info = self._client.publish(fleet_topics.policy(st.door_id), st.bundle, qos=1, retain=True)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    continue
                st.last_sent_at, st.sends = now, st.sends + 1
                self.stats["sent"] += 1
