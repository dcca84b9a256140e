"""Simulated doors for `facelock bench fleet`: several per process, each a real MQTT v5 client with its own
mutual-TLS certificate (issued by the centre), as a lock's telemetry and door agent would be.

Per door: events are published QoS 1 on facelock/<door>/event/<type> and kept in memory until the centre's
receipt names them (re-sent after RESEND_S otherwise: the outbox's contract, without its SQLite file);
bundles on facelock/<door>/policy go through the lock's real checks (firmware.fleet.store: signature,
door, version, every template opened with the door's X25519 key) and are acknowledged.  The X25519 key is
held in memory here (a simulated lock's keystore); nothing else is simulated.

Protocol on stdin/stdout (one JSON line each): -> {"ready": n} once connected; <- {"go": "centre"|"bare",
"events": E, "rate": r, "tamper_every": k}; -> {"published": n, "phase": ...} when done publishing.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from firmware.fleet import topics as fleet_topics
from firmware.fleet.errors import BundleRejected
from firmware.fleet.store import BundleStore
from firmware.telemetry import topics
from firmware.telemetry.commands import load_public_key
from firmware.telemetry.events import encode, make_event

RESEND_S = 10.0


class SimDoor:
    def __init__(self, spec: dict, broker: dict, centre_pub, work: str) -> None:
        self.id = spec["id"]
        self.seq = 0
        self.pending: dict[str, tuple[float, str, bytes]] = {}
        self.lock = threading.Lock()
        self.connected = threading.Event()
        key = X25519PrivateKey.from_private_bytes(bytes.fromhex(spec["x25519"]))
        self.store = BundleStore(f"{work}/{self.id}", self.id, centre_pub, key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cafile=broker["ca"])
        ctx.load_cert_chain(spec["cert"], spec["key"])
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.id, protocol=mqtt.MQTTv5)
        c.tls_set_context(ctx)
        c.max_inflight_messages_set(200)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(0.1, 2.0)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = lambda *a: self.connected.clear()
        self.client = c
        c.connect_async(broker["host"], broker["port"], keepalive=60)
        c.loop_start()

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        if rc.is_failure:
            return
        client.subscribe([(topics.receipt(self.id), 1), (fleet_topics.policy(self.id), 1)])
        self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == topics.receipt(self.id):
            try:
                entries = json.loads(msg.payload)["events"]
            except (ValueError, KeyError, TypeError):
                return
            with self.lock:
                for _, eid in entries:
                    self.pending.pop(eid, None)
            return
        if msg.topic == fleet_topics.policy(self.id):
            try:
                bundle, _, _ = self.store.apply(bytes(msg.payload))
                body = {"v": 1, "door": self.id, "version": bundle.version, "status": "applied",
                        "offered": bundle.version, "reason": None}
            except BundleRejected as exc:
                body = {"v": 1, "door": self.id, "version": self.store.current_version(), "status": "refused",
                        "offered": None, "reason": exc.reason}
            client.publish(fleet_topics.policy_ack(self.id), json.dumps(body), qos=1)

    def publish(self, type_: str, track: bool) -> None:
        self.seq += 1
        e = make_event(self.id, type_, user_id="u-bench" if type_.startswith("access") else None,
                       scores={"match": 0.9} if type_.startswith("access") else None).with_seq(self.seq)
        raw = encode(e)
        if track:
            with self.lock:
                self.pending[e.id] = (time.monotonic(), type_, raw)
        self.client.publish(topics.event(self.id, type_), raw, qos=1)

    def resend_due(self) -> int:
        now = time.monotonic()
        with self.lock:
            due = [(k, v) for k, v in self.pending.items() if now - v[0] > RESEND_S]
            for k, (_, t, raw) in due:
                self.pending[k] = (now, t, raw)
        for _, (_, t, raw) in due:
            self.client.publish(topics.event(self.id, t), raw, qos=1)
        return len(due)


def main() -> None:
    cfg = json.loads(sys.stdin.readline())
    centre_pub = load_public_key(cfg["centre_pub"])
    doors = [SimDoor(s, cfg["broker"], centre_pub, cfg["work"]) for s in cfg["doors"]]
    deadline = time.monotonic() + 120
    while not all(d.connected.is_set() for d in doors) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(json.dumps({"ready": sum(d.connected.is_set() for d in doors)}), flush=True)
    stop = threading.Event()

    def resender() -> None:
        while not stop.wait(1.0):
            for d in doors:
                d.resend_due()

    threading.Thread(target=resender, daemon=True).start()
    for line in sys.stdin:
        cmd = json.loads(line)
        if "quit" in cmd:
            break
        track = cmd["go"] == "centre"
        n, rate, tamper_every = cmd["events"], cmd["rate"], cmd.get("tamper_every", 0)
        t0 = time.monotonic()
        count = 0
        for i in range(n):  # round-robin over the doors, each at `rate` events/s
            for d in doors:
                count += 1
                kind = "tamper" if tamper_every and count % tamper_every == 0 else "access_granted"
                d.publish(kind, track)
            ahead = (i + 1) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        print(json.dumps({"published": count, "phase": cmd["go"]}), flush=True)
    stop.set()
    for d in doors:
        d.client.disconnect()
        d.client.loop_stop()


if __name__ == "__main__":
    main()
