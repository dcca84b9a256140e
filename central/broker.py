"""The centre and the broker: the centre keeps the broker's accounts in step with its device registry.

What each identity may do on the broker is defined in one place, provisioning.mosquitto (dynamic-security
plugin, default deny): a door's role (its telemetry, commands, receipts, and its bundle/ack topics) and
the centre's own `facelock-central` role.  This module only decides *when*: a door approved by the centre
(token or operator) is added to the plugin at once, and a revoked one is deleted, which also ends a
session that is up (mosquitto checks the CRL only at a handshake, and reads it only when it starts).

`BrokerAccounts` does that through the plugin's control topic as `facelock-broker-admin` (its own
certificate, issued by the centre's CA).  `fleet_broker()` builds a test/bench broker whose CA is the
centre's, with its CRL; `central_files()` is the centre's client certificate on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from provisioning.mosquitto import BROKER_ADMIN_USER, CENTRAL_USER, BrokerError, DynsecAdmin, LocalBroker

BrokerError = BrokerError  # re-exported: what BrokerAccounts raises

__all__ = ["BROKER_ADMIN_USER", "CENTRAL_USER", "Accounts", "BrokerError", "register_door", "BrokerAccounts", "central_files", "fleet_broker"]


class Accounts(Protocol):
    """Where the registry adds and deletes door identities (the broker's plugin)."""

    def add(self, device: str) -> None: ...

    def remove(self, device: str) -> None: ...


class BrokerAccounts:
    """The broker's dynamic-security accounts, changed over its control topic (one short connection per
    change: approvals and revocations are rare, and a long-lived admin session is one more thing to steal)."""

    def __init__(self, host: str, port: int, ca_file: str | Path, cert_file: str | Path, key_file: str | Path,
                 timeout: float = 10.0) -> None:
        self.args = (host, port, ca_file, cert_file, key_file)
        self.timeout = timeout

    def _admin(self) -> DynsecAdmin:
        return DynsecAdmin(*self.args, timeout=self.timeout)

    def add(self, device: str) -> None:
        admin = self._admin()
        try:
            admin.add_device(device)
        finally:
            admin.close()

    def remove(self, device: str) -> None:
        admin = self._admin()
        try:
            admin.remove_device(device)
        finally:
            admin.close()

    def sync(self, active: list[str], revoked: list[str]) -> None:
        """Add every active door and delete every revoked one over one admin connection (a fleet's
        reconciliation at start: a connection per door would be a thousand TLS handshakes)."""
        admin = self._admin()
        try:
            for device in active:
                admin.add_device(device)
            for device in revoked:
                admin.remove_device(device)
        finally:
            admin.close()

    @staticmethod
    def for_local(broker: LocalBroker) -> Accounts:
        """Accounts of a LocalBroker (tests, bench, demo): through the broker object, which sends the same
        control-topic commands (DynsecAdmin) and remembers whom it registered, so a fixture that also
        registers a door by hand does not add it twice."""
        return _LocalAccounts(broker)


class _LocalAccounts:
    def __init__(self, broker: LocalBroker) -> None:
        self.broker = broker

    def add(self, device: str) -> None:
        self.broker.register(device)

    def remove(self, device: str) -> None:
        self.broker.unregister(device)


def fleet_broker(directory: str | Path, keys, doors: list[str] | tuple[str, ...] = ()) -> LocalBroker:
    """A broker (not started) trusting the centre's CA, checking its CRL, knowing the centre and `doors`."""
    d = Path(directory)
    return LocalBroker(d, pki=keys.loopback_pki(d / "pki"), devices=doors, crl_file=keys.crl_path)


def central_files(broker: LocalBroker):
    """The centre's client certificate on this broker (a service identity, not a device)."""
    return broker.raw_pki.client(CENTRAL_USER)



def register_door(broker: LocalBroker, device: str) -> None:
    """Give `device` its account on a LocalBroker the centre does not manage (a fixture of another part's
    tests); a centre with `accounts` does this itself on approval."""
    broker.register(device)
