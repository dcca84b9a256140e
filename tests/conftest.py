"""Shared pytest fixtures.

`shared_faces` gives the research face set in ../shared/faces (or
$FACELOCK_SHARED/faces) and skips, with the reason, where it is absent, so a
fresh clone without it still passes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
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


_MACHINE_DIR: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """The test run is one "machine": its file-keystore device secret lives in a private temp dir.

    The keystore keeps the device secret outside the data dir (default /etc/facelock/device.secret);
    tests must neither write /etc nor share a secret with the host, so they point
    $FACELOCK_DEVICE_SECRET at a temp dir (subprocesses inherit it).  Tests that play a second
    machine set their own.
    """
    global _MACHINE_DIR
    if "FACELOCK_DEVICE_SECRET" not in os.environ:
        _MACHINE_DIR = tempfile.mkdtemp(prefix="facelock-test-machine-")
        os.environ["FACELOCK_DEVICE_SECRET"] = str(Path(_MACHINE_DIR) / "etc" / "device.secret")


_EXIT_STATUS: int | None = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _EXIT_STATUS
    _EXIT_STATUS = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Clean up, then leave with pytest's own exit status, skipping interpreter finalisation.

    Why: one full run on this machine printed "763 passed" and then died with SIGSEGV while the interpreter
    was tearing down (native libraries - LiteRT, OpenCV - unloading under daemon threads such as paho's loop
    or a camera grabber that a test left behind).  The verdict is pytest's, already printed; the threads still
    alive are listed so the leak can be chased.  The exit status is unchanged: a failure stays a failure.
    """
    if _MACHINE_DIR is not None:
        shutil.rmtree(_MACHINE_DIR, ignore_errors=True)
    if _EXIT_STATUS is None:
        return
    alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if alive:
        sys.stderr.write(f"conftest: {len(alive)} thread(s) still alive at exit: {', '.join(sorted(alive)[:20])}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS)
