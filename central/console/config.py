"""`[console]` settings (in the same TOML as the service's `[central]` table, which gives the database,
the data dir and the broker the console sends commands through)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central.errors import CentralError


@dataclass(frozen=True)
class ConsoleConfig:
    host: str = "127.0.0.1"
    port: int = 8443
    cert_file: str = ""  # empty: a certificate from the centre's CA, issued into <data_dir>/console/
    key_file: str = ""
    hostnames: tuple[str, ...] = ("localhost",)  # names and addresses the issued certificate covers
    idle_s: float = 1800.0
    max_age_s: float = 12 * 3600.0
    max_failures: int = 5  # consecutive failed logins before an account locks
    lockout_s: float = 900.0
    login_limit: int = 10  # login attempts per client address per login_window_s
    login_window_s: float = 60.0
    stream_poll_s: float = 0.25

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Path | None = None) -> ConsoleConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        vals: dict[str, Any] = {}
        for k, v in d.items():
            if k not in fields:
                raise CentralError(f"console.{k}: unknown key")
            default = fields[k].default
            if isinstance(default, tuple):
                if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                    raise CentralError(f"console.{k}: must be a list of names")
                vals[k] = tuple(v)
                continue
            ok = (isinstance(v, bool) is isinstance(default, bool)) and (
                isinstance(v, type(default)) or isinstance(default, float) and isinstance(v, int))
            if not ok:
                raise CentralError(f"console.{k}: must be a {type(default).__name__}")
            vals[k] = float(v) if isinstance(default, float) else v
        if not 0 < vals.get("port", 8443) < 65536:
            raise CentralError("console.port: 1-65535")
        for k in ("cert_file", "key_file"):
            if vals.get(k) and base is not None and not os.path.isabs(vals[k]):
                vals[k] = str(base / vals[k])
        if bool(vals.get("cert_file")) != bool(vals.get("key_file")):
            raise CentralError("console.cert_file and console.key_file go together")
        return cls(**vals)
