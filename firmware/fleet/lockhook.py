"""The door agent inside ``facelockd``: the centre's bundles become this lock's people, lockdown and settings.

With ``[fleet] enabled = true`` the daemon builds a :class:`FleetHook` and hands its subscription to the
telemetry client (firmware.telemetry.client), so bundles arrive on the lock's own MQTT v5 / mutual-TLS
connection, under its own certificate and ACL.  Each bundle goes through the agent's core
(firmware.fleet.agent.PolicyReceiver): the centre's Ed25519 signature (the pinned ``central.pub``), this
door's id, every field, no rollback, every template opened with the door's X25519 key from its keystore;
then this lock's own checks (:meth:`FleetHook.check`: template size = this lock's embedder, no clash with a
locally enrolled id, no version older than the one the lock last applied), and only then is it stored
and applied:

1. lockdown: ``nobody`` is put in force at once through the lock's port (kept across restarts by the
   lock's own lockstate.json); ``off`` lifts only a lockdown that a bundle put on, so a re-sent bundle
   never undoes an emergency lockdown made by a signed command;
2. settings (firmware.fleet.settings: within the lock's own bounds; what it cannot take is ignored, logged
   and audited), on the lock loop's thread;
3. people: ``users.db`` is made to hold exactly the bundle's people in one transaction
   (TemplateStore.sync_fleet: embeddings sealed under the keystore's ``templates`` key exactly like a local
   enrolment, never in the clear), which bumps the generation counter the running lock loop polls, so it
   reloads before the next frame; a removed person is purged, and the relay's last check
   (StoredUsers.is_active) refuses them even mid-attempt.

The ack then reports the version the lock applied.  A refused bundle changes nothing and is logged by its
reason only (no payload, no ids).  After a restart the stored bundle is verified again and whatever the
lock had not finished applying is applied (settings always, since they live in memory); a stored bundle
that no longer verifies (edited on the SD card) is moved aside and the lock keeps the people and lockdown
it last applied, until the centre's next bundle, which must still be newer than that version.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from firmware.fleet import topics
from firmware.fleet.agent import PolicyReceiver, encode_ack
from firmware.fleet.bundle import Bundle
from firmware.fleet.config import FleetConfig
from firmware.fleet.doorkey import template_key
from firmware.fleet.errors import BundleRejected
from firmware.fleet.settings import LockSettings, lock_settings
from firmware.fleet.store import BundleStore
from firmware.lock import policy as pol
from firmware.lock.port import CommandRefusedError, LockPort
from firmware.lock.runtime import LockBusyError
from firmware.telemetry.commands import load_public_key
from firmware.templates import FleetPerson

log = logging.getLogger("facelock.fleet")

#: the requester recorded for what a bundle does on the lock (the centre is its management side)
BY = pol.MANAGEMENT


class FleetHook:
    """Bundles on ``facelock/<door>/policy`` -> this lock; acks on ``facelock/<door>/policy/ack``."""

    def __init__(self, site: Any, port: LockPort, audit: Any, fleet: FleetConfig, mqtt: Any) -> None:
        """Built on the lock loop's thread (``audit`` is used from here only; later records go through
        the port)."""
        self.site = site
        self.port = port
        self.audit = audit
        self.door = mqtt.device_id
        self.base = site.config  # the lock's file config: the bounds every bundle's settings are held to
        pub = fleet.centre_pubkey_file or mqtt.management_pubkey_file
        directory = Path(fleet.bundle_dir) if fleet.bundle_dir else site.data_dir / "fleet"
        self.store = BundleStore(directory, self.door, load_public_key(pub), template_key(site.keystore()))
        with site.templates() as ts:
            self._applied, self._applied_lockdown, _ = ts.fleet_state()
        self.settings: LockSettings | None = None
        self.publish: Any = None  # set by attach(): the telemetry client's publish
        self._lock = threading.RLock()
        self._restored = threading.Event()
        self.receiver = PolicyReceiver(self.door, self.store, on_applied=self.apply, check=self.check,
                                       applied_version=lambda: self._applied)
        self._stored = self._verify_stored()

    # ------------------------------------------------------------------------------ transport
    def subscriptions(self) -> dict[str, Any]:
        return {topics.policy(self.door): self.handle}

    def attach(self, client: Any) -> None:
        self.publish = client.publish

    def on_connected(self) -> None:
        self._ack(self.receiver.hello())

    def handle(self, payload: bytes) -> None:
        self._restored.wait()
        with self._lock:
            body = self.receiver.handle(payload)
        if body["status"] == "refused":
            self._record("fleet_policy_refused", reason=str(body["reason"])[:64], running=body["version"])
        self._ack(body)

    def _record(self, kind: str, **data: Any) -> None:
        """An audit record, written on the lock loop's thread (never raises: the ack must still go)."""
        try:
            self.port.record(kind, **data)
        except Exception as exc:  # noqa: BLE001
            log.error("audit record %s not written: %s", kind, type(exc).__name__)

    def _ack(self, body: dict[str, Any]) -> None:
        if self.publish is not None:
            self.publish(topics.policy_ack(self.door), encode_ack(body), 1, False)

    @property
    def applied_version(self) -> int:
        return self._applied

    # ------------------------------------------------------------------------------- checking
    def check(self, bundle: Bundle, gallery: dict[str, list]) -> None:
        """This lock's refusals, before anything is written (BundleRejected with a short reason)."""
        if bundle.version < self._applied:
            raise BundleRejected("rollback", f"version {bundle.version} is older than the applied {self._applied}")
        dim = int(self.site.embedding_dim())
        if any(v.shape != (dim,) for vecs in gallery.values() for v in vecs):
            raise BundleRejected("bad_template", f"a template is not the {dim} values of this lock's embedder")
        with self.site.templates() as ts:
            _, _, fleet_ids = ts.fleet_state()
            local = {u.user_id for u in ts.list()} - fleet_ids
        if local & set(gallery):
            raise BundleRejected("id_conflict", "a person has the id of a user enrolled on this lock")

    # ------------------------------------------------------------------------------- applying
    def apply(self, bundle: Bundle, gallery: dict[str, list]) -> None:
        """Put a verified, stored bundle in force: lockdown, settings, then people (see the module doc)."""
        with self._lock:
            self._apply_lockdown(bundle.lockdown)
            self.apply_settings(bundle)
            people = [FleetPerson(p.id, np.stack(gallery[p.id]),
                                  None if p.schedule is None else [pol.window_to_dict(w) for w in p.schedule])
                      for p in bundle.people]
            with self.site.templates() as ts:
                done = ts.sync_fleet(bundle.version, people, bundle.lockdown)
            committed = time.time()  # from here the loop's reload and the relay's last check see the new people
            self._applied, self._applied_lockdown = bundle.version, bundle.lockdown
            ignored = [name for name, _ in (self.settings.ignored if self.settings else ())]
            self._record("fleet_policy_applied", version=bundle.version, people=len(people),
                              added=done.added, updated=done.updated, removed=done.removed,
                              lockdown=bundle.lockdown, ignored_settings=",".join(ignored)[:200] or None,
                              committed=round(committed, 3))
            log.info("centre policy version %d applied: %d people (+%d ~%d -%d), lockdown %s", bundle.version,
                     len(people), done.added, done.updated, done.removed, bundle.lockdown)

    def _apply_lockdown(self, mode: str) -> None:
        try:
            if mode == "nobody" and self.port.status().lockdown is not pol.Lockdown.NOBODY:
                self.port.set_lockdown(True, BY)
            elif mode == "off" and self._applied_lockdown == "nobody":
                self.port.set_lockdown(False, BY)
        except CommandRefusedError as exc:  # policy.remote_lockdown = "nobody": the lock's own rule wins
            log.warning("bundle lockdown %s not applied: %s", mode, exc)

    def apply_settings(self, bundle: Bundle) -> None:
        new = lock_settings(self.base, bundle.settings)
        for name, why in new.ignored:
            log.warning("centre setting %s ignored: %s", name[:64], why)
        old = self.settings
        self.settings = new
        if old is not None and old.config == new.config and old.threshold_floor == new.threshold_floor:
            return
        rebuild = not new.same_decider(old) if old is not None else (
            new.config.lock.liveness != self.base.lock.liveness or new.threshold_floor is not None)

        def prepare() -> None:  # on the loop's thread: what the next decider is built from
            self.site.config = new.config
            self.site.threshold_floor = new.threshold_floor

        self.port.reconfigure(new.config, rebuild, prepare)

    def _verify_stored(self) -> Bundle | None:
        """The stored bundle verified again (no lock needed); one that no longer verifies is moved aside."""
        try:
            return self.store.current()
        except BundleRejected as exc:
            aside = self.store.path.with_name(self.store.path.name + ".rejected")
            self.store.path.replace(aside)
            self.store.forget()
            log.error("stored policy bundle refused at start (%s): moved aside; keeping the applied version %d",
                      exc.reason, self._applied)
            self.audit.append("fleet_policy_refused", reason=exc.reason, running=self._applied, at="start")
            return None

    def restore(self, ready_timeout_s: float = 300.0) -> None:
        """At start, once the lock loop runs (its port answers): finish what the lock had not applied of the
        stored bundle, and put its settings in force again.  Bundles from the broker wait for this."""
        try:
            bundle = self._stored
            if bundle is None:
                return
            end = time.monotonic() + ready_timeout_s
            while True:  # the loop takes port calls once bring_up (models, camera) is over
                try:
                    self.port.status()
                    break
                except LockBusyError:
                    if time.monotonic() >= end:
                        raise
            with self._lock:
                if bundle.version != self._applied:
                    opened = self.store.opened()
                    assert opened is not None
                    self.apply(*opened)
                else:
                    self.apply_settings(bundle)
        except Exception as exc:  # noqa: BLE001 - the lock keeps what it applied last; the centre re-sends
            log.error("stored policy bundle not restored: %s", type(exc).__name__)
        finally:
            self._restored.set()

    def start_restore(self) -> threading.Thread:
        t = threading.Thread(target=self.restore, name="facelock-fleet-restore", daemon=True)
        t.start()
        return t
