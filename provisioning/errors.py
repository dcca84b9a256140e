"""Typed errors of the provisioning side (the `facelock` CLI).

Each carries the process exit code the CLI turns it into (see the README's
"Provisioning CLI" section): 1 for bad input or a refused operation, 3 for a
check that ran and failed (a face that did not verify), 4 for a data dir that
is not ready (CA or device not initialised).
"""

from __future__ import annotations

from firmware.errors import FaceLockError

EXIT_ERROR = 1
EXIT_CHECK_FAILED = 3
EXIT_NOT_INITIALISED = 4


class ProvisioningError(FaceLockError):
    """Base class: bad input or an operation the data dir's state refuses."""

    exit_code = EXIT_ERROR


class PassphraseError(ProvisioningError):
    """No passphrase was given, it could not be read, or it is wrong."""


class InputFileError(ProvisioningError):
    """An input file is missing, unreadable or not what the command needs (e.g. not an image)."""


class AlreadyExistsError(ProvisioningError):
    """The CA, device, user name or output file already exists and --force was not given."""


class NotInitialisedError(ProvisioningError):
    """The data dir has no CA or no initialised device yet (run `facelock ca init` / `device init`)."""

    exit_code = EXIT_NOT_INITIALISED


class UnknownUserError(ProvisioningError):
    """No enrolled user has that name or id."""


class FaceRefusedError(ProvisioningError):
    """The presented face did not verify as the required user (or no usable face was found)."""

    exit_code = EXIT_CHECK_FAILED


class LivenessFailedError(FaceRefusedError):
    """The camera burst looked like a photo, a screen or a mask (spoof suspected)."""


class BackupError(ProvisioningError):
    """A backup bundle is malformed, of an unknown version, or fails authentication."""
