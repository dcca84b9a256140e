"""The door agent: receives the centre's policy bundle over MQTT v5 / mutual TLS, applies it, acks it.

Its own MQTT session (client id `<door>-fleet`, the door's certificate) so a large bundle never delays
the event outbox.  The bundle topic is retained: a door that was offline during a push gets the latest
bundle as soon as it reconnects; the centre also re-sends until the door acknowledges the version.
Every message is acknowledged with what the door now runs:

    {"v": 1, "door": "<id>", "version": <running>, "status": "applied" | "running" | "refused",
     "offered": <version offered or null>, "reason": "<short cause>" | null}

A refused bundle (bad signature, another door's, a rollback, a template that does not open) changes
nothing; the door keeps running its last good bundle.  `on_applied(bundle, gallery)` is the hook into the
lock's runtime (its site API); it runs after the new bundle is durable on disk.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware.fleet import topics
from firmware.fleet.bundle import Bundle
from firmware.fleet.errors import BundleRejected
from firmware.fleet.store import BundleStore
from firmware.telemetry.config import MqttConfig
from firmware.telemetry.tls import client_context

log = logging.getLogger("facelock.fleet")

OnApplied = Callable[[Bundle, dict], None]


class DoorAgent:
    def __init__(self, config: MqttConfig, store: BundleStore, on_applied: OnApplied | None = None) -> None:
        self.config = config
        self.store = store
        self.on_applied = on_applied
        self.stats = {"applied": 0, "refused": 0, "resent": 0}
        self.last_refusal: str | None = None
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{config.device_id}-fleet",
                                   protocol=mqtt.MQTTv5)
        self._client.tls_set_context(client_context(config.ca_file, config.cert_file, config.key_file,
                                                    config.tls_min_version))
        self._client.reconnect_delay_set(config.backoff_min_s, config.backoff_max_s)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *a: self._connected.clear()
        self._client.on_message = self._on_message

    def start(self) -> None:
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the door agent: %s", reason_code)
            return
        client.subscribe(topics.policy(self.config.device_id), qos=1)
        self._connected.set()
        self._ack("running", None, None)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != topics.policy(self.config.device_id):
            return
        with self._lock:
            try:
                bundle, gallery, changed = self.store.apply(bytes(msg.payload))
            except BundleRejected as exc:
                self.stats["refused"] += 1
                self.last_refusal = exc.reason
                log.warning("policy bundle refused: %s", exc.reason)
                self._ack("refused", None, exc.reason)
                return
            except Exception:  # noqa: BLE001 - a broken bundle must never stop the agent
                self.stats["refused"] += 1
                self.last_refusal = "internal"
                log.exception("policy bundle failed")
                self._ack("refused", None, "internal")
                return
            if changed:
                self.stats["applied"] += 1
                if self.on_applied is not None:
                    self.on_applied(bundle, gallery)
            else:
                self.stats["resent"] += 1
            self._ack("applied", bundle.version, None)

    def _ack(self, status: str, offered: int | None, reason: str | None) -> None:
        try:
            running = self.store.current_version()
        except BundleRejected:
            running = 0  # the file on disk no longer verifies: report nothing running
        body = {"v": 1, "door": self.config.device_id, "version": running, "status": status,
                "offered": offered, "reason": reason, "ts": time.time()}
        self._client.publish(topics.policy_ack(self.config.device_id), json.dumps(body, separators=(",", ":")),
                             qos=1)
