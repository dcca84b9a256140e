"""Fixtures of the face-pipeline tests: real models from models/manifest.json, faces from scikit-image.

Nothing here needs ../shared: the face is scikit-image's astronaut (Eileen Collins, a public-domain NASA
portrait) and transformed copies of it; the impostor is scikit-image's cameraman.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from firmware.vision import FacePipeline, Manifest


@pytest.fixture(scope="session")
def manifest() -> Manifest:
    return Manifest.load()


@pytest.fixture(scope="session")
def pipeline(manifest) -> FacePipeline:
    return FacePipeline.from_manifest(manifest)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def cameraman() -> np.ndarray:
    return np.ascontiguousarray(np.repeat(data.camera()[:, :, None], 3, axis=2))
