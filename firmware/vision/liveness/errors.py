"""Typed errors of the liveness module.

All derive from :class:`firmware.vision.errors.VisionError` (and so from FaceLockError), so the daemon's
fail-secure handler catches them with the rest of the face pipeline's errors.
"""

from __future__ import annotations

from firmware.vision.errors import VisionError


class LivenessError(VisionError):
    """Base class of the liveness module's errors."""


class LivenessInputError(LivenessError):
    """A per-frame input (landmarks, embedding, face crop, timestamp) has the wrong shape, type or value."""


class PadModelError(LivenessError):
    """The PAD model / calibration file is missing, malformed or fails its sha256 check."""
