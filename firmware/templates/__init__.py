"""Enrolled users with protected templates (encrypted embeddings + fuzzy-extractor helper data)."""

from firmware.templates.errors import (
    FleetUserConflictError,
    InvalidNameError,
    InvalidPolicyError,
    TemplateError,
    TemplateStoreCorruptError,
    UserNotFoundError,
    UserRevokedError,
    WrongFaceError,
)
from firmware.templates.store import (
    DB_NAME,
    Candidate,
    FleetPerson,
    FleetSync,
    RotationResult,
    TemplateStore,
    UserRecord,
)

__all__ = [
    "DB_NAME",
    "Candidate",
    "FleetPerson",
    "FleetSync",
    "FleetUserConflictError",
    "InvalidNameError",
    "InvalidPolicyError",
    "RotationResult",
    "TemplateError",
    "TemplateStore",
    "TemplateStoreCorruptError",
    "UserNotFoundError",
    "UserRecord",
    "UserRevokedError",
    "WrongFaceError",
]
