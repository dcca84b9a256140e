"""Device registry and onboarding: one-time tokens or operator approval, CSR signing, revocation + CRL.

A lock makes its TLS key and its X25519 template key (firmware.fleet.doorkey) and sends one CSR that
carries both (the CSR's signature proves it holds the TLS key and binds the template key to it).  With a
valid one-time token the centre signs at once; without one the request waits in `pending` until an
operator approves it.  Tokens are stored only as SHA-256, are single-use, expire, and may be bound to
one device id.  Revocation is final for that id: the certificate's serial goes on the CRL the broker
checks, and the door gets no more bundles.

With `accounts` (central.broker.BrokerAccounts), the centre also keeps the broker's accounts in step: a
door is added to the broker when it is approved and deleted when it is revoked (its session, if up, ends
at once).  `sync_broker()` redoes that for every device (after the broker was unreachable).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import select

from central import audit
from central.db import Database
from central.errors import BrokerSyncError, NotFound, OnboardingError
from central.keys import CentreKeys
from central.models import Device, Door, EnrollmentToken
from firmware import fsutil
from firmware.fleet.doorkey import template_pub_from_csr
from firmware.fleet.errors import FleetError
from firmware.telemetry.topics import valid_device_id
from provisioning import pkifiles

MAX_CSR_BYTES = 8192
log = logging.getLogger("facelock.central.registry")


@dataclass(frozen=True)
class Enrollment:
    """What the centre answers a lock: its status, and once approved, what it needs to connect."""

    device_id: str
    status: str
    cert_pem: str | None = None
    ca_pem: str | None = None
    centre_pub_pem: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Registry:
    def __init__(self, db: Database, keys: CentreKeys, cert_days: int = 825, accounts=None) -> None:
        self.db = db
        self.keys = keys
        self.cert_days = cert_days
        self.accounts = accounts  # central.broker.Accounts, or None: the broker is managed elsewhere

    def _tell_broker(self, action: str, device_id: str) -> None:
        """After the registry committed: add or delete the device's broker account."""
        if self.accounts is None:
            return
        from provisioning.mosquitto import BrokerError

        try:
            (self.accounts.add if action == "add" else self.accounts.remove)(device_id)
        except BrokerError as exc:
            raise BrokerSyncError(f"device {device_id} is {'active' if action == 'add' else 'revoked'} in the "
                                  f"registry, but the broker was not updated ({exc}); run "
                                  "`facelock-central devices sync` once it is reachable") from None

    # -- tokens ------------------------------------------------------------------------------------
    def create_token(self, operator: str, device_id: str | None = None, ttl_s: float = 86400.0) -> str:
        if device_id is not None and not valid_device_id(device_id):
            raise OnboardingError(f"invalid device id {device_id!r}")
        token = secrets.token_urlsafe(24)
        now = time.time()
        with self.db.session() as s:
            s.add(EnrollmentToken(token_hash=_hash(token), device_id=device_id, created_at=now,
                                  expires_at=now + ttl_s))
            audit.record(s, operator, "token.create", device_id or "*", ttl_s=ttl_s)
        return token

    # -- requests ----------------------------------------------------------------------------------
    def submit(self, csr_pem: bytes, token: str | None = None) -> Enrollment:
        """A lock's enrollment request.  Refused requests raise OnboardingError and change nothing."""
        if not isinstance(csr_pem, bytes) or not 0 < len(csr_pem) <= MAX_CSR_BYTES:
            raise OnboardingError("the CSR is empty or too large")
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise OnboardingError("not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise OnboardingError("the CSR's signature does not verify")
        cns = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        device_id = str(cns[0].value) if len(cns) == 1 else ""
        if not valid_device_id(device_id):
            raise OnboardingError("the CSR's common name is not a valid device id")
        try:
            template_pub = template_pub_from_csr(csr)
        except FleetError as exc:
            raise OnboardingError(str(exc)) from None
        now = time.time()
        with self.db.session() as s:
            dev = s.get(Device, device_id, with_for_update=True)
            if dev is not None and dev.status != "pending":
                raise OnboardingError(f"device {device_id} is already {dev.status}")
            tok = None
            if token is not None:
                tok = s.get(EnrollmentToken, _hash(token), with_for_update=True)
                if tok is None or tok.used_at is not None or tok.expires_at < now \
                        or (tok.device_id is not None and tok.device_id != device_id):
                    raise OnboardingError("the enrollment token is unknown, used, expired or for another device")
            if dev is None:
                dev = Device(id=device_id, status="pending", requested_at=now, csr_pem=csr_pem.decode(),
                             template_pubkey=template_pub)
                s.add(dev)
            else:  # a pending request replaced by a newer one from the same id
                dev.csr_pem, dev.template_pubkey, dev.requested_at = csr_pem.decode(), template_pub, now
            if tok is not None:
                tok.used_at, tok.used_by = now, device_id
                self._sign(dev, csr, "token", now)
                audit.record(s, "token", "device.enroll", device_id, serial=dev.cert_serial)
            s.flush()
            answer = self._answer(dev)
        if answer.status == "active":
            try:
                self._tell_broker("add", device_id)
            except BrokerSyncError as exc:  # the lock still gets its certificate; the operator is told
                log.warning("%s", exc)
        return answer

    def _sign(self, dev: Device, csr: x509.CertificateSigningRequest, by: str, now: float) -> None:
        ca = self.keys.ca()
        cert = pkifiles.sign_csr(ca.key, ca.cert, csr, days=self.cert_days)
        dev.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        dev.cert_serial = f"{cert.serial_number:x}"
        dev.status, dev.approved_at, dev.approved_by = "active", now, by

    def _answer(self, dev: Device) -> Enrollment:
        if dev.status != "active":
            return Enrollment(dev.id, dev.status)
        return Enrollment(dev.id, "active", dev.cert_pem, self.keys.ca_cert_path.read_text(),
                          self.keys.public_key_pem().decode())

    def status(self, device_id: str) -> Enrollment:
        with self.db.session() as s:
            dev = s.get(Device, device_id)
            if dev is None:
                raise NotFound(f"no device {device_id!r}")
            return self._answer(dev)

    # -- operator ----------------------------------------------------------------------------------
    def pending(self) -> list[dict]:
        with self.db.session() as s:
            rows = s.scalars(select(Device).where(Device.status == "pending").order_by(Device.requested_at))
            return [{"device": d.id, "requested_at": d.requested_at,
                     "csr_sha256": hashlib.sha256(d.csr_pem.encode()).hexdigest()} for d in rows]

    def list(self) -> list[dict]:
        with self.db.session() as s:
            return [{"device": d.id, "status": d.status, "serial": d.cert_serial, "approved_by": d.approved_by,
                     "revoked_at": d.revoked_at} for d in s.scalars(select(Device).order_by(Device.id))]

    def approve(self, device_id: str, operator: str) -> Enrollment:
        audit.check_operator(operator)
        with self.db.session() as s:
            dev = s.get(Device, device_id, with_for_update=True)
            if dev is None:
                raise NotFound(f"no device {device_id!r}")
            if dev.status != "pending":
                raise OnboardingError(f"device {device_id} is {dev.status}, not pending")
            self._sign(dev, x509.load_pem_x509_csr(dev.csr_pem.encode()), operator, time.time())
            audit.record(s, operator, "device.approve", device_id, serial=dev.cert_serial)
            answer = self._answer(dev)
        self._tell_broker("add", device_id)
        return answer

    def revoke(self, device_id: str, operator: str) -> None:
        """Revoke for good: CRL rewritten (the broker refuses the certificate), no more bundles."""
        audit.check_operator(operator)
        with self.db.session() as s:
            dev = s.get(Device, device_id, with_for_update=True)
            if dev is None:
                raise NotFound(f"no device {device_id!r}")
            if dev.status == "revoked":
                return
            dev.status, dev.revoked_at = "revoked", time.time()
            door = s.get(Door, device_id)
            if door is not None:
                s.delete(door)
            audit.record(s, operator, "device.revoke", device_id, serial=dev.cert_serial)
        self.write_crl()
        self._tell_broker("remove", device_id)

    def sync_broker(self) -> dict[str, int]:
        """Give every active device its broker account and delete every revoked one (idempotent)."""
        with self.db.session() as s:
            states = [(d.id, d.status) for d in s.scalars(select(Device).where(Device.status != "pending"))]
        active = sorted(d for d, st in states if st == "active")
        revoked = sorted(d for d, st in states if st == "revoked")
        sync = getattr(self.accounts, "sync", None)
        if sync is not None and (active or revoked):  # one admin connection for the whole fleet
            from provisioning.mosquitto import BrokerError

            try:
                sync(active, revoked)
            except BrokerError as exc:
                raise BrokerSyncError(f"the broker's accounts were not brought in step with the registry "
                                      f"({exc}); run `facelock-central devices sync` once it is reachable") from None
        else:
            for device_id, status in states:
                self._tell_broker("add" if status == "active" else "remove", device_id)
        return {"active": len(active), "revoked": len(revoked)}

    def crl_pem(self) -> bytes:
        ca = self.keys.ca()
        now = dt.datetime.now(dt.timezone.utc)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=7)))
        with self.db.session() as s:
            for dev in s.scalars(select(Device).where(Device.status == "revoked", Device.cert_serial.is_not(None))):
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder().serial_number(int(dev.cert_serial, 16))
                    .revocation_date(dt.datetime.fromtimestamp(dev.revoked_at or time.time(), dt.timezone.utc))
                    .build())
        return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def write_crl(self) -> bytes:
        pem = self.crl_pem()
        fsutil.atomic_write(self.keys.crl_path, pem, 0o644)
        return pem
