"""Typed errors of the lock's fleet side."""

from __future__ import annotations

from firmware.errors import FaceLockError


class FleetError(FaceLockError):
    """Base class of the fleet-side errors."""


class BundleRejected(FleetError):
    """A policy bundle was refused; `reason` is a short machine-readable cause sent back in the ack."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SealError(FleetError):
    """A sealed template could not be opened (wrong door key, tampered, or bound to another context)."""
