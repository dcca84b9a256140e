"""Replay camera: a folder of images, a video file or in-memory frames, presented at a set frame rate.

It behaves like a real sensor, not like a file reader: frame k is *presented* at ``t0 + k / fps``
whether or not anyone reads it, and a slow consumer gets the newest frame (older ones are dropped,
as a real camera's ring buffer would).  That keeps latency figures honest: a benchmark on replayed
frames measures the same "face appeared -> relay" time a real camera would give.

A replay source that vanishes while running (folder or file deleted/renamed) raises
:class:`CameraGoneError`, which is how tests simulate an unplugged camera without hardware.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from firmware.camera.base import (
    CameraGoneError,
    CameraStalledError,
    CameraUnavailableError,
    Frame,
    to_rgb,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mjpeg", ".mjpg")


class ReplayCamera:
    """``ReplayCamera(source, fps)`` where source is a folder, a video file, or a sequence of RGB arrays."""

    def __init__(self, source: str | Path | Sequence[np.ndarray], fps: float = 15.0, loop: bool = True,
                 size: tuple[int, int] | None = None):
        if fps <= 0:
            raise CameraUnavailableError(f"replay fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.loop = loop
        self.size = size  # (width, height) to resize to, None = as stored
        self._frames: Sequence[np.ndarray] | None = None
        self._files: list[Path] = []
        self._video = None
        self._video_pos = -1
        self._last_img: np.ndarray | None = None
        if isinstance(source, (str, Path)):
            self.path: Path | None = Path(source)
            self.name = f"replay:{self.path}"
        else:
            self.path = None
            self._frames = source
            self.name = "replay:memory"
        self.t0: float | None = None
        self._next = 0
        self.delivered = 0

    # -- source access ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.path is not None:
            if self.path.is_dir():
                self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if not self._files:
                    raise CameraUnavailableError(f"replay folder {self.path} holds no images")
            elif self.path.is_file() and self.path.suffix.lower() in VIDEO_SUFFIXES:
                self._open_video()
            elif self.path.exists():
                raise CameraUnavailableError(f"replay source {self.path} is neither a folder nor a video")
            else:
                raise CameraUnavailableError(f"replay source {self.path} does not exist")
        elif not self._frames:
            raise CameraUnavailableError("replay camera has no frames")
        self.t0 = time.monotonic()
        self._next = 0

    def _open_video(self) -> None:
        import cv2

        assert self.path is not None
        self._video = cv2.VideoCapture(str(self.path))
        if not self._video.isOpened():
            raise CameraUnavailableError(f"cannot open replay video {self.path}")
        self._video_pos = -1
        self._n_video = int(self._video.get(cv2.CAP_PROP_FRAME_COUNT)) or 0

    def __len__(self) -> int:
        if self._frames is not None:
            return len(self._frames)
        if self._files:
            return len(self._files)
        return max(getattr(self, "_n_video", 0), 1)

    def _load(self, k: int) -> np.ndarray:
        if self._frames is not None:
            img = np.asarray(self._frames[k])
        elif self._files:
            import cv2

            path = self._files[k]
            if not self.path or not self.path.is_dir():
                raise CameraGoneError(f"replay folder {self.path} disappeared")
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                if not path.exists():
                    raise CameraGoneError(f"replay frame {path} disappeared")
                raise CameraGoneError(f"replay frame {path} cannot be decoded")
            img = to_rgb(bgr)
        else:
            img = self._read_video(k)
        if self.size is not None and (img.shape[1], img.shape[0]) != self.size:
            import cv2

            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        return img

    def _read_video(self, k: int) -> np.ndarray:
        import cv2

        assert self._video is not None and self.path is not None
        if not self.path.exists():
            raise CameraGoneError(f"replay video {self.path} disappeared")
        if k < self._video_pos:
            self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._video_pos = -1
        img = self._last_img
        while self._video_pos < k:
            ok, bgr = self._video.read()
            if not ok:
                raise CameraGoneError(f"replay video {self.path} ended or became unreadable at frame {k}")
            self._video_pos += 1
            img = to_rgb(bgr)
        self._last_img = img
        assert img is not None
        return img

    # -- the camera contract -----------------------------------------------------------------------
    def read(self, timeout: float) -> Frame:
        if self.t0 is None:
            raise CameraUnavailableError("replay camera not started")
        n = len(self)
        now = time.monotonic()
        newest = int((now - self.t0) * self.fps)  # the frame being presented right now
        k = max(self._next, newest)
        if not self.loop and k >= n:
            raise CameraGoneError(f"{self.name}: end of replay after {n} frames")
        present_at = self.t0 + k / self.fps
        wait = present_at - now
        if wait > timeout:
            time.sleep(max(timeout, 0))
            raise CameraStalledError(f"{self.name}: no frame within {timeout:.2f} s")
        if wait > 0:
            time.sleep(wait)
        img = self._load(k % n)
        self._next = k + 1
        self.delivered += 1
        return Frame(img, k, present_at)

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
        self.t0 = None


def write_replay_folder(folder: str | Path, frames: Sequence[np.ndarray]) -> Path:
    """Write RGB frames as numbered PNGs (what ``ReplayCamera(folder)`` reads), for tests and benches."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        p = folder / f"{i:06d}.png"
        tmp = p.with_suffix(".tmp.png")
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(f[:, :, ::-1])):
            raise CameraUnavailableError(f"cannot write {tmp}")
        os.replace(tmp, p)
    return folder
