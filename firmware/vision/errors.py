"""Typed errors of the face pipeline.

Every error derives from :class:`firmware.errors.FaceLockError`, so the daemon can fail secure on any
of them with one except clause and the CLI can print them as one line.
"""

from __future__ import annotations

from firmware.errors import FaceLockError


class VisionError(FaceLockError):
    """Base class of the face pipeline's errors."""


class ModelError(VisionError):
    """A model or the model manifest cannot be used."""


class ModelManifestError(ModelError):
    """The model manifest is missing, unreadable or does not describe the requested model."""


class ModelMissingError(ModelError):
    """A model file named by the manifest is not on disk (run `make models` or `make install`)."""


class ResearchModelNotInstalledError(ModelMissingError):
    """A research-only embedder is configured but not installed in the overlay (`facelock models
    install-research`): the lock stops (FAULT) instead of falling back to another model, whose threshold
    and templates would not fit."""


class ModelIntegrityError(ModelError):
    """A model file's sha256 differs from the manifest: the file was altered or corrupted."""


class RuntimeUnavailableError(VisionError):
    """Neither ai-edge-litert nor tflite-runtime can be imported."""


class ModelLoadError(ModelError):
    """The TFLite runtime refused the model file, or its tensors do not match the manifest."""


class InvalidImageError(VisionError):
    """An image array has the wrong type, shape, size or dtype."""


class ImageDecodeError(InvalidImageError):
    """Bytes or a file could not be decoded as an image (empty, corrupt, truncated or not an image)."""


class ImageTooLargeError(InvalidImageError):
    """An image is larger than the pipeline accepts (guards memory on the device)."""


class NotCalibratedError(VisionError):
    """The manifest holds no calibrated threshold for the requested model and operating point."""


class GalleryError(VisionError):
    """The gallery was used wrongly (empty enrollment, wrong embedding size, unknown user)."""


class EmbedderMismatchError(GalleryError):
    """Templates and probe come from different embedders (their sizes differ, e.g. 192-d MobileFaceNet
    templates against a 512-d research embedder): scores between them mean nothing, so every user must be
    re-enrolled with the configured embedder (or the embedder they were enrolled with configured again)."""
