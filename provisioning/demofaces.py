"""Face frames for the demo, the runtime benchmark and the lock tests, from images a PyPI package ships.

Why scikit-image's images: ``make demo`` must run on a fresh machine with no data set and no network
beyond the package registries.  ``skimage.data.astronaut()`` (Eileen Collins, NASA, public domain) is
the enrolled person; the cameraman of ``skimage.data.camera()`` (a crop around his face) is the
stranger.  "Live" frames are small random similarity transforms (pose, distance, position) with
sensor noise and lighting changes; a "still photo" is one fixed frame with only sensor noise, as a
held-up print looks to a camera.

Frames are 640×480 RGB uint8, in memory; nothing here writes a face image to disk.
"""

from __future__ import annotations

import numpy as np

W, H = 640, 480
BACKGROUND = 60


def astronaut() -> np.ndarray:
    from skimage import data

    return np.asarray(data.astronaut())


def cameraman_face() -> np.ndarray:
    """The cameraman's head and shoulders (grey, as RGB)."""
    from skimage import data

    g = np.asarray(data.camera())[60:260, 135:335]
    return np.repeat(g[:, :, None], 3, axis=2)


def place(img: np.ndarray, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0, angle: float = 0.0,
          gain: float = 1.0, noise: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """The image on a 640×480 grey background, scaled to ``scale`` × frame height, moved and rotated."""
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale * H / max(h, w) * 0.95)
    m[0, 2] += W / 2 - w / 2 + dx
    m[1, 2] += H / 2 - h / 2 + dy
    out = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR,
                         borderValue=(BACKGROUND, BACKGROUND, BACKGROUND)).astype(np.float32)
    out *= gain
    if noise > 0:
        rng = rng or np.random.default_rng()
        out += rng.normal(0.0, noise, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def empty(noise: float = 2.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """A frame with nobody in it (a grey wall with sensor noise)."""
    rng = rng or np.random.default_rng()
    f = np.full((H, W, 3), BACKGROUND, np.float32) + rng.normal(0, noise, (H, W, 3)).astype(np.float32)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def live_sequence(img: np.ndarray, n: int, seed: int = 0, base_scale: float = 1.0) -> list[np.ndarray]:
    """n frames of a person moving slightly in front of the camera: pose, distance, light, noise."""
    rng = np.random.default_rng(seed)
    frames = []
    s, dx, dy, a = base_scale, 0.0, 0.0, 0.0
    for _ in range(n):
        s = float(np.clip(s + rng.normal(0, 0.01), base_scale * 0.9, base_scale * 1.1))
        dx = float(np.clip(dx + rng.normal(0, 4), -40, 40))
        dy = float(np.clip(dy + rng.normal(0, 3), -25, 25))
        a = float(np.clip(a + rng.normal(0, 1.0), -8, 8))
        frames.append(place(img, s, dx, dy, a, gain=float(rng.uniform(0.9, 1.1)), noise=2.0, rng=rng))
    return frames


def still_photo(img: np.ndarray, n: int, seed: int = 0, base_scale: float = 1.0) -> list[np.ndarray]:
    """n frames of a held-up photo: one fixed picture, only sensor noise changes."""
    rng = np.random.default_rng(seed)
    base = place(img, base_scale, 10, 5, 3)
    out = []
    for _ in range(n):
        f = base.astype(np.float32) + rng.normal(0, 2.0, base.shape).astype(np.float32)
        out.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
    return out


def held_photo(frame: np.ndarray, n: int, seed: int = 0) -> list[np.ndarray]:
    """n frames of one fixed picture (``frame``) held up to the camera: only sensor noise changes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = frame.astype(np.float32) + rng.normal(0, 2.0, frame.shape).astype(np.float32)
        out.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
    return out


def grace_hopper() -> np.ndarray:
    """matplotlib's sample photo of Grace Hopper (RGB), the demo's stranger."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


#: (scale, dx, dy, angle) that put each face at door-camera size in a 640×480 frame (IOD ~60 px)
NEAR = {"astronaut": (1.6, 10.0, 120.0, 3.0), "grace_hopper": (1.0, 0.0, 0.0, 0.0)}


def near(name: str) -> np.ndarray:
    """The named person's photo placed at door-camera size (see NEAR)."""
    img = astronaut() if name == "astronaut" else grace_hopper()
    s, dx, dy, a = NEAR[name]
    return place(img, s, dx, dy, a)


def live_person(frame: np.ndarray, landmarks: np.ndarray, n: int, seed: int = 0, **kw) -> list[np.ndarray]:
    """n frames of the person in ``frame`` shaking the head in 3-D and blinking (``synth.live_head``).

    ``landmarks``: the face mesh of ``frame`` (468×3, from the face pipeline).  Defaults: yaw ±30° with a
    10-frame period, pitch ±15° over 7 frames, a blink every 8 frames, noise σ 2.
    """
    from provisioning.research import synth

    return synth.live_head(frame, landmarks, n, seed=seed, **kw)


def enrolled() -> list[np.ndarray]:
    """Enrollment captures of the astronaut (several poses, as an enrollment session takes)."""
    img = astronaut()
    return [place(img, s, dx, 0, a) for s, dx, a in [(1.0, 0, 0), (0.9, 25, 4), (1.05, -25, -4), (0.95, 0, 7)]]


STRANGER_SCALE = 0.6  # the cameraman crop passes the quality gates (pose, size) at this scale


def blinking(img: np.ndarray, n: int, landmarks: np.ndarray, seed: int = 0, period: int = 12) -> list[np.ndarray]:
    """n frames of a person standing still and blinking every ``period`` frames, with sensor noise.

    The blink is the liveness package's eye-closing warp along the face mesh's eye contours
    (``landmarks`` from the face pipeline on ``img``); no global motion, so a flat photo's
    "moves as one plane" signature is absent.
    """
    from provisioning.research import synth

    rng = np.random.default_rng(seed)
    cycle = [0.0] * (period - 3) + [0.6, 1.0, 0.6]
    out = []
    for i in range(n):
        a = cycle[(i + period // 2) % period]
        f = synth.close_eyes(img, landmarks, a).astype(np.float32)
        f += rng.normal(0.0, 2.0, f.shape).astype(np.float32)
        out.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
    return out
