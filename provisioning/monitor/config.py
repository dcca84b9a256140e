"""Monitor settings: a frozen dataclass with defaults and a strict `from_dict` (unknown keys refused)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from firmware.config_errors import ConfigError


@dataclass(frozen=True)
class MonitorConfig:
    host: str = "127.0.0.1"
    port: int = 8883
    ca_file: str = "pki/ca.pem"
    cert_file: str = "pki/monitor.pem"
    key_file: str = "pki/monitor.key"
    client_id: str = ""  # default: facelock-monitor-<pid>; must differ between monitors of one group
    # Shared-subscription group.  Default "": derived from the monitor's private key (monitors sharing a key
    # share a group; nobody without the key can name it).  An explicit one must be at least 16 characters.
    group: str = ""
    db: str = "monitor.db"
    webhook_url: str = ""
    console: bool = True
    # Home Assistant: the monitor publishes discovery for the devices it knows (devices cannot).
    ha_discovery: bool = True
    # The HA bridge (off unless both files are set): its own Ed25519 key (0600) and the grant the management
    # key signed for it (`facelock ha grant`): lock/unlock of named devices only, which devices check too.
    ha_key_file: str = ""
    ha_grant_file: str = ""
    # Devices Home Assistant may UNLOCK (default: none; LOCK is allowed for every granted device).
    ha_unlock_allowed: tuple[str, ...] = ()
    ha_rate_per_min: int = 6  # bridge commands per device per minute; more are refused and alerted
    # A per-device seq gap open this long raises `events_missing` and asks the device to resend.
    gap_grace_s: float = 5.0
    gap_resend_tries: int = 3  # then the gap is closed as lost (the alert stays)
    batch_max: int = 500
    batch_wait_s: float = 0.02
    receipts: bool = True
    denied_threshold: int = 3
    denied_window_s: float = 60.0
    offline_after_s: float = 120.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 10.0

    def effective_client_id(self) -> str:
        return self.client_id or f"facelock-monitor-{os.getpid()}"

    def effective_group(self) -> str:
        """The shared-subscription group: explicit, or a keyed hash of the monitor's private key file.

        A guessable group ("facelock") let any client that could subscribe join it and take a share of the
        events; the broker now refuses `$share` to everyone but the monitor, and the name is a secret too."""
        if self.group:
            return self.group
        import hashlib

        try:
            key = open(self.key_file, "rb").read()
        except OSError as exc:
            raise ConfigError(f"monitor.key_file: cannot read {self.key_file} ({exc.strerror})") from None
        return "g" + hashlib.sha256(b"facelock-monitor-group\0" + key).hexdigest()[:31]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonitorConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in d.items():
            if key == "ha_signing_key_file":
                raise ConfigError("monitor.ha_signing_key_file: removed: the monitor never holds the management key; "
                                  "make a scoped bridge key with `facelock ha grant` (ha_key_file, ha_grant_file)")
            if key not in fields:
                raise ConfigError(f"monitor.{key}: unknown key")
            default = fields[key].default
            if isinstance(default, tuple):
                ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok = isinstance(value, str)
            if not ok:
                raise ConfigError(f"monitor.{key}: must be a {type(default).__name__}")
        cfg = cls(**{k: (float(v) if isinstance(fields[k].default, float)
                         else tuple(v) if isinstance(fields[k].default, tuple) else v) for k, v in d.items()})
        cfg.check()
        return cfg

    def check(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError("monitor.port: must be 1..65535")
        if self.group and (len(self.group) < 16 or any(c in self.group for c in "/+#$ ")):
            raise ConfigError("monitor.group: must be at least 16 characters (a secret: not guessable), without "
                              "'/', '+', '#', '$' or spaces; leave it empty to derive one from the monitor's key")
        from firmware.telemetry.topics import is_reserved, valid_device_id

        for dev in self.ha_unlock_allowed:
            if not valid_device_id(dev) or is_reserved(dev):
                raise ConfigError(f"monitor.ha_unlock_allowed: {dev!r} is not a device id")
        if bool(self.ha_key_file) != bool(self.ha_grant_file):
            raise ConfigError("monitor.ha_key_file and monitor.ha_grant_file: set both (the HA bridge) or neither")
        if not 1 <= self.ha_rate_per_min <= 600:
            raise ConfigError("monitor.ha_rate_per_min: must be 1..600")
        if not 0.1 <= self.gap_grace_s <= 3600 or not 1 <= self.gap_resend_tries <= 100:
            raise ConfigError("monitor.gap_grace_s: must be 0.1..3600; monitor.gap_resend_tries: 1..100")

        if not 1 <= self.batch_max <= 10_000:
            raise ConfigError("monitor.batch_max: must be 1..10000")
        if not 0 < self.batch_wait_s <= 5:
            raise ConfigError("monitor.batch_wait_s: must be in (0, 5]")
        if self.denied_threshold < 1 or self.denied_window_s <= 0 or self.offline_after_s <= 0:
            raise ConfigError("monitor.denied_threshold/denied_window_s/offline_after_s: must be positive")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ConfigError("monitor.webhook_url: must be an http(s) URL")
