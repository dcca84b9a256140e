"""Fixtures of the lock suite: gpiozero mock pins, the real face pipeline, an enrolled gallery, a harness."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from firmware.audit import AuditLog
from firmware.config import CameraConfig, Config, DeviceConfig, LockConfig
from firmware.hw.camera.replay import ReplayCamera
from firmware.hw.gpio import LockIO
from firmware.lock.decider import AttemptDecider, AttemptRules
from firmware.lock.runtime import LockRuntime
from firmware.site import OutboxSink
from tests.support.decider import make_decider


@pytest.fixture
def mock_pins():
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    old = Device.pin_factory
    f = MockFactory()
    Device.pin_factory = f
    yield f
    f.reset()
    Device.pin_factory = old


@pytest.fixture(scope="session")
def pipeline():
    from firmware.vision import FacePipeline

    return FacePipeline.from_manifest(num_threads=2)


@pytest.fixture(scope="session")
def threshold(pipeline) -> float:
    """The shipped, calibrated unlock threshold (the product's; a manifest without one fails the suite)."""
    return pipeline.threshold("unlock")


@pytest.fixture(scope="session")
def gallery(pipeline):
    from firmware.vision import Gallery
    from provisioning import demofaces

    g = Gallery(dim=int(pipeline.embedder_spec.output_size))
    embs = [pipeline.process(f).embedding for f in demofaces.enrolled()]
    assert all(e is not None for e in embs)
    g.enroll("astronaut", embs)
    return g


@dataclass
class Harness:
    ctl: LockRuntime
    io: LockIO
    audit: AuditLog
    camera: ReplayCamera
    data_dir: Path
    steps: list
    closed: bool = False

    def run_until(self, cond: Callable[[], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.ctl.tick()
            if cond():
                return True
        return False

    def relay_pin_high(self) -> bool:
        return bool(self.io.factory.pin(self.ctl.cfg.gpio.relay_pin).state)

    def rows(self) -> list[str]:
        return [s.row for s, _ in self.steps if s.row]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.ctl.shutdown("test")
        self.io.close()
        self.audit.close()
        self.ctl.events.close()


@pytest.fixture
def make_harness(tmp_path, mock_pins):
    made: list[Harness] = []

    def make(frames: Sequence[np.ndarray] | str | Path, decider_factory: Callable[[], AttemptDecider],
             lock: LockConfig | None = None, fps: float = 30.0, camera: CameraConfig | None = None,
             cfg: Config | None = None) -> Harness:
        data = tmp_path / f"data{len(made)}"
        data.mkdir()
        cfg = cfg or Config()
        cfg = replace(cfg, device=DeviceConfig(id="test-door", data_dir=str(data)),
                      lock=lock or LockConfig(unlock_s=0.5, verify_timeout_s=2.0, denied_s=0.2,
                                              fault_retry_initial_s=0.05, fault_retry_max_s=0.2),
                      camera=camera or CameraConfig(backend="replay", source="mem", fps=fps,
                                                    stall_timeout_s=0.5))
        steps: list = []
        io = LockIO(cfg.gpio, pin_factory=mock_pins)
        audit = AuditLog(data / "audit.db")
        cams: list[ReplayCamera] = []

        def camera_factory():
            cam = ReplayCamera(frames, fps=fps, loop=True)
            cams.append(cam)
            return cam

        rules = AttemptRules.from_lock(cfg.lock)

        def decider() -> AttemptDecider:  # the harness's [lock] attempt rules, as the site would set them
            d = decider_factory()
            d.rules = rules
            return d

        ctl = LockRuntime(cfg, io, camera_factory, decider, audit, OutboxSink(data / "outbox.db", "test-door"),
                          status_path=data / "status.json", on_step=lambda s, i: steps.append((s, i)))
        ctl.bring_up()
        h = Harness(ctl, io, audit, cams[-1] if cams else None, data, steps)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def stages(pipeline, gallery, threshold):
    """A decider factory: face pipeline + gallery, without liveness (tests of liveness build their own)."""
    return lambda: make_decider(pipeline, gallery, threshold)


@pytest.fixture(scope="session")
def liveness():
    """The shipped liveness policy, loaded as the daemon loads it ([lock] liveness = "required")."""
    from firmware.config import Config
    from firmware.site import open_site

    return open_site(Config()).liveness()
