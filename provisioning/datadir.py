"""Where the provisioning commands keep things inside a data dir, and the checks for "initialised".

One place names every path, so commands, backup and tests agree:

    pki/ca.key, pki/ca.crt                 management CA (key wrapped with the passphrase, provisioning.keywrap)
    pki/cmd_signing.key, pki/cmd_signing.pub  Ed25519 command-signing key (key wrapped)
    pki/issued/<device>.crt                certificates this CA issued (a record)
                                           (the pki/ entries live in the CA directory on the management
                                           host, pkifiles.default_ca_dir, never in a lock's data dir)
    device/device.json                     the device's config bundle: id, broker, key backend
    device/ca.crt, device/device.crt       its trust anchor and its client certificate
    device/device.key                      its TLS key when it is not sealed by the keystore
    device/mgmt_cmd.pub                    the management public key commands are checked with
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioning.errors import NotInitialisedError, ProvisioningError

DEVICE_JSON_VERSION = 1


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def ca_key(self) -> Path:
        return self.pki / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def cmd_key(self) -> Path:
        return self.pki / "cmd_signing.key"

    @property
    def cmd_pub(self) -> Path:
        return self.pki / "cmd_signing.pub"

    def issued(self, device_id: str) -> Path:
        return self.pki / "issued" / f"{device_id}.crt"

    @property
    def device(self) -> Path:
        return self.root / "device"

    @property
    def device_json(self) -> Path:
        return self.device / "device.json"

    @property
    def device_cert(self) -> Path:
        return self.device / "device.crt"

    @property
    def device_key(self) -> Path:
        return self.device / "device.key"

    @property
    def device_ca(self) -> Path:
        return self.device / "ca.crt"

    @property
    def device_mgmt_pub(self) -> Path:
        return self.device / "mgmt_cmd.pub"

    @property
    def keystore(self) -> Path:
        return self.root / "keystore"

    @property
    def users_db(self) -> Path:
        return self.root / "users.db"

    @property
    def audit_db(self) -> Path:
        return self.root / "audit.db"

    def has_ca(self) -> bool:
        return self.ca_key.is_file() and self.ca_cert.is_file()

    def require_ca(self) -> None:
        if not self.has_ca():
            raise NotInitialisedError(f"no management CA in {self.root}: run `facelock ca init` first")

    def has_device(self) -> bool:
        return self.device_json.is_file()

    def require_device(self) -> dict[str, Any]:
        """The device's config bundle; NotInitialisedError before `facelock device init`."""
        if not self.has_device():
            raise NotInitialisedError(
                f"no device initialised in {self.root}: run `facelock device init --id ID` first"
            )
        return self.device_config()

    def device_config(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.device_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProvisioningError(f"{self.device_json} is unreadable or corrupt: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("version") != DEVICE_JSON_VERSION or "device_id" not in doc:
            raise ProvisioningError(f"{self.device_json} is not a FaceLock device bundle of version {DEVICE_JSON_VERSION}")
        return doc
