"""Typed errors of the keystore.

Each failure a caller can act on has its own class, so the daemon can tell a
missing TPM (hardware fault: stay locked, raise an event) from a wrong
passphrase (operator error) from a damaged store (restore from backup).
"""

from __future__ import annotations

from firmware.errors import FaceLockError


class KeystoreError(FaceLockError):
    """Base class of keystore failures."""


class InvalidKeyIdError(KeystoreError):
    """A key id is empty, too long or uses characters outside [A-Za-z0-9._:-]."""


class InvalidSecretError(KeystoreError, ValueError):
    """A secret given to create()/rotate() is not 16..64 bytes (a ValueError too, for older callers)."""


class KeyNotFoundError(KeystoreError):
    """No key (or no such version of a key) with this id."""


class KeyExistsError(KeystoreError):
    """create() was asked for an id that already exists (use rotate())."""


class CurrentVersionError(KeystoreError):
    """delete_version() was asked for the current version of a key (rotate first, or delete the key)."""


class KeystoreCorruptError(KeystoreError):
    """The keystore file is truncated, altered or not a FaceLock keystore."""


class KeystoreKdfError(KeystoreCorruptError):
    """The keystore file asks for KDF parameters above FaceLock's bounds (refused before the KDF runs)."""


class KeystoreUnlockError(KeystoreError):
    """The key-encryption key cannot be derived (device secret missing or unreadable)."""


class WrongPassphraseError(KeystoreUnlockError):
    """The passphrase (or device secret) does not open this keystore."""


class KeystoreBusyError(KeystoreError):
    """Another process holds the keystore lock for longer than the timeout."""


class TpmError(KeystoreError):
    """Base class of failures of the TPM backend."""


class TpmUnavailableError(TpmError):
    """No TPM answers on the configured TCTI (absent device, swtpm not running, no TSS library)."""


class TpmBindingError(TpmError):
    """The keystore was sealed by another TPM (data dir copied from another machine, or the TPM was cleared)."""


class TpmBusyError(TpmError):
    """The TPM asked to retry (busy, self-testing or out of object slots)."""


class TpmPolicyError(TpmError):
    """The TPM refused to unseal: the PCR policy does not match (the boot chain changed)."""
