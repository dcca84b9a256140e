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

from firmware.hw.camera.base import (
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
            path = self._files[k]
            if not self.path or not self.path.is_dir():
                raise CameraGoneError(f"replay folder {self.path} disappeared")
            img = _read_image(path)
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


def read_ppm(path: Path) -> np.ndarray:
    """A binary PPM (P6, 8-bit) as RGB, read with numpy alone.

    Why: raw frames need no decoder, which is how a camera delivers them; benchmarks replay PPM folders so
    the daemon's memory and latency are not those of an image codec (OpenCV's costs the process ~45 MB).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CameraGoneError(f"replay frame {path} disappeared") from None
    except OSError as exc:
        raise CameraGoneError(f"replay frame {path} cannot be read: {exc.strerror or exc}") from None
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:  # magic, width, height, maxval; '#' comments allowed between them
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.find(b"\n", pos) + 1 or len(data)
            continue
        end = pos
        while end < len(data) and not data[end:end + 1].isspace():
            end += 1
        if end == pos:
            break
        fields.append(data[pos:end])
        pos = end
    try:
        if len(fields) != 4 or fields[0] != b"P6" or int(fields[3]) != 255:
            raise ValueError("not an 8-bit binary PPM (P6)")
        w, h = int(fields[1]), int(fields[2])
        pixels = np.frombuffer(data, np.uint8, count=w * h * 3, offset=pos + 1)
    except ValueError as exc:
        raise CameraGoneError(f"replay frame {path} cannot be decoded: {exc}") from None
    return pixels.reshape(h, w, 3).copy()


def _read_image(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".ppm":
        return read_ppm(path)
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        if not path.exists():
            raise CameraGoneError(f"replay frame {path} disappeared")
        raise CameraGoneError(f"replay frame {path} cannot be decoded")
    return to_rgb(bgr)


def write_replay_folder(folder: str | Path, frames: Sequence[np.ndarray], suffix: str = ".png") -> Path:
    """Write RGB frames as numbered images (what ``ReplayCamera(folder)`` reads), for tests and benches.

    ``suffix`` ".png" (compressed) or ".ppm" (raw: read back without a decoder, see :func:`read_ppm`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if suffix not in (".png", ".ppm"):
        raise CameraUnavailableError(f"replay frames are written as .png or .ppm, not {suffix}")
    for i, f in enumerate(frames):
        p = folder / f"{i:06d}{suffix}"
        tmp = p.with_name(p.name + ".tmp")
        rgb = np.ascontiguousarray(f, dtype=np.uint8)
        if suffix == ".ppm":
            tmp.write_bytes(b"P6\n%d %d\n255\n" % (rgb.shape[1], rgb.shape[0]) + rgb.tobytes())
        else:
            import cv2

            ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
            if not ok:
                raise CameraUnavailableError(f"cannot encode {p}")
            tmp.write_bytes(buf.tobytes())
        os.replace(tmp, p)
    return folder
