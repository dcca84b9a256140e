"""Shared pytest fixtures.

`shared_faces` gives the research face set in ../shared/faces (or
$FACELOCK_SHARED/faces) and skips, with the reason, where it is absent, so a
fresh clone without it still passes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_root() -> Path:
    env = os.environ.get("FACELOCK_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    faces = shared_root() / "faces"
    if not (faces / "pairs.csv").is_file():
        pytest.skip(f"needs the research face set at {faces} (absent in a fresh clone; CI has it)")
    return faces
