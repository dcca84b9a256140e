"""Fixtures of the provisioning CLI tests.

Two real people without ../shared: person A is scikit-image's `astronaut`
(Eileen Collins, public domain, NASA) and person B is matplotlib's sample
`grace_hopper.jpg` (public domain, US Navy); both ship inside PyPI packages in
the dev extras.  "Frames" for enrollment and probes are small geometric and
photometric variants of each photo (shift, scale, rotation, brightness, JPEG
re-encoding), like consecutive camera frames; probes use variants that the
enrollment never saw.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

PASSPHRASE = "correct horse battery staple"


def person_a() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


def person_b() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def variant(rgb: np.ndarray, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0, angle: float = 0.0,
            brightness: int = 0) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += (dx, dy)
    out = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(out.astype(np.int16) + brightness, 0, 255).astype(np.uint8)


ENROLL_VARIANTS = [dict(), dict(scale=0.95, dx=8, dy=4, brightness=8), dict(scale=1.04, dx=-6, dy=-3, brightness=-8),
                   dict(angle=3, dx=4)]
PROBE_VARIANT = dict(scale=0.98, dx=-4, dy=6, angle=-2, brightness=12)


def save(path: Path, rgb: np.ndarray, fmt: str = "PNG", quality: int = 92) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    path.write_bytes(buf.getvalue())
    return path


@dataclass(frozen=True)
class Faces:
    a_dir: Path  # enrollment frames of A
    b_dir: Path
    a_probe: Path  # an unseen capture of A
    b_probe: Path
    secret: Path  # an ordinary photo to encrypt (JPEG, bit-exactness matters)
    not_image: Path
    no_face: Path  # a real image with no face in it


@pytest.fixture(scope="session")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Faces:
    import skimage.data

    root = tmp_path_factory.mktemp("faces")
    out = {}
    for name, rgb in (("a", person_a()), ("b", person_b())):
        d = root / name
        d.mkdir()
        for i, v in enumerate(ENROLL_VARIANTS):
            save(d / f"frame{i}.{'jpg' if i % 2 else 'png'}", variant(rgb, **v), "JPEG" if i % 2 else "PNG")
        out[name] = d
        save(root / f"{name}_probe.jpg", variant(rgb, **PROBE_VARIANT), "JPEG", quality=85)
    secret = save(root / "secret.jpg", skimage.data.coffee(), "JPEG", quality=90)
    not_image = root / "notes.txt"
    not_image.write_text("this is not an image\n")
    no_face = save(root / "cat.png", skimage.data.chelsea())
    return Faces(out["a"], out["b"], root / "a_probe.jpg", root / "b_probe.jpg", secret, not_image, no_face)


class Cli:
    """Runs `facelock ...` in-process with a data dir and the passphrase in the environment."""

    def __init__(self, data_dir: Path, passphrase: str | None = PASSPHRASE):
        self.data_dir = data_dir
        self.ca_dir = data_dir.with_name(data_dir.name + "-ca")  # the management host's CA directory
        self.passphrase = passphrase

    def __call__(self, *args: str | Path, data_dir: Path | None = None, env: dict | None = None,
                 ok: bool | None = None) -> Result:
        from provisioning.cli import main

        full_env = {"FACELOCK_PASSPHRASE": self.passphrase} if self.passphrase is not None else {}
        full_env["FACELOCK_CA_DIR"] = str(self.ca_dir)  # the CA never goes into the lock's data dir
        full_env.update(env or {})
        argv = [str(a) for a in args]
        # --data-dir goes after the subcommand path (options belong to the leaf command)
        argv += ["--data-dir", str(data_dir or self.data_dir)]
        result = CliRunner().invoke(main, argv, env=full_env, catch_exceptions=True)
        if ok is True:
            assert result.exit_code == 0, (argv, result.output, result.exception)
        if ok is False:
            assert result.exit_code != 0, (argv, result.output)
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    d = tmp_path / "data"
    return Cli(d)


def assert_one_line_error(result: Result, code: int | None = None, match: str | None = None) -> None:
    """A refused command: non-zero exit, exactly one `facelock: error:` line, no traceback."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.output)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("facelock: error: ") or lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.output
    if match:
        assert re.search(match, lines[0]), lines[0]


def env_without_passphrase() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "FACELOCK_PASSPHRASE"}
