"""Typed errors of the centre.  The CLI turns each into one line on stderr and its exit code."""

from __future__ import annotations

from firmware.errors import FaceLockError


class CentralError(FaceLockError):
    """Base class: bad input or an operation the centre's state refuses."""

    exit_code = 1


class DatabaseUnavailable(CentralError):
    """The database cannot be reached (down, restarting, wrong URL).  Nothing was written; retry later."""

    exit_code = 5


class NotFound(CentralError):
    """No such device, person, group or door."""


class AlreadyExists(CentralError):
    """A device, person, group or door of that name exists already."""


class OnboardingError(CentralError):
    """An enrollment request was refused: bad CSR, bad or used token, revoked or unknown device."""


class KeyError_(CentralError):
    """The centre's keystore or one of its keys cannot be opened."""


class BrokerSyncError(CentralError):
    """The registry changed, but the broker's accounts could not be updated (the broker is unreachable or
    refused); `facelock-central devices sync` repeats it."""

    exit_code = 6
