"""OpenCV camera: a V4L2 device (index or /dev/videoN) or a video file, read on a grabber thread."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from firmware.hw.camera.base import CameraGoneError, CameraUnavailableError, Frame, to_rgb
from firmware.hw.camera.threaded import GrabberThread


class OpenCVCamera:
    def __init__(self, source: str | int = 0, width: int = 640, height: int = 480, fps: float = 15.0):
        self.source = source
        self.width, self.height, self.fps = width, height, fps
        self.name = f"opencv:{source}"
        self._cap = None
        self._grabber: GrabberThread | None = None

    def _device_path(self) -> Path | None:
        s = str(self.source)
        if s.isdigit():
            return Path(f"/dev/video{s}")
        if s.startswith("/dev/"):
            return Path(s)
        return None

    def start(self) -> None:
        import cv2

        dev = self._device_path()
        if dev is not None and not dev.exists():
            raise CameraUnavailableError(f"camera device {dev} does not exist (unplugged?)")
        if dev is None and not os.path.exists(str(self.source)):
            raise CameraUnavailableError(f"video file {self.source} does not exist")
        src: str | int = int(str(self.source)) if str(self.source).isdigit() else str(self.source)
        cap = cv2.VideoCapture(src, cv2.CAP_V4L2) if dev is not None else cv2.VideoCapture(src)
        if not cap.isOpened():
            raise CameraUnavailableError(f"OpenCV cannot open {self.source}")
        if dev is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        self._cap = cap
        self._grabber = GrabberThread(self._grab, self.name)
        self._grabber.start()

    def _grab(self) -> np.ndarray:
        assert self._cap is not None
        dev = self._device_path()
        if dev is not None and not dev.exists():
            raise CameraGoneError(f"camera device {dev} disappeared")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise CameraGoneError(f"{self.name}: read failed (unplugged or end of file)")
        return to_rgb(bgr)

    def read(self, timeout: float) -> Frame:
        if self._grabber is None:
            raise CameraUnavailableError(f"{self.name} not started")
        return self._grabber.read(timeout)

    def close(self) -> None:
        if self._grabber is not None:
            self._grabber.stop()
            self._grabber = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
