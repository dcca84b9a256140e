"""The device's MQTT v5 client: publishes the outbox over mutual TLS and receives signed commands.

One I/O thread owns the paho client (paho's SSL socket must not be read and written from two threads):
it connects, runs `client.loop()`, and between loop turns pumps the outbox with a bounded in-flight window
(`max_inflight` QoS 1 publishes awaiting PUBACK).  Every connection is a fresh paho client with a clean
session; the outbox, not paho's memory, is the source of truth, so a reconnect (or a process restart)
resends every undelivered row in seq order, with the same bytes and so the same event id.

Throughput (`facelock bench mqtt`): the client shares the interpreter lock with the thread that puts events,
so what costs is every hand-over of that lock, not the work.  Rows put in this process reach the pump in
memory (`_fresh`), never through a query; a put wakes the pump only when nothing is in flight (otherwise the
PUBACKs wake it and it takes every fresh row at once); a pump's publishes leave in a few TLS writes and
reads are buffered (`paho_io.BatchedIOClient`); and in the steady state the network thread never waits
for the outbox lock (receipted deletes and polls of the disk are retried later when a put holds it).

PUBACK marks a row published; the monitor's receipt (`facelock/<device>/receipt`) deletes it.  A broker
killed between its PUBACK and its delivery to the monitor therefore loses nothing: the row is resent on
the next connection, or after `receipt_timeout_s`, and the monitor de-duplicates by id.

Commands are verified on the I/O thread (signature, freshness, nonce) and run on a worker thread so a
slow door action never stalls the network.  Rejections are published on `cmd/result` and stored as
`command_rejected` events.

Other parts of the lock may share the connection (same identity, same ACL): `subscriptions` maps a topic
to a handler run on its own worker thread (the door agent's policy bundles, firmware.fleet.lockhook: a
large bundle is verified and applied without stalling events or commands), `on_connected` runs there after
every (re)connection, and `publish()` queues a message for the I/O thread.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware.errors import FaceLockError
from firmware.telemetry import topics
from firmware.telemetry.backoff import Backoff
from firmware.telemetry.commands import Command, CommandVerifier, NonceStore, load_public_key
from firmware.telemetry.config import MqttConfig
from firmware.telemetry.errors import CommandRejected, TelemetryError
from firmware.telemetry.events import make_event
from firmware.telemetry.ha_discovery import DOOR_STATES, LOCK_STATES
from firmware.telemetry.outbox import Outbox, OutboxRow
from firmware.telemetry.paho_io import BatchedIOClient
from firmware.telemetry.replay_guard import device_clock
from firmware.telemetry.tls import client_context

log = logging.getLogger("facelock.telemetry")

CommandHandler = Callable[[Command], Any]
RECEIPT_MAX_BYTES = 256 * 1024
FRESH_MAX = 10_000
ACK_BACKLOG_MAX = 50_000  # receipted rows awaiting their delete beyond this: delete them, waiting if need be


class TelemetryClient:
    """`start()` / `stop()`; events go in through `outbox.put`, commands come out through `on_command`."""

    def __init__(
        self,
        config: MqttConfig,
        outbox: Outbox,
        on_command: CommandHandler | None = None,
        *,
        nonces: NonceStore | None = None,
        clock: Callable[[], float] = device_clock,
        subscriptions: Mapping[str, Callable[[bytes], None]] | None = None,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        config.check()
        self.config = config
        self.device = config.device_id
        self.outbox = outbox
        self.on_command = on_command
        self._tls = client_context(config.ca_file, config.cert_file, config.key_file, config.tls_min_version)
        self._verifier = CommandVerifier(
            config.device_id,
            load_public_key(config.management_pubkey_file),
            nonces or NonceStore(Path(outbox.path).with_name(Path(outbox.path).stem + "-nonces.db")),
            max_age_s=config.command_max_age_s,
            clock=clock,
        )
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._commands: queue.Queue[Command | None] = queue.Queue()
        self._subs = dict(subscriptions or {})
        self._on_connected = on_connected
        self._sub_worker: threading.Thread | None = None
        self._sub_queue: queue.Queue[tuple[str | None, bytes] | None] = queue.Queue()
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._backoff = Backoff(config.backoff_min_s, config.backoff_max_s)
        # Per-connection state, touched only by the I/O thread.
        self._inflight: dict[int, str] = {}
        self._inflight_ids: dict[str, int] = {}
        self._cursor = 0
        self._acked: list[tuple[int, str]] = []
        # PUBACKed, awaiting the monitor's receipt: id -> (monotonic PUBACK time, seq).  In memory only: a
        # restart resends every row anyway, and this saves a disk write per event.
        self._awaiting: dict[str, tuple[float, int]] = {}
        self._last_stale_check = 0.0
        self._resend_ranges: list[tuple[int, int]] = []  # seq ranges the monitor asked for (I/O thread)
        self._last_disk_poll = 0.0
        self._disk_idle = False
        self._last_ack_flush = 0.0
        self._last_eviction_check = 0.0
        # Cross-thread mailboxes (drained by the I/O thread).
        self._lock = threading.Lock()
        self._outgoing: list[tuple[str, bytes, int, bool]] = []
        self._state: dict[str, Any] = {"lock": "LOCKED", "door": "unknown", "tamper": False, "lockdown": False,
                                       "last_event": None}
        self._state_dirty = True
        self._wake_pending = False
        self.stats: dict[str, int] = {
            "connects": 0, "connect_failures": 0, "disconnects": 0, "published": 0, "pubacks": 0,
            "puback_errors": 0, "receipts": 0, "receipts_malformed": 0, "commands_accepted": 0,
            "commands_rejected": 0,
        }
        # Rows just committed by `put`, handed over in memory so the publisher need not read them back.
        # Only a hint: whenever it is not contiguous with what was sent, the publisher reads the outbox.
        self._fresh: deque[OutboxRow] = deque(maxlen=FRESH_MAX)
        outbox.add_listener(self._on_put)

    # -- public ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise TelemetryError("telemetry client already started")
        self._stop.clear()
        self._worker = threading.Thread(target=self._run_commands, name="facelock-cmd", daemon=True)
        self._worker.start()
        if self._subs or self._on_connected is not None:
            self._sub_worker = threading.Thread(target=self._run_subscriptions, name="facelock-sub", daemon=True)
            self._sub_worker.start()
        self._thread = threading.Thread(target=self._run, name="facelock-mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Say "offline" (retained), disconnect cleanly and join the threads."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._worker is not None:
            self._commands.put(None)
            self._worker.join(timeout)
            self._worker = None
        if self._sub_worker is not None:
            self._sub_queue.put(None)
            self._sub_worker.join(timeout)
            self._sub_worker = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Queue one message for the I/O thread (sent on the next pump while connected; the broker's ACL
        decides what this identity may publish)."""
        with self._lock:
            self._outgoing.append((topic, bytes(payload), qos, retain))
        self._wake()

    def publish_state(
        self,
        lock: str | None = None,
        door: str | None = None,
        tamper: bool | None = None,
        lockdown: bool | None = None,
        last_event: str | None = None,
    ) -> None:
        """Update the retained `facelock/<device>/state` (only the given fields change)."""
        if lock is not None and lock not in LOCK_STATES:
            raise TelemetryError(f"lock state must be one of {LOCK_STATES}")
        if door is not None and door not in DOOR_STATES:
            raise TelemetryError(f"door state must be one of {DOOR_STATES}")
        with self._lock:
            for k, v in (("lock", lock), ("door", door), ("tamper", tamper), ("lockdown", lockdown),
                         ("last_event", last_event)):
                if v is not None:
                    self._state[k] = v
            self._state_dirty = True
        self._wake()

    # -- I/O thread ------------------------------------------------------------------------
    def _on_put(self, row: OutboxRow) -> None:
        self._fresh.append(row)
        # With events in flight, their PUBACKs wake the pump soon enough and it takes every fresh row at
        # once; waking it per put would only trade the interpreter lock back and forth per event.
        if not self._inflight:
            self._wake()

    def _wake(self) -> None:
        # Break the I/O thread out of select() at once.  paho keeps a socket pair for exactly this; if a
        # future paho drops it, the loop's short timeout still bounds the delay.  One byte per pump is
        # enough: a burst of puts must not pay a syscall (and a GIL hand-off) each.
        if self._wake_pending:
            return
        self._wake_pending = True
        client = self._client
        w = getattr(client, "_sockpairW", None) if client is not None else None
        if w is not None:
            try:
                w.send(b"\0")
            except OSError:
                pass

    def _new_client(self) -> BatchedIOClient:
        c = BatchedIOClient(CallbackAPIVersion.VERSION2, client_id=self.device, protocol=mqtt.MQTTv5)
        c.tls_set_context(self._tls)
        # The window is enforced here (`_pump`), per event; paho's own limit would only add an O(window)
        # scan of its message table on every PUBACK, so it is switched off (0 = unlimited).
        c.max_inflight_messages_set(0)
        c.max_queued_messages_set(0)
        c.will_set(topics.availability(self.device), b"offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _run(self) -> None:
        while not self._stop.is_set():
            client = self._new_client()
            self._reset_connection_state()
            try:
                client.connect(self.config.host, self.config.port, keepalive=self.config.keepalive_s,
                               clean_start=True)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self.stats["connect_failures"] += 1
                log.info("mqtt connect to %s:%s failed: %s", self.config.host, self.config.port,
                         exc.__class__.__name__)
                self._sleep_backoff()
                continue
            self._client = client
            try:
                while not self._stop.is_set():
                    rc = client.loop(timeout=self.config.poll_interval_s)
                    if rc != mqtt.MQTT_ERR_SUCCESS:
                        break
                    if self._connected.is_set():
                        with client.batch():  # this pump's publishes leave in a few TLS writes
                            self._pump(client)
                if self._stop.is_set() and self._connected.is_set():
                    self._goodbye(client)
            except Exception:  # noqa: BLE001 - the I/O thread must survive anything and reconnect
                log.exception("mqtt I/O loop failed; reconnecting")
            finally:
                self._flush_acks(force=True)
                self._connected.clear()
                self._client = None
                try:
                    client.disconnect()
                except Exception:  # noqa: BLE001
                    pass
                try:
                    client.loop(timeout=0)
                except Exception:  # noqa: BLE001
                    pass
            if not self._stop.is_set():
                self.stats["disconnects"] += 1
                self._sleep_backoff()

    def _sleep_backoff(self) -> None:
        self._stop.wait(self._backoff.next_delay())

    def _reset_connection_state(self) -> None:
        self._inflight.clear()
        self._inflight_ids.clear()
        self._resend_ranges.clear()
        self._cursor = 0
        self._acked.clear()
        self._awaiting.clear()
        self._disk_idle = False

    def _goodbye(self, client: mqtt.Client) -> None:
        info = client.publish(topics.availability(self.device), b"offline", qos=1, retain=True)
        deadline = time.monotonic() + 2.0
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt broker refused the connection: %s", reason_code)
            return
        self.stats["connects"] += 1
        self._backoff.reset()
        no_retained = SubscribeOptions(qos=1, noLocal=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        client.subscribe([(topics.command_filter(self.device), no_retained),
                          (topics.receipt(self.device), SubscribeOptions(qos=1, noLocal=True))]
                         + [(t, SubscribeOptions(qos=1, noLocal=True)) for t in self._subs])
        # No Home Assistant discovery from here: the broker refuses devices every homeassistant/ topic (a
        # device could otherwise point an entity's command_topic at another door); the monitor publishes it.
        client.publish(topics.availability(self.device), b"online", qos=1, retain=True)
        with self._lock:
            self._state_dirty = True
        self._connected.set()
        if self._on_connected is not None:
            self._sub_queue.put((None, b""))
        log.info("mqtt connected to %s:%s as %s", self.config.host, self.config.port, self.device)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            log.info("mqtt disconnected: %s", reason_code)
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        event_id = self._inflight.pop(mid, None)
        if event_id is None:
            return
        seq = self._inflight_ids.pop(event_id, 0)
        if reason_code.is_failure:
            # Refused (e.g. by the ACL): keep the row; it is tried again on the next connection.
            self.stats["puback_errors"] += 1
            log.warning("broker refused event %s: %s", event_id, reason_code)
            return
        self.stats["pubacks"] += 1
        if self.config.require_receipt:
            self._awaiting[event_id] = (time.monotonic(), seq)
        else:
            self._acked.append((seq, event_id))

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        if topic == topics.receipt(self.device):
            self._handle_receipt(msg.payload)
            return
        if topic == topics.command_result(self.device):
            return  # our own result echoed back (noLocal should prevent it)
        if topic in self._subs:
            self._sub_queue.put((topic, bytes(msg.payload)))
            return
        self._handle_command(topic, msg.payload, bool(msg.retain))

    def _handle_receipt(self, payload: bytes) -> None:
        """`{"v": 1, "events": [[seq, id], ...]}`: the monitor has these on disk; delete them here."""
        try:
            if len(payload) > RECEIPT_MAX_BYTES:
                raise ValueError("too large")
            d = json.loads(payload)
            entries = d["events"] if isinstance(d, dict) and d.get("v") == 1 else None
            if not isinstance(entries, list) or not all(
                    isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) and isinstance(e[1], str)
                    for e in entries):
                raise ValueError("bad entries")
            resend = d.get("resend", [])
            if not isinstance(resend, list) or len(resend) > 64 or not all(
                    isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                for x in r) and 1 <= r[0] <= r[1] for r in resend):
                raise ValueError("bad resend ranges")
        except (ValueError, KeyError, UnicodeDecodeError, RecursionError):
            self.stats["receipts_malformed"] += 1
            log.warning("malformed receipt ignored (%d bytes)", len(payload))
            return
        if resend:
            # The monitor found a hole in our seq (an event the broker acknowledged never reached it): send
            # those rows again now rather than after receipt_timeout_s.
            self.stats["resend_requests"] = self.stats.get("resend_requests", 0) + 1
            self._resend_ranges.extend((lo, hi) for lo, hi in resend)
        self.stats["receipts"] += 1
        for _, event_id in entries:
            self._awaiting.pop(event_id, None)
        # Deleted in batches by _flush_acks: fewer transactions contending with `put` for the database;
        # a crash before the delete only means a resend the monitor de-duplicates.
        self._acked.extend((s, i) for s, i in entries)

    def _handle_command(self, topic: str, payload: bytes, retain: bool) -> None:
        try:
            command = self._verifier.verify(topic, payload, retain)
        except CommandRejected as exc:
            self.stats["commands_rejected"] += 1
            name = topic.rsplit("/", 1)[-1][:40]
            log.warning("command on %s rejected: %s", topic[:120], exc.reason)
            self._result(name, None, ok=False, detail=exc.reason)
            self._store_event("command_rejected", reason=exc.reason, command=name)
            return
        except Exception:  # noqa: BLE001 - e.g. the nonce store failing: refuse, never crash
            self.stats["commands_rejected"] += 1
            log.exception("command verification failed")
            self._store_event("command_rejected", reason="internal_error")
            return
        self.stats["commands_accepted"] += 1
        self._commands.put(command)

    def _run_commands(self) -> None:
        while True:
            command = self._commands.get()
            if command is None:
                return
            ok, detail = True, "ok"
            try:
                out = self.on_command(command) if self.on_command else None
                if out is False:
                    ok, detail = False, "failed"
                elif isinstance(out, str):
                    detail = out[:200]
            except FaceLockError as exc:
                ok, detail = False, str(exc)[:200]
            except Exception as exc:  # noqa: BLE001 - a handler bug must still produce a result
                log.exception("command handler failed")
                ok, detail = False, f"error: {exc.__class__.__name__}"
            self._result(command.name, command.nonce, ok=ok, detail=detail)
            self._store_event("command_result", reason="ok" if ok else "failed", command=command.name,
                              ok=ok, nonce=command.nonce[:32])

    def _run_subscriptions(self) -> None:
        while True:
            item = self._sub_queue.get()
            if item is None:
                return
            topic, payload = item
            try:
                if topic is None:
                    if self._on_connected is not None:
                        self._on_connected()
                else:
                    self._subs[topic](payload)
            except Exception:  # noqa: BLE001 - a handler bug must not end the worker
                log.exception("handler for %s failed", (topic or "connect")[:120])

    def _store_event(self, type_: str, **fields: Any) -> None:
        try:
            self.outbox.put(make_event(self.device, type_, **fields))
        except FaceLockError:
            log.exception("could not store %s event", type_)

    def _result(self, name: str, nonce: str | None, *, ok: bool, detail: str) -> None:
        body = {"v": 1, "name": name, "nonce": nonce, "ok": ok, "detail": detail, "ts": self._clock()}
        with self._lock:
            self._outgoing.append((topics.command_result(self.device),
                                   json.dumps(body, separators=(",", ":")).encode(), 1, False))
        self._wake()

    def _pump(self, client: mqtt.Client) -> None:
        self._wake_pending = False  # before reading the outbox, so a put after this wakes us again
        self._flush_acks()
        with self._lock:
            outgoing, self._outgoing = self._outgoing, []
            state = dict(self._state) if self._state_dirty else None
            self._state_dirty = False
        for topic, payload, qos, retain in outgoing:
            client.publish(topic, payload, qos=qos, retain=retain)
        if state is not None:
            state["v"] = 1
            state["ts"] = self._clock()
            client.publish(topics.state(self.device), json.dumps(state, separators=(",", ":")).encode(),
                           qos=1, retain=True)
        now = time.monotonic()
        if now - self._last_eviction_check > 5.0:
            self._last_eviction_check = now
            self.outbox.put_eviction_report(self.device)
        space = self.config.max_inflight - len(self._inflight)
        while space > 0:
            rows = self._next_rows(space)
            if not rows:
                break
            for row in rows:
                self._send(client, row.id, row.type, row.payload, row.seq)
                self._cursor = row.seq
            space -= len(rows)
        if self._resend_ranges:
            self._resend_requested(client)
        if self.config.require_receipt and now - self._last_stale_check > min(1.0, self.config.receipt_timeout_s / 4):
            self._last_stale_check = now
            self._resend_unreceipted(client, now)

    def _next_rows(self, limit: int) -> list[OutboxRow]:
        """The next rows after the cursor, in seq order: from memory when contiguous, else from disk."""
        fresh = self._fresh
        while fresh and fresh[0].seq <= self._cursor:
            fresh.popleft()
        if fresh and fresh[0].seq == self._cursor + 1:
            rows = []
            expect = self._cursor + 1
            while fresh and len(rows) < limit and fresh[0].seq == expect:
                rows.append(fresh.popleft())
                expect += 1
            return rows
        if not fresh and self._disk_idle:
            # Every row put in this process comes through `_fresh`; the disk only holds news when another
            # process puts (or rows predate this connection).  Once a look at the disk found nothing,
            # look again at most every poll interval, and never wait for the outbox lock: a thread of
            # this process putting events holds it while it commits, and the lock is not fair, so
            # waiting would stall the network behind the producer (that producer's rows come through
            # `_fresh` anyway).
            now = time.monotonic()
            if now - self._last_disk_poll < self.config.poll_interval_s:
                return []
            self._last_disk_poll = now
            polled = self.outbox.pending_nowait(after_seq=self._cursor, limit=limit)
            if polled is None:
                return []
            self._disk_idle = not polled
            return polled
        rows = self.outbox.pending(after_seq=self._cursor, limit=limit)
        self._disk_idle = not rows
        return rows

    def _resend_requested(self, client: mqtt.Client) -> None:
        """Publish again the rows of the seq ranges the monitor reported missing (those still here)."""
        ranges, self._resend_ranges = self._resend_ranges, []
        for lo, hi in ranges:
            after = lo - 1
            while after < hi:
                rows = [r for r in self.outbox.pending(after_seq=after, limit=min(500, hi - after)) if r.seq <= hi]
                if not rows:
                    break
                for row in rows:
                    self._awaiting.pop(row.id, None)
                    self._send(client, row.id, row.type, row.payload, row.seq)
                    self.stats["resent_on_request"] = self.stats.get("resent_on_request", 0) + 1
                after = rows[-1].seq

    def _resend_unreceipted(self, client: mqtt.Client, now: float) -> None:
        """Publish again, in seq order, events PUBACKed long ago whose receipt never came."""
        space = self.config.max_inflight - len(self._inflight)
        limit = now - self.config.receipt_timeout_s
        stale = sorted((seq, i) for i, (t, seq) in self._awaiting.items() if t < limit)[:max(space, 0)]
        if not stale:
            return
        rows = {r.id: r for r in self.outbox.rows_by_seq([seq for seq, _ in stale])}
        for _, event_id in stale:
            del self._awaiting[event_id]
            row = rows.get(event_id)
            if row is not None:  # else: receipted and deleted meanwhile
                self._send(client, row.id, row.type, row.payload, row.seq)

    def _send(self, client: mqtt.Client, event_id: str, type_: str, payload: bytes, seq: int) -> None:
        info = client.publish(topics.event(self.device, type_), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise TelemetryError(f"publish failed: {info.rc}")
        self._inflight[info.mid] = event_id
        self._inflight_ids[event_id] = seq
        self.stats["published"] += 1

    def _flush_acks(self, force: bool = False) -> None:
        if not self._acked:
            return
        now = time.monotonic()
        if not force and len(self._acked) < 5000 and now - self._last_ack_flush < 0.2:
            return
        if force or len(self._acked) > ACK_BACKLOG_MAX:
            acked, self._acked = self._acked, []
            self.outbox.ack_seq(acked)
            self._last_ack_flush = now
            return
        # Without waiting for a producer busy in `put`: whatever is left is tried on the next pump.
        done = self.outbox.ack_seq_nowait(self._acked)
        del self._acked[:done]
        if not self._acked:
            self._last_ack_flush = now
