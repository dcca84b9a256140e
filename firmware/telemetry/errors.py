"""Typed errors of the telemetry layer (events, outbox, commands, MQTT client)."""

from __future__ import annotations

from firmware.errors import FaceLockError


class TelemetryError(FaceLockError):
    """Base class of telemetry failures."""


class EventDecodeError(TelemetryError):
    """The bytes are not a valid FaceLock event (not JSON, wrong types, too big, forbidden field)."""


class UnknownEventVersionError(EventDecodeError):
    """The event declares a schema version this build does not know."""


class EventValidationError(TelemetryError, ValueError):
    """An event being *created* has bad fields (unknown type, bad severity, image data...)."""


class OutboxError(TelemetryError):
    """The outbox database could not be opened or written."""


class CommandRejected(TelemetryError):
    """A command was refused; `reason` is a short machine-readable word, reported in an event."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"command rejected: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.detail = detail


class TelemetryTLSError(TelemetryError):
    """The TLS material (CA, certificate, key) is missing or unusable."""
