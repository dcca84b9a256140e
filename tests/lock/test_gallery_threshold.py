"""1:N: the match threshold follows the number of people enrolled (issue 12), at start and on every live reload.

With ``[vision] stranger_far`` the door states a per-attempt promise; each enrolled person is one more chance
for a stranger, so the per-comparison FAR (and the threshold) must tighten as the gallery grows.  This runs
the daemon's code path: ``firmware.site`` builds the decider, ``LockRuntime.tick`` polls ``users.db`` and
reloads, with the shipped manifest's FAR curve, real SQLite and the template store, and mock pins.
"""

from __future__ import annotations

import numpy as np
import pytest

from firmware.config import CameraConfig, Config, DeviceConfig, LockConfig
from firmware.hw.camera.replay import ReplayCamera
from firmware.hw.gpio import LockIO
from firmware.keystore import KeystoreConfig
from firmware.lock.runtime import LockRuntime
from firmware.lock.statemachine import State
from firmware.site import open_site
from firmware.vision.config import VisionConfig
from provisioning import demofaces as df


def random_people(n: int, dim: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.normal(size=dim)
        out.append(np.stack([base + 0.05 * rng.normal(size=dim) for _ in range(3)]).astype(np.float32))
    return out


@pytest.fixture
def lock_site(tmp_path, mock_pins, pipeline):
    def make(stranger_far: float):
        ks = KeystoreConfig(scrypt_log2_n=10, device_secret_path=str(tmp_path / "etc" / "device.secret"))
        cfg = Config(device=DeviceConfig(id="gallery-door", data_dir=str(tmp_path / "data")),
                     lock=LockConfig(liveness="off", fault_retry_initial_s=0.05, fault_retry_max_s=0.2),
                     camera=CameraConfig(backend="replay", source="mem", fps=30, stall_timeout_s=0.5),
                     sections={"keystore": ks, "vision": VisionConfig(stranger_far=stranger_far, gallery_size=1)})
        site = open_site(cfg)
        site.data_dir.mkdir(parents=True, exist_ok=True)
        with site.templates() as store:
            store.enroll("astronaut", np.stack([pipeline.process(f).embedding for f in df.enrolled()]))
        io = LockIO(cfg.gpio, pin_factory=mock_pins)
        rng = np.random.default_rng(3)
        users = site.users()
        rt = LockRuntime(cfg, io, lambda: ReplayCamera([df.empty(rng=rng) for _ in range(5)], fps=30, loop=True),
                         lambda: site.decider(num_threads=1), site.audit(), None, users=users)
        rt.bring_up()
        made.append((rt, io, users))
        return site, rt

    made: list = []
    yield make
    for rt, io, users in made:
        rt.shutdown("test")
        users.close()
        io.close()
        rt.audit.close()


def test_threshold_tightens_as_people_are_enrolled_and_relaxes_when_they_leave(lock_site):
    site, rt = lock_site(1e-3)
    pipe = site.pipeline()
    assert rt.snap.state is State.IDLE, rt.fault_reason
    t1 = rt.decider.threshold
    assert t1 == pytest.approx(pipe.threshold(enrolled=1))
    ids = []
    with site.templates() as store:
        for i, embs in enumerate(random_people(19, site.embedding_dim(), seed=1)):
            ids.append(store.enroll(f"person{i}", embs))
    rt.tick()  # the daemon's loop: the generation moved, the users (and the threshold) are reloaded
    assert len(rt.decider.enrolled.gallery) == 20
    t20 = rt.decider.threshold
    assert t20 == pytest.approx(pipe.threshold(enrolled=20)) and t20 > t1
    reloads = [r for r in rt.audit.records() if r.kind == "users_reloaded"]
    assert reloads[-1].data["users"] == 20 and reloads[-1].data["threshold"] == pytest.approx(t20, abs=1e-4)
    with site.templates() as store:
        for uid in ids[:15]:
            store.revoke(uid)
    rt.tick()
    assert len(rt.decider.enrolled.gallery) == 5
    assert rt.decider.threshold == pytest.approx(pipe.threshold(enrolled=5)) and rt.decider.threshold < t20


def test_a_gallery_the_calibration_cannot_vouch_for_faults_instead_of_matching(lock_site):
    """stranger_far = 1e-5 holds for 1 person (per comparison 1e-5) but not for 20 (5e-7 is below the curve's
    lowest held point): the lock goes to FAULT with the relay off rather than match on an unvouched threshold."""
    site, rt = lock_site(1e-5)
    assert rt.snap.state is State.IDLE, rt.fault_reason
    with site.templates() as store:
        for i, embs in enumerate(random_people(19, site.embedding_dim(), seed=2)):
            store.enroll(f"person{i}", embs)
    rt.tick()
    assert rt.snap.state is State.FAULT and not rt.io.relay_energized
    assert "20 enrolled" in (rt.fault_reason or ""), rt.fault_reason
