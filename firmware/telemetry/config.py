"""`[mqtt]` configuration section: a frozen dataclass with defaults and a strict `from_dict`.

Unknown keys and bad values are refused with the key's name and the reason, so a typo in the TOML file
stops the daemon at start instead of silently disabling TLS or the outbox bound.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.config_errors import ConfigError
from firmware.telemetry.topics import is_reserved, valid_device_id


@dataclass(frozen=True)
class MqttConfig:
    device_id: str = "facelock-1"
    host: str = "127.0.0.1"
    port: int = 8883
    # The server certificate must be valid for `host` (name or IP address): it is what TLS checks.
    tls_min_version: str = "1.2"
    ca_file: str = "pki/ca.pem"
    cert_file: str = "pki/device.pem"
    key_file: str = "pki/device.key"
    # Ed25519 public key (PEM) of the management side; commands must be signed by it.
    management_pubkey_file: str = "pki/management.pub"
    keepalive_s: int = 30
    # Bounded in-flight window: QoS 1 publishes awaiting PUBACK at once (a wide window keeps a loaded
    # link busy; on reconnect at most this many are sent twice, and the monitor de-duplicates them).
    max_inflight: int = 500
    # How often the publisher looks at the outbox for rows put by another process (rows put in this
    # process wake it at once).
    poll_interval_s: float = 0.05
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    # Commands older (or further in the future) than this are refused as stale.
    command_max_age_s: float = 30.0
    # Heartbeat events (with the audit chain head, see firmware.telemetry.heartbeat) every this many seconds.
    heartbeat_s: float = 60.0
    outbox_max_events: int = 100_000
    # Keep an event after PUBACK until the monitor's receipt says it is stored (end-to-end, survives a
    # broker crash); when False the event is deleted on PUBACK.
    require_receipt: bool = True
    receipt_timeout_s: float = 30.0

    @classmethod
    def from_dict(cls, d: dict[str, Any], base_dir: str | Path | None = None) -> MqttConfig:
        """Validate a TOML table; relative file paths are resolved against `base_dir` when given."""
        if not isinstance(d, dict):
            raise ConfigError("mqtt: must be a table")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"mqtt.{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})")
        values: dict[str, Any] = {}
        for name, value in d.items():
            default = fields[name].default
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"mqtt.{name}: must be true or false")
            elif isinstance(default, int):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ConfigError(f"mqtt.{name}: must be an integer")
            elif isinstance(default, float):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise ConfigError(f"mqtt.{name}: must be a number")
                value = float(value)
            elif isinstance(default, str):
                if not isinstance(value, str):
                    raise ConfigError(f"mqtt.{name}: must be a string")
            if name.endswith("_file") and base_dir is not None and value and not Path(value).is_absolute():
                value = str(Path(base_dir) / value)
            values[name] = value
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise ConfigError naming the first bad value."""
        if not valid_device_id(self.device_id):
            raise ConfigError("mqtt.device_id: must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63} (no '/', '+', '#')")
        if is_reserved(self.device_id):
            raise ConfigError(f"mqtt.device_id: {self.device_id!r} is a reserved service identity")
        if not self.host:
            raise ConfigError("mqtt.host: must not be empty")
        if not 1 <= self.port <= 65535:
            raise ConfigError("mqtt.port: must be 1..65535")
        if self.tls_min_version not in ("1.2", "1.3"):
            raise ConfigError("mqtt.tls_min_version: must be \"1.2\" or \"1.3\" (older TLS is refused)")
        for name in ("ca_file", "cert_file", "key_file", "management_pubkey_file"):
            if not getattr(self, name):
                raise ConfigError(f"mqtt.{name}: must name a file")
        if not 5 <= self.keepalive_s <= 3600:
            raise ConfigError("mqtt.keepalive_s: must be 5..3600")
        if not 1 <= self.max_inflight <= 65535:
            raise ConfigError("mqtt.max_inflight: must be 1..65535")
        if not 0.001 <= self.poll_interval_s <= 5:
            raise ConfigError("mqtt.poll_interval_s: must be 0.001..5 seconds")
        if not 0 < self.backoff_min_s <= self.backoff_max_s:
            raise ConfigError("mqtt.backoff_min_s: must be > 0 and <= backoff_max_s")
        if not 1 <= self.command_max_age_s <= 600:
            raise ConfigError("mqtt.command_max_age_s: must be 1..600 seconds")
        if not 0.1 <= self.heartbeat_s <= 3600:
            raise ConfigError("mqtt.heartbeat_s: must be 0.1..3600 seconds")
        if self.outbox_max_events < 10:
            raise ConfigError("mqtt.outbox_max_events: must be at least 10")
        if self.receipt_timeout_s <= 0:
            raise ConfigError("mqtt.receipt_timeout_s: must be > 0")
