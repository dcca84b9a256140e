"""`facelock-central run`: one stateless worker = the monitor (events, availability, alerts into the
database, receipts back to the doors) + the bundle distributor + periodic behaviour analysis and bundle
refresh.

Run as many workers as the load needs, on as many hosts: they share only the database and the broker
(MQTT v5 shared subscriptions split events and acks between them; bundle versions are minted under row
locks; the behaviour analysis takes its watermark row under a lock and keys its alerts).  SIGTERM / SIGINT stop a worker cleanly: receipts are only sent for stored events, so nothing is
lost when a worker dies, at any moment.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from central.errors import BrokerSyncError, CentralError, DatabaseUnavailable

log = logging.getLogger("facelock.central")


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: str = "facelock-central"
    db: str = ""  # default: SQLite in data_dir
    host: str = "127.0.0.1"
    port: int = 8883
    ca_file: str = "ca.pem"
    cert_file: str = "central.pem"
    key_file: str = "central.key"
    group: str = "facelock-central"
    client_id: str = ""
    retry_s: float = 5.0
    refresh_s: float = 30.0
    analyze_s: float = 5.0  # behaviour rules (central.behaviour) over newly stored events
    batch_max: int = 500
    # Events are handed to the store every batch_wait_s (or batch_max): each batch is one transaction and
    # one pass of the store thread, so a fleet's worker batches 0.1 s (the standalone monitor: 0.02 s).
    batch_wait_s: float = 0.1
    denied_threshold: int = 3
    denied_window_s: float = 60.0
    offline_after_s: float = 120.0
    webhook_url: str = ""  # every alert (monitor rules and behaviour rules) POSTed as JSON
    # The broker-admin identity (facelock-broker-admin's certificate and key): with both set, approving a
    # door adds its broker account and revoking deletes it (central.broker.BrokerAccounts).
    broker_admin_cert: str = ""
    broker_admin_key: str = ""
    time_zone: str = ""  # the site's IANA zone for the behaviour rules' hours ("" = the system's zone)

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Path | None = None) -> ServiceConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for k, v in d.items():
            if k not in fields:
                raise CentralError(f"central.{k}: unknown key")
            default = fields[k].default
            ok = (isinstance(v, bool) is isinstance(default, bool)) and (
                isinstance(v, type(default)) or isinstance(default, float) and isinstance(v, int))
            if not ok:
                raise CentralError(f"central.{k}: must be a {type(default).__name__}")
        vals = {k: (float(v) if isinstance(fields[k].default, float) else v) for k, v in d.items()}
        if base is not None:
            for k in ("data_dir", "ca_file", "cert_file", "key_file", "broker_admin_cert", "broker_admin_key"):
                if k in vals and not os.path.isabs(vals[k]):
                    vals[k] = str(base / vals[k])
        return cls(**vals)

    def accounts(self):
        """The broker's accounts the centre keeps in step with its registry, or None (not configured)."""
        if not (self.broker_admin_cert and self.broker_admin_key):
            if self.broker_admin_cert or self.broker_admin_key:
                raise CentralError("central.broker_admin_cert and broker_admin_key go together")
            return None
        from central.broker import BrokerAccounts

        return BrokerAccounts(self.host, self.port, self.ca_file, self.broker_admin_cert, self.broker_admin_key)

    @classmethod
    def from_toml(cls, path: Path) -> ServiceConfig:
        try:
            d = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CentralError(f"{path}: {exc}") from None
        if set(d) - {"central"}:
            raise CentralError(f"{path}: only a [central] table is allowed")
        return cls.from_dict(d.get("central", {}), path.parent)


