"""Faces in, embeddings out: the capture side of enroll / encrypt / decrypt.

Images (a folder for enrollment, one probe for verification) or a camera run
through the device's own face pipeline with its quality gates; a camera
capture also goes through liveness, because only a camera can show life.  A
folder of stills is an operator's import, not a live presentation, so no
liveness verdict is claimed for it (the output says so).

Faces are personal data: aligned crops and embeddings stay in memory here and
are handed to the template store, which is the only thing that persists them
(encrypted).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from provisioning.errors import FaceRefusedError, InputFileError, LivenessFailedError, ProvisioningError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

_PIPELINE = None
LIVENESS_WINDOW_S = 3.0  # a blink takes ~0.3 s; people blink every 2-10 s, so look for a few seconds


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence fd 2 while the TFLite runtime loads: it prints an INFO banner there from C++.

    A scripted caller relies on stderr holding exactly one line on error; the
    banner is not ours to print.  Errors still arrive as typed exceptions.
    FACELOCK_DEBUG=1 keeps the runtime's output.
    """
    if os.environ.get("FACELOCK_DEBUG"):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _lock_embedder() -> tuple[str | None, str, Path | None]:
    """(manifest, embedder, research overlay) of the lock this command works on.

    Why: templates must come from the embedder the lock matches with.  With ``[vision] embedder`` set in
    the device config (``--config``, as resolved by provisioning.options) enrollment and probes use that
    embedder, a research-only one from ``<data_dir>/models``; otherwise the manifest's default.
    """
    import click

    from firmware.vision.manifest import research_dir
    from provisioning.options import load_config

    ctx = click.get_current_context(silent=True)
    cfg = load_config(ctx.meta.get("facelock.config") if ctx is not None else None)
    vision = cfg.sections.get("vision") if cfg is not None else None
    if vision is None or not vision.embedder:  # the shipped default: no overlay involved
        return (vision.manifest or None) if vision is not None else None, "embedder", None
    data_dir = ctx.params.get("data_dir") if ctx is not None else None
    return vision.manifest or None, vision.embedder, research_dir(data_dir) if data_dir is not None else None


def pipeline():
    """The face pipeline of models/manifest.json (sha256-checked) with the lock's configured embedder,
    loaded once per process and per (manifest, embedder, overlay)."""
    global _PIPELINE
    key = _lock_embedder()
    if _PIPELINE is None or _PIPELINE[0] != key:
        from firmware.vision import FacePipeline

        manifest, embedder, overlay = key
        with _quiet_native_stderr():
            _PIPELINE = (key, FacePipeline.from_manifest(manifest, embedder=embedder, overlay=overlay))
    return _PIPELINE[1]


@dataclass
class Capture:
    embeddings: list[np.ndarray] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    liveness: object | None = None  # LivenessDecision for a camera capture
    sources: list[str] = field(default_factory=list)


def load_rgb(path: Path) -> np.ndarray:
    """Decode an image file; missing, unreadable and non-image files become InputFileError."""
    from firmware.vision import InvalidImageError, load_image

    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    try:
        return load_image(p)
    except InvalidImageError as exc:
        msg = str(exc)
        raise InputFileError(msg if str(p) in msg else f"{p}: {msg}") from exc


