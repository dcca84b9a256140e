"""Simulated doors for `facelock bench fleet`: several per process, each a real MQTT v5 client with its own
mutual-TLS certificate (issued by the centre), as a lock's telemetry and door agent would be.

Per door: events are published QoS 1 on facelock/<door>/event/<type> and kept in memory until the centre's
receipt names them (re-sent after the lock's receipt timeout otherwise: the outbox's contract, without its SQLite file);
bundles on facelock/<door>/policy go through the lock's real checks (firmware.fleet.store: signature,
door, version, every template opened with the door's X25519 key) and are acknowledged.  The X25519 key is
held in memory here (a simulated lock's keystore); nothing else is simulated.

Why one thread per process drives all its doors (paho's external-loop API over one epoll set), and not a
paho `loop_start()` thread per door: the doors are the load generator, and a hundred network threads in
one interpreter spend their time handing the interpreter lock to each other, so the generator, not the
centre, would set the figure.  Each door's publishes of one tick leave in one TLS write
(`paho_io.BatchedIOClient.batch`).

Protocol on stdin/stdout (one JSON line each): -> {"ready": n} once connected; <- {"go": "centre"|"bare",
"events": E, "rate": r, "tamper_every": k}; -> {"published": n, "phase": ...} when done publishing.
"""

from __future__ import annotations

import json
import selectors
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
from firmware.telemetry.config import MqttConfig
from firmware.telemetry.events import encode, make_event
from firmware.telemetry.paho_io import BatchedIOClient

# A lock publishes an event again when its receipt has not come for this long (the telemetry config's
# default): a shorter one here would add resends to the load the lock itself would not send.
RESEND_S = MqttConfig().receipt_timeout_s
TICK_S = 0.05


class SimDoor:
    def __init__(self, spec: dict, broker: dict, centre_pub, work: str, ctx: ssl.SSLContext) -> None:
        self.id = spec["id"]
        self.seq = 0
        self.pending: dict[str, tuple[float, str, bytes]] = {}
        self.connected = False
        key = X25519PrivateKey.from_private_bytes(bytes.fromhex(spec["x25519"]))
        self.store = BundleStore(f"{work}/{self.id}", self.id, centre_pub, key)
        c = BatchedIOClient(CallbackAPIVersion.VERSION2, client_id=self.id, protocol=mqtt.MQTTv5)
        c.tls_set_context(ctx)
        c.max_inflight_messages_set(0)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        self.client = c
        self.broker = broker
        self.next_reconnect = 0.0

    def connect(self) -> None:
        try:
            self.client.connect(self.broker["host"], self.broker["port"], keepalive=60)
        except (OSError, ssl.SSLError):
            self.next_reconnect = time.monotonic() + 1.0

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        if rc.is_failure:
            return
        client.subscribe([(topics.receipt(self.id), 1), (fleet_topics.policy(self.id), 1)])
        self.connected = True

    def _on_disconnect(self, *a) -> None:
        self.connected = False
        self.next_reconnect = time.monotonic() + 0.5

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == topics.receipt(self.id):
            try:
                entries = json.loads(msg.payload)["events"]
            except (ValueError, KeyError, TypeError):
                return
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
            self.pending[e.id] = (time.monotonic(), type_, raw)
        self.client.publish(topics.event(self.id, type_), raw, qos=1)

    def resend_due(self, now: float) -> None:
        due = [(k, v) for k, v in self.pending.items() if now - v[0] > RESEND_S]
        for k, (_, t, raw) in due:
            self.pending[k] = (now, t, raw)
            self.client.publish(topics.event(self.id, t), raw, qos=1)


