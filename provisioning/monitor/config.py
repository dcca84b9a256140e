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
    group: str = "facelock"
    db: str = "monitor.db"
    webhook_url: str = ""
    console: bool = True
    # Ed25519 management key: when set, Home Assistant's LOCK/UNLOCK on facelock/<dev>/ha/set are signed
    # and forwarded as device commands.
    ha_signing_key_file: str = ""
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonitorConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in d.items():
            if key not in fields:
                raise ConfigError(f"monitor.{key}: unknown key")
            default = fields[key].default
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok = isinstance(value, str)
            if not ok:
                raise ConfigError(f"monitor.{key}: must be a {type(default).__name__}")
        cfg = cls(**{k: (float(v) if isinstance(fields[k].default, float) else v) for k, v in d.items()})
        cfg.check()
        return cfg

    def check(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError("monitor.port: must be 1..65535")
        if not self.group or any(c in self.group for c in "/+#"):
            raise ConfigError("monitor.group: must be a non-empty name without '/', '+', '#'")
        if not 1 <= self.batch_max <= 10_000:
            raise ConfigError("monitor.batch_max: must be 1..10000")
        if not 0 < self.batch_wait_s <= 5:
            raise ConfigError("monitor.batch_wait_s: must be in (0, 5]")
        if self.denied_threshold < 1 or self.denied_window_s <= 0 or self.offline_after_s <= 0:
            raise ConfigError("monitor.denied_threshold/denied_window_s/offline_after_s: must be positive")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ConfigError("monitor.webhook_url: must be an http(s) URL")
