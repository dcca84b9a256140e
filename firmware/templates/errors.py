"""Typed errors of the enrolled-user (template) store."""

from __future__ import annotations

from firmware.biokey.errors import WrongFaceError  # re-exported: a wrong face is a template-store outcome too
from firmware.errors import FaceLockError

__all__ = [
    "InvalidNameError",
    "FleetUserConflictError",
    "InvalidPolicyError",
    "TemplateError",
    "TemplateStoreCorruptError",
    "UserNotFoundError",
    "UserRevokedError",
    "WrongFaceError",
]


class TemplateError(FaceLockError):
    """Base class of template-store failures."""


class UserNotFoundError(TemplateError):
    """No enrolled user with this id (never enrolled, or purged)."""


class UserRevokedError(TemplateError):
    """The user is revoked: they cannot unlock until reactivated."""


class InvalidNameError(TemplateError):
    """A user name is empty, too long or has control characters."""


class InvalidPolicyError(TemplateError):
    """A per-user policy is not a JSON object (or is too large)."""


class TemplateStoreCorruptError(TemplateError):
    """users.db is not a readable FaceLock database, or an encrypted field fails authentication."""


class FleetUserConflictError(TemplateError):
    """A person of the centre's bundle has the id of a user enrolled on the lock itself (never overwritten)."""
