"""A simulated lock for the demo, the tests and the benchmark: real keys, a real keystore, real MQTT (mTLS).

A `SimDoor` is what a lock does: its TLS key and X25519 template key (sealed in a FileKeystore), one
enrollment CSR, the certificate the centre returns, and a `DoorAgent` that receives, verifies, applies
and acks bundles into a `BundleStore` on its own disk.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from central.registry import Enrollment
from firmware import fsutil
from firmware.fleet.agent import DoorAgent
from firmware.fleet.bundle import Bundle
from firmware.fleet.doorkey import enrollment_csr, public_bytes, template_key
from firmware.fleet.store import BundleStore
from firmware.keystore.file_backend import FileKeystore
from firmware.telemetry.commands import load_public_key
from firmware.telemetry.config import MqttConfig
from provisioning import pkifiles


class SimDoor:
    def __init__(self, directory: Path, device_id: str) -> None:
        self.dir = directory
        self.id = device_id
        fsutil.make_private_dir(directory)
        self.keystore = FileKeystore(directory / "keystore", directory / "keystore" / "device.secret",
                                     scrypt_log2_n=10)
        self.tls_key = pkifiles.new_tls_key()
        fsutil.atomic_write(directory / "device.key", self.tls_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
        self.template_key = template_key(self.keystore)
        self.agent: DoorAgent | None = None
        self.applied: list[Bundle] = []
        self.galleries: list[dict] = []

    def csr(self) -> bytes:
        return enrollment_csr(self.id, self.tls_key, public_bytes(self.template_key))

    def install(self, enrollment: Enrollment) -> None:
        assert enrollment.status == "active" and enrollment.cert_pem
        fsutil.atomic_write(self.dir / "device.pem", enrollment.cert_pem.encode(), 0o644)
        fsutil.atomic_write(self.dir / "ca.pem", enrollment.ca_pem.encode(), 0o644)
        fsutil.atomic_write(self.dir / "central.pub", enrollment.centre_pub_pem.encode(), 0o644)

    def mqtt_config(self, host: str, port: int) -> MqttConfig:
        return MqttConfig(device_id=self.id, host=host, port=port, ca_file=str(self.dir / "ca.pem"),
                          cert_file=str(self.dir / "device.pem"), key_file=str(self.dir / "device.key"),
                          management_pubkey_file=str(self.dir / "central.pub"), backoff_min_s=0.05,
                          backoff_max_s=0.5)

    def store(self) -> BundleStore:
        return BundleStore(self.dir / "fleet", self.id, load_public_key(self.dir / "central.pub"), self.template_key)

    def start_agent(self, host: str, port: int) -> DoorAgent:
        def on_applied(bundle: Bundle, gallery: dict) -> None:
            self.applied.append(bundle)
            self.galleries.append(gallery)

        self.agent = DoorAgent(self.mqtt_config(host, port), self.store(), on_applied)
        self.agent.start()
        return self.agent

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None

    def running_version(self) -> int:
        return self.agent.store.current_version() if self.agent else self.store().current_version()
