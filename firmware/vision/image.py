"""Decoding and validating images: every bad input becomes a typed error, never a crash."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from firmware.vision.errors import ImageDecodeError, ImageTooLargeError, InvalidImageError

MAX_PIXELS = 40_000_000  # ~ 7300×5500; a camera frame is 0.3–12 MP
MAX_BYTES = 64 * 1024 * 1024
MIN_SIDE = 16


def validate_rgb(img: object) -> np.ndarray:
    """Return img as a contiguous HxWx3 uint8 RGB array or raise InvalidImageError.

    Accepts HxW grey and HxWx4 RGBA (alpha dropped); float arrays are refused (ambiguous range).
    """
    if not isinstance(img, np.ndarray):
        raise InvalidImageError(f"expected a numpy image array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise InvalidImageError(f"expected uint8 pixels, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise InvalidImageError(f"expected HxWx3 RGB, got shape {img.shape}")
    h, w = img.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InvalidImageError(f"image {w}x{h} is smaller than {MIN_SIDE}x{MIN_SIDE}")
    if h * w > MAX_PIXELS:
        raise ImageTooLargeError(f"image {w}x{h} exceeds {MAX_PIXELS} pixels")
    return np.ascontiguousarray(img[:, :, :3])


def decode_image(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, PGM/PPM, GIF, BMP, ...) to HxWx3 uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageDecodeError(f"expected image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageDecodeError("empty image data")
    if len(data) > MAX_BYTES:
        raise ImageTooLargeError(f"image data of {len(data)} bytes exceeds {MAX_BYTES}")
    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageTooLargeError(f"image {w}x{h} exceeds {MAX_PIXELS} pixels")
            im.seek(0)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(str(exc)) from exc
    return validate_rgb(rgb)


def load_image(path: str | Path) -> np.ndarray:
    """Read and decode an image file; errors name the file."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise ImageTooLargeError(f"{p}: {size} bytes exceeds {MAX_BYTES}")
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"{p}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError(f"{p}: is a directory") from exc
    except OSError as exc:
        raise ImageDecodeError(f"{p}: cannot read: {exc}") from exc
    try:
        return decode_image(data)
    except InvalidImageError as exc:
        raise type(exc)(f"{p}: {exc}") from exc
