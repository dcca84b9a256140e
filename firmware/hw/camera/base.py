"""The one camera interface every backend implements, its frame type and its typed errors.

Why one interface: the controller must not know whether frames come from a Pi camera, a USB webcam or
a folder replayed at a set rate; and a camera that stalls or disappears must look the same to it
(:class:`CameraGoneError` / :class:`CameraStalledError`), so it fails secure the same way for each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from firmware.errors import FaceLockError


class CameraError(FaceLockError):
    """Base class of camera failures."""


class CameraUnavailableError(CameraError):
    """The camera cannot be opened (absent device, missing backend library, missing replay source)."""


class CameraGoneError(CameraError):
    """The camera disappeared while running (unplugged, device node gone, source deleted)."""


class CameraStalledError(CameraError):
    """No frame arrived within the stall timeout."""


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # H×W×3 uint8, RGB
    index: int  # frame number since start (gaps = frames the consumer was too slow to take)
    ts: float  # time.monotonic() at which the frame was captured / presented


@runtime_checkable
class Camera(Protocol):
    name: str

    def start(self) -> None:
        """Open the device; raises CameraUnavailableError."""

    def read(self, timeout: float) -> Frame:
        """The next frame; raises CameraStalledError after ``timeout`` s, CameraGoneError if it vanished."""

    def close(self) -> None:
        """Release the device (idempotent)."""


def to_rgb(bgr: np.ndarray) -> np.ndarray:
    if bgr.ndim == 2:
        return np.repeat(bgr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(bgr[:, :, 2::-1]) if bgr.shape[2] >= 3 else bgr


def monotonic() -> float:
    return time.monotonic()
