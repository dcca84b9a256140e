"""Issue 11.6: a photo pulled away before the attempt's last frame must still count toward lockout.

The attack: hold a photo of an enrolled user up for fewer frames than ``max_frames_per_attempt``, pull it
away (the attempt ends by face loss before liveness had its full window) and try again.  Before the fix
every such attempt was "abandoned": 1,400 failed liveness verdicts in 200 tries, 0 failures counted,
0 ``spoof_suspected`` events.  Here the real daemon (replay camera, mock GPIO, shipped models and liveness
calibration, liveness required) watches that attack on a loop.
"""

from __future__ import annotations

import signal
import sqlite3
import time

import numpy as np

from firmware.audit import AuditLog
from firmware.hw.camera.replay import write_replay_folder
from provisioning import demofaces as df
from tests.support.daemon import daemon_env, start, status, wait_status, write_config

PHOTO_FRAMES = 7  # >= frames_per_attempt and liveness' minimum, < max_frames_per_attempt (10)
MAX_FAILURES = 3


def enroll_astronaut(data) -> None:
    from firmware.keystore import KeystoreConfig, open_keystore
    from firmware.templates import TemplateStore
    from firmware.vision import FacePipeline

    pipe = FacePipeline.from_manifest(num_threads=1)
    embs = np.stack([pipe.process(f).embedding for f in df.enrolled()])
    with TemplateStore(data, open_keystore(KeystoreConfig(scrypt_log2_n=10), data)) as store:
        store.enroll("Astronaut", embs)


def outbox_types(data) -> list[str]:
    con = sqlite3.connect(data / "outbox.db")
    try:
        return [r[0] for r in con.execute("SELECT type FROM events")]
    finally:
        con.close()


def test_photo_pulled_away_early_counts_as_a_spoof_and_locks_out(tmp_path):
    rng = np.random.default_rng(11)
    photo = df.held_photo(df.near("astronaut"), PHOTO_FRAMES, seed=2)
    cycle = photo + [df.empty(rng=rng) for _ in range(12)]  # at 6 fps: the photo ~1.2 s, then 2 s away
    write_replay_folder(tmp_path / "frames", cycle)
    cfg = write_config(tmp_path, extra=f"[policy]\nmax_failures = {MAX_FAILURES}\nbase_lockout_s = 60\n")
    cfg.write_text(cfg.read_text().replace('liveness = "auto"', 'liveness = "required"').replace("fps = 30", "fps = 6"))
    data = tmp_path / "data"
    enroll_astronaut(data)
    p = start(cfg, env=daemon_env(tmp_path))
    try:
        s = wait_status(data, p.pid, timeout=60)
        assert s["state"] == "IDLE", s["fault"]
        end = time.monotonic() + 240
        while time.monotonic() < end:
            s = status(data) or {}
            assert not s.get("relay_energized"), "a photo opened the door"
            if s.get("backoff_level", 0) >= 1:
                break
            time.sleep(0.2)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    s = status(data)
    assert s["backoff_level"] >= 1 and s["spoof"] >= MAX_FAILURES, (s, err[-1500:])
    with AuditLog(data / "audit.db", readonly=True) as log:
        kinds = [r.kind for r in log.records()]
        assert not any(k == "granted" for k in kinds)
        assert kinds.count("spoof_suspected") >= MAX_FAILURES - 1 and "lockout" in kinds, kinds[-20:]
        assert log.verify().ok
    assert outbox_types(data).count("spoof_suspected") >= MAX_FAILURES
