"""The monitor's MQTT side: a shared-subscription consumer that stores, alerts and sends receipts.

Subscriptions (MQTT v5 shared, so N monitor processes in one group split the load):
    $share/<group>/facelock/+/event/#        events -> store (dedup by id) -> rules -> notifications
    $share/<group>/facelock/+/availability   online/offline -> the offline rule
    $share/<group>/facelock/+/ha/set         (with the HA bridge) HA LOCK/UNLOCK -> scoped signed command

The group is a secret (derived from the monitor's key unless configured), and the broker refuses `$share`
to every identity but the monitor's: a device can no longer join the group and swallow events.  Should an
event go missing anyway, the store tracks each device's contiguous `seq`; a gap open for `gap_grace_s`
raises `events_missing` and the device is asked (on its receipt topic, `"resend": [[lo, hi], ...]`) to
publish those events again; after `gap_resend_tries` the gap is closed as lost (the alert stays).

Home Assistant discovery is published here, retained, for every device the monitor knows (seen online on
its own authenticated availability topic, or granted to the HA bridge): devices may not publish it.

Batching: messages are decoded on arrival (I/O thread) and handed, every `batch_wait_s` or `batch_max`
messages, to a writer thread that owns the store and the rules: it commits the batch (fsync), runs the
rules, notifies, and only then hands back a receipt (`facelock/<device>/receipt`, the stored seq/ids) for
the I/O thread to publish, so a device deletes an event only once it is on the monitor's disk, and the
network keeps flowing while the disk syncs.  The hand-over queue is bounded: a slow disk slows intake.  Malformed payloads (not JSON, wrong types,
too big, unknown version, topic and payload disagreeing on device or type) are counted in the store,
logged briefly, and dropped; they never stop the loop.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware.telemetry import topics
from firmware.telemetry.backoff import Backoff
from firmware.telemetry.errors import EventDecodeError, UnknownEventVersionError
from firmware.telemetry.events import Event, decode
from firmware.telemetry.paho_io import BatchedIOClient
from firmware.telemetry.tls import client_context
from provisioning.monitor.config import MonitorConfig
from provisioning.monitor.ha_bridge import HaBridge, discovery_for
from provisioning.monitor.rules import Alert, AlertRules
from provisioning.monitor.sanitize import printable
from provisioning.monitor.store import MonitorStore

log = logging.getLogger("facelock.monitor")
RECEIPT_CHUNK = 500


def receipt_body(entries: list[tuple[int, str]]) -> bytes:
    """`{"v":1,"events":[[seq,"id"],...]}`, the same bytes as json.dumps with compact separators.

    Formatted directly (json.dumps was 9% of the store thread at 1,000 doors, one call per device per
    batch): every entry comes from a decoded event, whose seq is an int and whose id a canonical UUID
    (firmware.telemetry.events validates both), so nothing in it needs escaping."""
    return ('{"v":1,"events":[' + ",".join([f'[{seq},"{eid}"]' for seq, eid in entries]) + "]}").encode()


class MonitorService:
    def __init__(self, config: MonitorConfig, store: MonitorStore, notifiers: list | None = None,
                 rules: AlertRules | None = None, clock: Callable[[], float] = time.time) -> None:
        config.check()
        self.config = config
        self.store = store
        self.notifiers = list(notifiers or [])
        self.rules = rules or AlertRules(config.denied_threshold, config.denied_window_s, config.offline_after_s)
        if hasattr(self.rules, "audit") and hasattr(store, "heartbeat_data"):
            self.rules.audit.seed(store.heartbeat_data())  # heads published before this start: none forgotten
        self.clock = clock
        self._tls = client_context(config.ca_file, config.cert_file, config.key_file)
        self._group = config.effective_group()
        self._bridge: HaBridge | None = None
        if config.ha_key_file:
            self._bridge = HaBridge.from_files(config.ha_key_file, config.ha_grant_file, config.ha_unlock_allowed,
                                               config.ha_rate_per_min)
        self._discovered: set[str] = set()
        # Seq-gap tracking needs the store's seq table (MonitorStore has it; a store without it, e.g. the
        # centre's SQL store, says so once at start instead of pretending).
        self._tracks_seqs = all(hasattr(store, m) for m in ("known_devices", "advance_seqs", "gaps_due",
                                                            "claim_gap_alert", "gap_tried", "close_gap"))
        if not self._tracks_seqs:
            log.warning("%s does not track per-device seq gaps: no events_missing alerts, no resend requests",
                        type(store).__name__)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._batch: list[tuple[Event, bytes]] = []
        self._batch_started = 0.0
        self._last_tick = 0.0
        self._backoff = Backoff(config.backoff_min_s, config.backoff_max_s)
        self.stats: dict[str, int] = defaultdict(int)
        # I/O thread -> writer thread (tagged work items); writer -> I/O thread (receipts to publish).
        self._work: queue.Queue[tuple | None] = queue.Queue(maxsize=8)
        self._receipts: deque[tuple[str, bytes]] = deque()
        self._writer: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="facelock-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def run(self) -> None:
        """Connect, consume, reconnect with backoff, until stop()."""
        self._writer = threading.Thread(target=self._write_loop, name="facelock-monitor-store", daemon=True)
        self._writer.start()
        try:
            self._run_network()
        finally:
            self._work.put(None)
            self._writer.join(30)

    def _run_network(self) -> None:
        while not self._stop.is_set():
            # Block reads: a whole TLS record of events per read, not three reads and a select() each.
            client = BatchedIOClient(CallbackAPIVersion.VERSION2, client_id=self.config.effective_client_id(),
                                     protocol=mqtt.MQTTv5)
            client.tls_set_context(self._tls)
            # No in-flight cap (receipts are QoS 0 and raw; HA discovery is QoS 1): with a cap paho walks
            # every message awaiting a PUBACK on each PUBACK that arrives.
            client.max_inflight_messages_set(0)
            client.max_queued_messages_set(0)
            client.on_connect = self._on_connect
            client.on_message = self._on_message
            client.on_disconnect = lambda *a: self._connected.clear()
            try:
                client.connect(self.config.host, self.config.port, keepalive=30, clean_start=True)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self.stats["connect_failures"] += 1
                log.info("monitor connect failed: %s", exc.__class__.__name__)
                self._stop.wait(self._backoff.next_delay())
                continue
            try:
                while not self._stop.is_set():
                    wait = self.config.batch_wait_s if (self._batch or self._receipts) else 0.2
                    if client.loop(timeout=wait) != mqtt.MQTT_ERR_SUCCESS:
                        break
                    self._maybe_flush()
                    self._send_receipts(client)
                    self._tick()
                self._flush()
                self._work.join()  # everything handed over is stored; send the last receipts
                self._send_receipts(client)
                for _ in range(5):
                    client.loop(0.02)
            except Exception:  # noqa: BLE001 - keep consuming whatever happens
                log.exception("monitor loop failed; reconnecting")
            finally:
                # A batch still being decoded is dropped, not receipted: the devices resend it.
                self._batch.clear()
                self._connected.clear()
                try:
                    client.disconnect()
                except Exception:  # noqa: BLE001
                    pass
            if not self._stop.is_set():
                self._stop.wait(self._backoff.next_delay())

    # -- callbacks ---------------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the monitor: %s", reason_code)
            return
        self._backoff.reset()
        g = self._group
        # QoS 0 on the broker -> monitor leg: delivery is guaranteed end to end by the devices' outbox
        # (an event without a receipt is published again), so a per-message PUBACK here would only cost
        # CPU on the broker and the monitor.  Availability keeps QoS 1 (no receipt covers it).
        subs = [(f"$share/{g}/facelock/+/event/#", 0), (f"$share/{g}/facelock/+/availability", 1)]
        if self._bridge is not None:
            subs.append((f"$share/{g}/facelock/+/ha/set", 1))
        client.subscribe(subs)
        self._discovered.clear()
        stored = self.store.known_devices() if self._tracks_seqs else []
        known = set(stored) | set(self._bridge.devices() if self._bridge else ())
        self._publish_discovery(client, sorted(known))
        self._connected.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        try:
            if len(parts) == 4 and parts[0] == topics.ROOT and parts[2] == "event":
                self._on_event(parts[1], parts[3], msg.payload)
            elif len(parts) == 3 and parts[0] == topics.ROOT and parts[2] == "availability":
                self._on_availability(client, parts[1], msg.payload)
            elif len(parts) == 4 and parts[2:] == ["ha", "set"] and self._bridge is not None:
                self._on_ha_set(client, parts[1], msg.payload, bool(msg.retain))
        except Exception:  # noqa: BLE001 - one bad message must never stop the monitor
            self._malformed("internal", msg.topic, len(msg.payload))
            log.exception("monitor failed on a message")

    def _on_event(self, device: str, type_: str, payload: bytes) -> None:
        try:
            event = decode(payload)
        except UnknownEventVersionError:
            self._malformed("version", device, len(payload))
            return
        except EventDecodeError as exc:
            self._malformed("decode", device, len(payload), str(exc))
            return
        if event.device != device or event.type != type_:
            # The ACL authenticates the topic, not the payload: a device naming another one is refused.
            self._malformed("topic_mismatch", device, len(payload))
            return
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append((event, bytes(payload)))

    def _on_availability(self, client: mqtt.Client, device: str, payload: bytes) -> None:
        status = payload.decode(errors="replace")
        if not topics.valid_device_id(device) or topics.is_reserved(device) or status not in ("online", "offline"):
            self._malformed("availability", device, len(payload))
            return
        if status == "online":
            self._publish_discovery(client, [device])
        self._work.put(("availability", device, status, self.clock()))

    def _publish_discovery(self, client: mqtt.Client, devices: list[str]) -> None:
        """Retained HA discovery, built here (command_topic = the device's own ha/set), once per session."""
        if not self.config.ha_discovery:
            return
        new = [d for d in devices if d not in self._discovered]
        for topic, payload in discovery_for(new):
            client.publish(topic, payload, qos=1, retain=True)
        self._discovered.update(new)

    def _on_ha_set(self, client: mqtt.Client, device: str, payload: bytes, retain: bool) -> None:
        assert self._bridge is not None
        d = self._bridge.decide(device, payload, retain, self.clock())
        if d.ok:
            client.publish(d.topic, d.payload, qos=1, retain=False)
            self.stats["ha_commands"] += 1
            return
        if d.reason == "malformed":
            self._malformed("ha_set", device, len(payload))
            return
        self.stats["ha_refused"] += 1
        log.warning("HA %s for %s refused: %s", d.command, printable(device, 80), d.reason)
        self._work.put(("alert", Alert("ha_refused", device, self.clock(), f"{d.command} refused: {d.reason}")))

    def _malformed(self, kind: str, where: str, size: int, why: str = "") -> None:
        self.stats["malformed"] += 1
        self._work.put(("malformed", kind))
        log.warning("malformed %s payload from %s dropped (%d bytes)%s", kind, printable(where, 80), size,
                    f": {printable(why, 160)}" if why else "")

    # -- batching (I/O thread) -----------------------------------------------------------------
    def _maybe_flush(self) -> None:
        if self._batch and (len(self._batch) >= self.config.batch_max
                            or time.monotonic() - self._batch_started >= self.config.batch_wait_s):
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        self._work.put(("events", batch))

    def _send_receipts(self, client: BatchedIOClient) -> None:
        """Receipts go at QoS 0.  QoS 1 would add nothing: the monitor and the devices both connect with a
        clean start and a fresh client, so a receipt in flight when a connection drops is lost at either
        QoS; on a connection that stays up both arrive.  A lost receipt costs one resend after the
        device's receipt timeout, which the store de-duplicates and receipts again.  At QoS 0 there is no
        PUBACK on either leg (monitor <- broker, broker <- device) and no in-flight bookkeeping."""
        if not self._receipts:
            return
        with client.batch():
            while self._receipts:
                topic, body = self._receipts.popleft()
                client.send_qos0(topic, body)

    def _tick(self) -> None:
        now = self.clock()
        if now - self._last_tick >= 1.0:
            self._last_tick = now
            try:
                self._work.put_nowait(("tick", now))
            except queue.Full:
                pass

    # -- the writer thread: store, rules, notifications, receipts --------------------------------
    def _write_loop(self) -> None:
        while True:
            item = self._work.get()
            try:
                if item is None:
                    return
                self._handle_work(item)
            except Exception:  # noqa: BLE001 - the store failing must not kill the monitor
                log.exception("monitor store/rules failed; the devices will resend what was not receipted")
            finally:
                self._work.task_done()

    def _handle_work(self, item: tuple) -> None:
        kind = item[0]
        if kind == "events":
            self._store_batch(item[1])
        elif kind == "availability":
            _, device, status, now = item
            self.store.set_availability(device, status, now)
            self._emit(self.rules.on_availability(device, status, now))
        elif kind == "malformed":
            self.store.count_malformed(item[1])
        elif kind == "tick":
            self._emit(self.rules.tick(item[1]))
            if self._tracks_seqs:
                self._check_gaps(item[1])
        elif kind == "alert":
            self._emit([item[1]])

    def _store_batch(self, batch: list[tuple[Event, bytes]]) -> None:
        firsts: dict[str, int] = {}
        for event, _ in batch:
            if event.seq is not None:
                firsts[event.device] = min(firsts.get(event.device, event.seq), event.seq)
        if self._tracks_seqs and hasattr(self.store, "store_batch"):  # both in one transaction (the centre)
            new = self.store.store_batch(batch, firsts, self.clock())
        else:
            new = self.store.insert_events(batch)
            if self._tracks_seqs:
                self.store.advance_seqs(firsts, self.clock())
        self.stats["stored"] += len(new)
        self.stats["duplicates"] += len(batch) - len(new)
        alerts: list[Alert] = []
        for event in new:
            alerts.extend(self.rules.on_event(event))
        self._emit(alerts)
        if self.config.receipts:
            ids: dict[str, list[tuple[int, str]]] = defaultdict(list)
            for event, _ in batch:
                ids[event.device].append((event.seq, event.id))
            for device, device_ids in ids.items():
                for i in range(0, len(device_ids), RECEIPT_CHUNK):
                    self._receipts.append((topics.receipt(device), receipt_body(device_ids[i:i + RECEIPT_CHUNK])))

    def _check_gaps(self, now: float) -> None:
        """Per-device seq gaps open for gap_grace_s: alert once, ask the device to resend, give up after N."""
        for device, ranges, tries in self.store.gaps_due(now, self.config.gap_grace_s):
            missing = sum(hi - lo + 1 for lo, hi in ranges)
            span = ", ".join(f"{lo}-{hi}" if hi > lo else f"{lo}" for lo, hi in ranges[:4])
            if tries == 0 and self.store.claim_gap_alert(device):
                self._emit([Alert("events_missing", device, now, f"{missing} events missing (seq {span})")])
            if tries >= self.config.gap_resend_tries:
                self.store.close_gap(device)
                self.stats["gaps_lost"] += 1
                log.warning("events seq %s of %s never came; gap closed as lost", span, printable(device, 80))
                continue
            self.store.gap_tried(device, now)
            self.stats["resend_requests"] += 1
            body = json.dumps({"v": 1, "events": [], "resend": ranges}, separators=(",", ":"))
            self._receipts.append((topics.receipt(device), body.encode()))

    def _emit(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        self.store.insert_alerts(alerts)
        self.stats["alerts"] += len(alerts)
        for alert in alerts:
            for n in self.notifiers:
                try:
                    n.notify(alert)
                except Exception:  # noqa: BLE001
                    log.exception("notifier failed")