class Worker:
    def __init__(self, cfg: ServiceConfig) -> None:
        from central.alert_rules import CentreAlertRules
        from central.app import Centre
        from central.behaviour import site_zone
        from central.distributor import BrokerSettings, Distributor
        from central.doorstate import DoorStateIngest
        from provisioning.monitor.config import MonitorConfig
        from provisioning.monitor.service import MonitorService

        self.cfg = cfg
        self.zone = site_zone(cfg.time_zone)  # an unknown zone is refused before anything starts
        self.centre = Centre(cfg.data_dir, cfg.db or None, accounts=cfg.accounts())
        self.notifiers: list = []
        if cfg.webhook_url:
            from provisioning.monitor.notify import WebhookNotifier

            if not cfg.webhook_url.startswith(("http://", "https://")):
                raise CentralError("central.webhook_url: must be an http(s) URL")
            self.notifiers.append(WebhookNotifier(cfg.webhook_url))
        suffix = cfg.client_id or f"{os.uname().nodename}-{os.getpid()}"
        self.monitor = MonitorService(
            MonitorConfig(host=cfg.host, port=cfg.port, ca_file=cfg.ca_file, cert_file=cfg.cert_file,
                          key_file=cfg.key_file, client_id=f"facelock-central-mon-{suffix}", group=cfg.group,
                          console=False, batch_max=cfg.batch_max, batch_wait_s=cfg.batch_wait_s,
                          denied_threshold=cfg.denied_threshold,
                          denied_window_s=cfg.denied_window_s, offline_after_s=cfg.offline_after_s,
                          backoff_min_s=0.2, backoff_max_s=5.0),
            self.centre.monitor, notifiers=self.notifiers,
            rules=CentreAlertRules(cfg.denied_threshold, cfg.denied_window_s, cfg.offline_after_s))
        self.distributor = Distributor(self.centre.db, BrokerSettings(
            cfg.host, cfg.port, cfg.ca_file, cfg.cert_file, cfg.key_file, client_id=f"facelock-central-{suffix}",
            group=cfg.group), retry_s=cfg.retry_s)
        self.doorstate = DoorStateIngest(self.centre.db, BrokerSettings(  # the locks' retained state topics
            cfg.host, cfg.port, cfg.ca_file, cfg.cert_file, cfg.key_file, client_id=f"facelock-central-{suffix}"))
        self._stop = threading.Event()

    def start(self) -> None:
        self.monitor.start()
        self.distributor.start()
        self.doorstate.start()

    def run(self) -> None:
        import time

        from central.behaviour import Analyzer, BehaviourConfig

        analyzer = Analyzer(self.centre.db, BehaviourConfig(tz=self.zone))
        self.start()
        self.sync_accounts()
        next_refresh = next_analysis = time.monotonic()
        while not self._stop.wait(0.5):
            now = time.monotonic()
            try:
                if now >= next_analysis:
                    next_analysis = now + self.cfg.analyze_s
                    for alert in analyzer.run(time.time()):
                        for n in self.notifiers:
                            n.notify(alert)
                if now >= next_refresh:
                    next_refresh = now + self.cfg.refresh_s
                    self.centre.policy.refresh()
            except DatabaseUnavailable:
                log.warning("database unavailable; analysis and bundle refresh postponed")
            except Exception:  # noqa: BLE001 - a worker keeps serving whatever one pass does
                log.exception("worker pass failed")
        self.shutdown()

    def sync_accounts(self) -> dict[str, int] | None:
        """At start, bring the broker's door accounts in step with the registry (`devices sync`): an
        approval or revocation made while the broker was unreachable, or a broker that lost its plugin
        state, is repaired without an operator.  A broker or database that is down is logged, not fatal:
        the worker serves anyway and `devices sync` can be run later.  None: no broker-admin identity."""
        if self.centre.registry.accounts is None:
            return None
        try:
            counts = self.centre.registry.sync_broker()
        except (BrokerSyncError, DatabaseUnavailable) as exc:
            log.warning("broker accounts not reconciled at start: %s", exc)
            return None
        log.info("broker accounts reconciled: %d active, %d revoked", counts["active"], counts["revoked"])
        return counts

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        self.doorstate.stop()
        self.distributor.stop()
        self.monitor.stop()
        for n in self.notifiers:
            n.close()
        self.centre.close()


def run_service(cfg: ServiceConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    w = Worker(cfg)
    signal.signal(signal.SIGTERM, lambda *_: w.stop())
    signal.signal(signal.SIGINT, lambda *_: w.stop())
    w.run()
