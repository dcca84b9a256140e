"""A grabber thread in front of a blocking capture call, so a hung driver becomes a stall, not a hang.

Why: ``cv2.VideoCapture.read`` and picamera2's capture can block forever when a USB camera is
unplugged or the CSI cable is loose.  The controller must keep its loop (watchdog, timers, door
inputs) running, so capture happens on a daemon thread and :meth:`read` waits with a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from firmware.hw.camera.base import CameraError, CameraGoneError, CameraStalledError, Frame


class GrabberThread:
    def __init__(self, grab: Callable[[], np.ndarray], name: str):
        self._grab = grab
        self.name = name
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._error: CameraError | None = None
        self._stop = threading.Event()
        self._index = 0
        self._next = 0  # the reader's cursor: each read returns a frame it has not seen
        self._thread = threading.Thread(target=self._run, name=f"grab-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                img = self._grab()
            except CameraError as exc:
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            except Exception as exc:  # noqa: BLE001 - any driver failure means the camera is gone
                with self._cond:
                    self._error = CameraGoneError(f"{self.name}: capture failed: {type(exc).__name__}: {exc}")
                    self._cond.notify_all()
                return
            with self._cond:
                self._frame = Frame(img, self._index, time.monotonic())
                self._index += 1
                self._cond.notify_all()

    def read(self, timeout: float) -> Frame:
        """The newest frame the reader has not seen yet (older unread ones are dropped, like a sensor)."""
        frame = self._wait(timeout, self._next)
        self._next = frame.index + 1
        return frame

    def _wait(self, timeout: float, after: int) -> Frame:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                if self._frame is not None and self._frame.index >= after:
                    return self._frame
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CameraStalledError(f"{self.name}: no frame within {timeout:.2f} s")
                self._cond.wait(left)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
