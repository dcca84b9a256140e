"""The one error type for invalid configuration (shared by every config section)."""

from __future__ import annotations

from firmware.errors import FaceLockError


class ConfigError(FaceLockError):
    """A configuration key is unknown or its value is invalid (the message names the key and why)."""
