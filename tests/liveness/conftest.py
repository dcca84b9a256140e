"""Fixtures for the liveness suite: a real face mesh from the real landmark model on a real photo.

The photo is scikit-image's bundled ``astronaut`` (public domain, NASA), so nothing here needs ../shared.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def pipe():
    from firmware.vision.pipeline import FacePipeline

    return FacePipeline.from_manifest()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def astronaut_mesh(pipe, astronaut) -> np.ndarray:
    res = pipe.process(astronaut)
    assert res.primary is not None and res.primary.mesh is not None
    return res.primary.mesh.points.astype(np.float64)


@pytest.fixture(scope="session")
def astronaut_near(astronaut) -> np.ndarray:
    """The photo at 1.6x: a face as large as a door camera sees it at ~50 cm (IOD ~67 px), inside the range
    the blink thresholds were calibrated on (the original's 42 px is below it)."""
    import cv2

    return cv2.resize(astronaut, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="session")
def astronaut_near_mesh(pipe, astronaut_near) -> np.ndarray:
    res = pipe.process(astronaut_near)
    assert res.primary is not None and res.primary.mesh is not None
    return res.primary.mesh.points.astype(np.float64)
