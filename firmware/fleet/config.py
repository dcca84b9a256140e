"""``[fleet]``: whether this lock takes its people and policy from the centre (facelock-central).

Off by default: a lock on its own keeps the embedded single-lock behaviour (people enrolled on the lock,
its TOML policy).  With ``enabled = true`` the daemon runs the door agent on its ``[mqtt]`` connection
(firmware.fleet.lockhook), so ``[mqtt]`` is required and its ``device_id`` is the door id the centre
signs bundles for.

    [fleet]
    enabled = true
    centre_pubkey_file = "pki/central.pub"   # default: [mqtt] management_pubkey_file (one centre key)
    bundle_dir = ""                          # default: <data_dir>/fleet

Strict like every section: unknown keys and wrong types are a ConfigError naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.config_errors import ConfigError


@dataclass(frozen=True)
class FleetConfig:
    enabled: bool = False
    #: the centre's Ed25519 public key (PEM) that bundles must be signed by; "" = [mqtt] management_pubkey_file
    centre_pubkey_file: str = ""
    #: where the applied bundle is kept (still signed, templates still sealed); "" = <data_dir>/fleet
    bundle_dir: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any], base_dir: str | Path | None = None) -> FleetConfig:
        if not isinstance(d, dict):
            raise ConfigError("fleet: must be a table")
        known = ("enabled", "centre_pubkey_file", "bundle_dir")
        for k in d:
            if k not in known:
                raise ConfigError(f"fleet.{k}: unknown key (allowed: {', '.join(known)})")
        enabled = d.get("enabled", False)
        if not isinstance(enabled, bool):
            raise ConfigError(f"fleet.enabled: expected true or false, got {enabled!r}")
        paths = {}
        for k in ("centre_pubkey_file", "bundle_dir"):
            v = d.get(k, "")
            if not isinstance(v, str) or "\0" in v:
                raise ConfigError(f"fleet.{k}: expected a path, got {v!r}")
            if v and base_dir is not None and not Path(v).is_absolute():
                v = str(Path(base_dir) / v)
            paths[k] = v
        return cls(enabled, **paths)