class Fleet:
    """All of this process's doors, driven from one thread over one epoll set.

    Each door's socket stays registered (read; write only while paho has bytes it could not send), so a
    wake-up costs what is ready, not a walk over every door: with receipts streaming in, select() over
    a rebuilt list of 100 sockets per wake-up made the generator, not the centre, the busiest process."""

    def __init__(self, doors: list[SimDoor]) -> None:
        self.doors = doors
        self.sel = selectors.DefaultSelector()
        self.watched: dict[str, tuple[object, int]] = {}  # door id -> (socket, events) registered
        self.last_misc = 0.0
        self.last_resend = 0.0

    def watch(self, d: SimDoor) -> None:
        """Bring the door's registration in line with its socket and whether paho wants to write."""
        s = d.client.socket()
        old = self.watched.get(d.id)
        if old is not None and (s is None or old[0] is not s):
            try:
                self.sel.unregister(old[0])
            except (KeyError, ValueError, OSError):
                pass
            del self.watched[d.id]
            old = None
        if s is None:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if d.client.want_write() else 0)
        if old is None:
            self.sel.register(s, events, d)
        elif old[1] != events:
            self.sel.modify(s, events, d)
        self.watched[d.id] = (s, events)

    def connect(self, d: SimDoor) -> None:
        d.connect()
        self.watch(d)

    def poll(self, timeout: float) -> None:
        now = time.monotonic()
        if now - self.last_misc >= 1.0:  # keepalives and reconnects, once a second
            self.last_misc = now
            for d in self.doors:
                if d.client.socket() is None:
                    if now >= d.next_reconnect:
                        d.connect()
                else:
                    d.client.loop_misc()
                self.watch(d)
        if not self.watched:
            time.sleep(timeout)
            return
        for key, mask in self.sel.select(timeout):
            d = key.data
            if mask & selectors.EVENT_WRITE:
                d.client.loop_write()
            if mask & selectors.EVENT_READ and d.client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                d.connected = False
            self.watch(d)
        if now - self.last_resend >= 1.0:
            self.last_resend = now
            for d in self.doors:
                if d.pending and d.connected:
                    d.resend_due(now)
                    self.watch(d)

    def tick(self, wait: float) -> None:
        """Sleep `wait`, then handle everything that came meanwhile in one pass.  Between publishing rounds
        this is how the doors listen: PUBACKs and receipts stream in one by one, and waking for each one
        (an epoll call and a pass per message) cost the generator more than reading them; a door handles
        its receipt at most TICK_S later, which nothing measured depends on (events are stamped and
        published on time; the centre's latency is stored_at - ts)."""
        time.sleep(wait)
        self.poll(0)

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll(min(TICK_S, max(0.0, deadline - time.monotonic())))


def main() -> None:
    cfg = json.loads(sys.stdin.readline())
    centre_pub = load_public_key(cfg["centre_pub"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=cfg["broker"]["ca"])
    doors = []
    for s in cfg["doors"]:
        dctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # one context per door: its own certificate
        dctx.minimum_version = ssl.TLSVersion.TLSv1_2
        dctx.load_verify_locations(cafile=cfg["broker"]["ca"])
        dctx.load_cert_chain(s["cert"], s["key"])
        doors.append(SimDoor(s, cfg["broker"], centre_pub, cfg["work"], dctx))
    fleet = Fleet(doors)
    for d in doors:
        fleet.connect(d)
    deadline = time.monotonic() + 180
    while not all(d.connected for d in doors) and time.monotonic() < deadline:
        fleet.poll(TICK_S)
    print(json.dumps({"ready": sum(d.connected for d in doors)}), flush=True)

    commands: list[dict] = []
    cv = threading.Condition()

    def reader() -> None:  # stdin on its own thread, so the doors keep answering between phases
        for line in sys.stdin:
            with cv:
                commands.append(json.loads(line))
                cv.notify()
        with cv:
            commands.append({"quit": 1})
            cv.notify()

    threading.Thread(target=reader, daemon=True).start()
    while True:
        with cv:
            cmd = commands.pop(0) if commands else None
        if cmd is None:
            fleet.tick(TICK_S)
            continue
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
                with d.client.batch():
                    d.publish(kind, track)
                if d.client.want_write():  # the socket took less than all of it: write when it can
                    fleet.watch(d)
            while True:  # keep the network turning until the next round is due
                ahead = (i + 1) / rate - (time.monotonic() - t0)
                if ahead <= 0:
                    break
                fleet.tick(min(ahead, TICK_S))
            fleet.poll(0)
        print(json.dumps({"published": count, "phase": cmd["go"]}), flush=True)
    for d in doors:
        try:
            d.client.disconnect()
            d.client.loop_write()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass


if __name__ == "__main__":
    main()
