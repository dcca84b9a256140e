"""The door agent: receives the centre's policy bundle over MQTT v5 / mutual TLS, applies it, acks it.

Two transports share one core, :class:`PolicyReceiver` (verify, apply, build the ack; no I/O of its own
beyond the bundle store):

- :class:`DoorAgent`, its own MQTT session (client id ``<door>-fleet``, the door's certificate), used by the
  simulated doors of the demo, the tests and the benchmark;
- the lock daemon (``facelockd`` with ``[fleet] enabled = true``), which runs the receiver on its existing
  telemetry connection (firmware.telemetry.client, same identity and ACL) through firmware.fleet.lockhook.

The bundle topic is retained: a door that was offline during a push gets the latest bundle as soon as it
reconnects; the centre also re-sends until the door acknowledges the version.  Every message is
acknowledged with what the door now runs:

    {"v": 1, "door": "<id>", "version": <running>, "status": "applied" | "running" | "refused",
     "offered": <version offered or null>, "reason": "<short cause>" | null}

A refused bundle (bad signature, another door's, a rollback, a template that does not open, a setting
outside the lock's bounds) changes nothing; the door keeps running its last good bundle.
``on_applied(bundle, gallery)`` is the hook into the lock's runtime (its site API); it runs after the new
bundle is durable on disk.  ``check(bundle, gallery)`` runs before anything is written and may refuse it (BundleRejected).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

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
Check = Callable[[Bundle, dict], None]


class PolicyReceiver:
    """The transport-free core of a door agent: ``handle(payload) -> ack body``, ``hello() -> ack body``.

    Serialised by a lock, so two deliveries of bundles (a retained one on reconnect and a re-send) never
    interleave their writes.  Never raises: every failure becomes a ``refused`` ack with a short reason
    (logged without the payload: a bundle holds sealed templates and ids, nothing for a log line)."""

    def __init__(self, door: str, store: BundleStore, on_applied: OnApplied | None = None,
                 check: Check | None = None, applied_version: Callable[[], int] | None = None) -> None:
        self.door = door
        self.store = store
        self.on_applied = on_applied
        self.check = check
        #: the version the lock itself runs (firmware.fleet.lockhook), when it can lag the stored bundle (a
        #: failed or interrupted apply): a re-send of the stored version then applies it again, and the ack
        #: reports what the lock runs, so the centre keeps re-sending until it really does
        self.applied_version = applied_version
        self.stats = {"applied": 0, "refused": 0, "resent": 0}
        self.last_refusal: str | None = None
        self._lock = threading.Lock()

    def handle(self, payload: bytes) -> dict[str, Any]:
        with self._lock:
            try:
                bundle, gallery, changed = self.store.apply(bytes(payload), check=self.check)
            except BundleRejected as exc:
                return self._refused(exc.reason, exc.detail)
            except Exception:  # noqa: BLE001 - a broken bundle must never stop the agent
                log.exception("policy bundle failed")
                return self._refused("internal", "")
            lagging = self.applied_version is not None and self.applied_version() != bundle.version
            if changed or lagging:
                self.stats["applied"] += 1
                if self.on_applied is not None:
                    try:
                        self.on_applied(bundle, gallery)
                    except Exception as exc:  # noqa: BLE001 - stored already: applied again on a re-send
                        log.error("policy bundle %d stored but not applied to the lock: %s", bundle.version,
                                  type(exc).__name__)
                        self.stats["refused"] += 1
                        self.last_refusal = "apply_failed"
                        return self.body("refused", bundle.version, "apply_failed")
            else:
                self.stats["resent"] += 1
            return self.body("applied", bundle.version, None)

    def _refused(self, reason: str, detail: str) -> dict[str, Any]:
        self.stats["refused"] += 1
        self.last_refusal = reason
        log.warning("policy bundle refused: %s%s", reason, f" ({detail[:120]})" if detail else "")
        return self.body("refused", None, reason)

    def hello(self) -> dict[str, Any]:
        """The ``running`` ack sent on every (re)connection: the centre learns the version at once."""
        return self.body("running", None, None)

    def body(self, status: str, offered: int | None, reason: str | None) -> dict[str, Any]:
        try:
            running = self.applied_version() if self.applied_version is not None else self.store.current_version()
        except BundleRejected:
            running = 0  # the file on disk no longer verifies: report nothing running
        return {"v": 1, "door": self.door, "version": running, "status": status, "offered": offered,
                "reason": reason, "ts": time.time()}


def encode_ack(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class DoorAgent:
    """A :class:`PolicyReceiver` on its own MQTT session (simulated doors)."""

    def __init__(self, config: MqttConfig, store: BundleStore, on_applied: OnApplied | None = None,
                 check: Check | None = None) -> None:
        self.config = config
        self.store = store
        self.receiver = PolicyReceiver(config.device_id, store, on_applied, check)
        self._connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{config.device_id}-fleet",
                                   protocol=mqtt.MQTTv5)
        self._client.tls_set_context(client_context(config.ca_file, config.cert_file, config.key_file,
                                                    config.tls_min_version))
        self._client.reconnect_delay_set(config.backoff_min_s, config.backoff_max_s)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *a: self._connected.clear()
        self._client.on_message = self._on_message

    @property
    def stats(self) -> dict[str, int]:
        return self.receiver.stats

    @property
    def last_refusal(self) -> str | None:
        return self.receiver.last_refusal

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
        self._publish(self.receiver.hello())

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != topics.policy(self.config.device_id):
            return
        self._publish(self.receiver.handle(bytes(msg.payload)))

    def _publish(self, body: dict[str, Any]) -> None:
        self._client.publish(topics.policy_ack(self.config.device_id), encode_ack(body), qos=1)