def list_images(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.exists():
        raise InputFileError(f"{folder}: no such directory")
    if not folder.is_dir():
        raise InputFileError(f"{folder}: not a directory")
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise InputFileError(f"{folder}: cannot list: {exc.strerror}") from exc
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise InputFileError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def from_images(folder: Path, frames: int, progress: Callable[[int, str], None] | None = None) -> Capture:
    """Embeddings of up to ``frames`` images of the folder that pass the quality gates."""
    cap = Capture()
    pipe = pipeline()
    for path in list_images(folder):
        if len(cap.embeddings) >= frames:
            break
        try:
            rgb = load_rgb(path)
        except InputFileError:
            cap.rejected.append((path.name, "not a decodable image"))
            if progress:
                progress(0, f"{path.name}: not an image")
            continue
        res = pipe.process(rgb)
        if res.ok and res.embedding is not None:
            cap.embeddings.append(res.embedding.astype(np.float32))
            cap.sources.append(path.name)
            if progress:
                progress(1, f"{path.name}: ok")
        else:
            cap.rejected.append((path.name, res.reason.describe()))
            if progress:
                progress(0, f"{path.name}: {res.reason.describe()}")
    return cap


def camera_frames(source: str, max_frames: int, timeout_s: float) -> Iterator[tuple[float, np.ndarray]]:
    """(t, RGB frame) from a camera: a V4L2 index or /dev/videoN, "picamera2", or a replay source.

    Live sources go through the lock's own camera backends (firmware.hw.camera), so
    a missing or unplugged camera is the same typed error the daemon sees.  A
    folder of images or a video file is replayed *deterministically*, every
    frame in order with t = k/30 s: a scripted enrollment gives the same result
    however busy the machine is.
    """
    path = Path(source)
    if path.is_dir():
        for i, p in enumerate(list_images(path)[:max_frames]):
            yield i / 30.0, load_rgb(p)
        return
    if path.is_file():
        yield from _video_frames(path, max_frames)
        return
    from firmware.hw.camera.base import CameraStalledError

    if source == "picamera2":
        from firmware.hw.camera.picamera import PiCamera

        cam = PiCamera()
    elif source.isdigit() or source.startswith("/dev/"):
        from firmware.hw.camera.opencv_camera import OpenCVCamera

        cam = OpenCVCamera(source)
    else:
        raise InputFileError(f"camera {source!r} cannot be opened: not a device index, /dev/videoN, "
                             "picamera2, a video file or a folder of images")
    with _quiet_native_stderr():
        cam.start()  # CameraUnavailableError (a FaceLockError): one line
    try:
        t0 = time.monotonic()
        for _ in range(max_frames):
            if time.monotonic() - t0 > timeout_s:
                break
            try:
                frame = cam.read(timeout=2.0)
            except CameraStalledError:
                break
            yield frame.ts - t0, frame.rgb
    finally:
        cam.close()


def _video_frames(path: Path, max_frames: int) -> Iterator[tuple[float, np.ndarray]]:
    import cv2

    with _quiet_native_stderr():
        cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputFileError(f"camera {str(path)!r} cannot be opened: not a video file OpenCV can read")
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        for k in range(max_frames):
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            yield k / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def from_camera(source: str, frames: int, progress: Callable[[int, str], None] | None = None,
                timeout_s: float = 30.0, liveness: bool = True) -> Capture:
    """Embeddings of ``frames`` good frames and the liveness decision over the whole burst."""
    from firmware.vision.liveness.adapter import frame_from_result

    pipe = pipeline()
    cap = Capture()
    live_frames = []
    t_first: float | None = None
    for t, rgb in camera_frames(source, max_frames=frames * 10 + int(LIVENESS_WINDOW_S * 30), timeout_s=timeout_s):
        t_first = t if t_first is None else t_first
        res = pipe.process(rgb)
        lf = frame_from_result(res, t=t, pipeline=pipe)
        if lf is not None:
            live_frames.append(lf)
        if res.ok and res.embedding is not None:
            if len(cap.embeddings) < frames:
                cap.embeddings.append(res.embedding.astype(np.float32))
                cap.sources.append(f"frame@{t:.2f}s")
                if progress:
                    progress(1, "ok")
        else:
            cap.rejected.append((f"frame@{t:.2f}s", res.reason.describe()))
            if progress:
                progress(0, res.reason.describe())
        # enough good frames, and a window long enough to see a blink or head motion
        if len(cap.embeddings) >= frames and (not liveness or t - t_first >= LIVENESS_WINDOW_S):
            break
    if liveness:
        if not live_frames:
            raise FaceRefusedError("no face seen by the camera")
        cap.liveness = liveness_policy().decide(live_frames)
        if not cap.liveness.live:  # type: ignore[attr-defined]
            reasons = "; ".join(cap.liveness.reasons)  # type: ignore[attr-defined]
            raise LivenessFailedError(f"liveness check failed (spoof suspected): {reasons}")
    return cap


def liveness_policy():
    """The liveness policy of the config file's [liveness] section, else the shipped defaults."""
    from firmware.vision.liveness import LivenessPolicy
    from provisioning.options import load_config
    from provisioning.stores import config_path

    cfg = load_config(config_path())
    section = cfg.sections.get("liveness") if cfg is not None else None
    return LivenessPolicy.from_files(section)


def default_camera_source() -> str:
    """The lock's own camera from the config file's [camera] section, else V4L2 device 0."""
    from provisioning.options import load_config
    from provisioning.stores import config_path

    cfg = load_config(config_path())
    if cfg is None:
        return "0"
    cam = cfg.camera
    if cam.backend == "picamera2":
        return "picamera2"
    return cam.source or "0"


def probe_embedding(probe: Path | None, camera: str | None, frames: int = 5) -> tuple[np.ndarray, str]:
    """One verification embedding: from --probe IMAGE (scripting, tests) or a live camera burst.

    Without either, the lock's camera is used (see default_camera_source).
    Returns (unit embedding, how). A probe image with no usable face is refused (FaceRefusedError).
    """
    if probe is not None and camera is not None:
        raise ProvisioningError("give either --probe IMAGE or --camera SOURCE, not both")
    if probe is None and camera is None:
        camera = default_camera_source()
    if probe is not None:
        rgb = load_rgb(Path(probe))
        res = pipeline().process(rgb)
        if not res.ok or res.embedding is None:
            raise FaceRefusedError(f"{probe}: no usable face ({res.reason.describe()})")
        return res.embedding.astype(np.float32), "probe image (no liveness)"
    cap = from_camera(camera, frames)  # type: ignore[arg-type]
    if not cap.embeddings:
        raise FaceRefusedError("the camera gave no usable face: " + "; ".join(r for _, r in cap.rejected[-3:]))
    from firmware.vision import template_from

    return template_from(np.stack(cap.embeddings)), "camera (liveness passed)"
