"""Device keystore: create / unseal / rotate / delete secrets by id, sealed by a TPM or a file KEK.

    from firmware.keystore import KeystoreConfig, open_keystore
    ks = open_keystore(KeystoreConfig(backend="tpm", tpm_pcrs=(7,)), data_dir)
    ks.create("templates")
    key = ks.unseal("templates")
    ks.rotate("templates"); ...; ks.delete_version("templates", 1)   # after re-encrypting
"""

from firmware.keystore.base import Keystore
from firmware.keystore.config import KeystoreConfig
from firmware.keystore.errors import (
    CurrentVersionError,
    InvalidKeyIdError,
    InvalidSecretError,
    KeyExistsError,
    KeyNotFoundError,
    KeystoreBusyError,
    KeystoreCorruptError,
    KeystoreError,
    KeystoreKdfError,
    KeystoreUnlockError,
    TpmBindingError,
    TpmBusyError,
    TpmError,
    TpmPolicyError,
    TpmUnavailableError,
    WrongPassphraseError,
)
from firmware.keystore.factory import keystore_dir, open_keystore

__all__ = [
    "CurrentVersionError",
    "InvalidKeyIdError",
    "InvalidSecretError",
    "KeyExistsError",
    "KeyNotFoundError",
    "Keystore",
    "KeystoreBusyError",
    "KeystoreConfig",
    "KeystoreCorruptError",
    "KeystoreError",
    "KeystoreKdfError",
    "KeystoreUnlockError",
    "TpmBindingError",
    "TpmBusyError",
    "TpmError",
    "TpmPolicyError",
    "TpmUnavailableError",
    "WrongPassphraseError",
    "keystore_dir",
    "open_keystore",
]
