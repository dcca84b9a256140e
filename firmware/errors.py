"""The root of FaceLock's typed errors.

Every failure a caller can act on derives from FaceLockError, so the daemon
can fail secure on any of them with one except clause, and the CLI can turn
them into one-line messages.  Each subpackage defines its own subclasses next
to the code that raises them.
"""

from __future__ import annotations


class FaceLockError(Exception):
    """Base class of every error FaceLock raises on purpose."""


class NativeError(FaceLockError):
    """The C core refused its arguments (a bug in the caller, never bad data)."""


class NativeUnavailableError(NativeError):
    """The compiled native module is missing: run `make install`."""
