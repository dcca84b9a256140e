"""Run a real mosquitto on loopback with mutual TLS and the FaceLock ACL (for tests and benchmarks).

The same config text is the reference for a production broker: `require_certificate true`,
`use_identity_as_username true` (the certificate CN is the MQTT user), an ACL where each device may only
touch `facelock/<its id>/#` (and its own Home Assistant discovery topics), and TLS >= 1.2.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

from firmware.errors import FaceLockError
from provisioning.pki import LoopbackPki, write_loopback_pki

MONITOR_USER = "facelock-monitor"
ADMIN_USER = "facelock-admin"
HA_USER = "facelock-ha"


class BrokerError(FaceLockError):
    """mosquitto could not be started."""


def acl_text(monitor_user: str = MONITOR_USER, admin_user: str = ADMIN_USER, ha_user: str = HA_USER) -> str:
    return f"""# Devices: only their own subtree and their own HA discovery configs.
pattern readwrite facelock/%u/#
pattern write homeassistant/+/%u/#

# The central monitor: reads every event/availability/state, writes receipts, reads discovery.
user {monitor_user}
topic read facelock/#
topic write facelock/+/receipt
topic read homeassistant/#
topic write facelock/+/cmd/lock
topic write facelock/+/cmd/unlock

# The management tool: sends commands, reads their results.
user {admin_user}
topic write facelock/+/cmd/#
topic read facelock/+/cmd/result
topic read facelock/+/state
topic read homeassistant/#

# Home Assistant: reads discovery, state and availability; its LOCK/UNLOCK go to ha/set only (unsigned,
# so the device ignores them; the monitor's bridge signs them).
user {ha_user}
topic read homeassistant/#
topic read facelock/+/state
topic read facelock/+/availability
topic write facelock/+/ha/set
"""


def mosquitto_conf(port: int, pki: LoopbackPki, acl_file: Path, log_file: Path, user: str) -> str:
    return f"""# FaceLock broker (generated)
user {user}
per_listener_settings false
persistence false
log_dest file {log_file}
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
allow_anonymous false
acl_file {acl_file}
# QoS 1 messages for a slow subscriber are queued, never dropped; in flight to each client: 200.
max_queued_messages 0
max_inflight_messages 200
listener {port} 127.0.0.1
cafile {pki.ca}
certfile {pki.server_cert}
keyfile {pki.server_key}
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBroker:
    """A mosquitto process on 127.0.0.1:<ephemeral port>; `kill()` is SIGKILL, `start()` restarts it."""

    def __init__(self, directory: str | Path, pki: LoopbackPki | None = None, port: int | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki or write_loopback_pki(self.dir / "pki")
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_file = self.dir / "mosquitto.log"
        self.acl_file = self.dir / "acl"
        self.conf_file = self.dir / "mosquitto.conf"
        self.acl_file.write_text(acl_text())
        # Run as the current user: mosquitto started as root would otherwise drop to `mosquitto`, which
        # cannot read our 0600 keys.
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.conf_file.write_text(mosquitto_conf(self.port, self.pki, self.acl_file, self.log_file, user))
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf_file)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {err[-500:]} "
                                  f"{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    self.starts += 1
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no will cleanup, in-memory state lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
