"""Typed errors of the biometric-key (fuzzy extractor) layer."""

from __future__ import annotations

from firmware.errors import FaceLockError


class BiokeyError(FaceLockError):
    """Base class of fuzzy-extractor failures."""


class InvalidEmbeddingError(BiokeyError):
    """The embedding has the wrong shape, is not finite, or is all zeros."""


class HelperDataError(BiokeyError):
    """Helper data is truncated, of an unknown version, or inconsistent."""


class WrongFaceError(BiokeyError):
    """The probe face is too far from the enrolled one: the biometric key cannot be regenerated."""
