"""Typed errors of the crypto layer."""

from __future__ import annotations

from firmware.errors import FaceLockError


class CryptoError(FaceLockError):
    """Base class of crypto failures."""


class ContainerFormatError(CryptoError):
    """The bytes are not a well-formed FaceLock container (garbage or truncated)."""


class UnsupportedVersionError(ContainerFormatError):
    """The container's version or algorithm id is unknown to this build."""


class WrongKeyError(CryptoError):
    """The container was sealed under a different key (key ids differ)."""


class AuthenticationError(CryptoError):
    """The AEAD tag did not verify: the container was altered or the key is wrong."""


class ImageDecodeError(CryptoError):
    """The input is not a decodable image."""


class KdfParameterError(CryptoError):
    """Stored KDF parameters ask for more memory or work than FaceLock allows (refused before any KDF runs)."""
