"""One site: the CLI and the daemon resolve the same keystore from the same config.

Before, the CLI picked the TPM whenever /dev/tpmrm0 existed while the daemon fell back to the file
keystore, so on a Pi with a TPM and no [keystore] section enrolment and unlock used different keystores.
Here a real swtpm stands in for the Pi's TPM (``$FACELOCK_TPM_TCTI``, the documented way to point the
site at a TPM that is not /dev/tpmrm0), the config has no [keystore], the CLI enrols in a subprocess and
the real daemon unlocks for that face.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from firmware.audit import AuditLog
from firmware.config import Config, DeviceConfig
from firmware.hw.camera.replay import write_replay_folder
from firmware.site import ENV_TPM_TCTI, default_keystore_config, open_site
from provisioning import demofaces as df
from tests.support.cli import facelock
from tests.support.daemon import daemon_env, start, wait_status, write_config


def test_without_keystore_section_the_tpm_is_used_when_there_is_one(tmp_path):
    assert default_keystore_config({ENV_TPM_TCTI: "swtpm:host=127.0.0.1,port=1"}).backend == "tpm"
    assert default_keystore_config({}).backend == ("tpm" if __import__("os").path.exists("/dev/tpmrm0") else "file")
    site = open_site(Config(device=DeviceConfig(data_dir=str(tmp_path))))
    assert site.data_dir == tmp_path and site.status_path == tmp_path / "status.json"


@pytest.fixture
def swtpm(tmp_path):
    from tests.support.swtpm import Swtpm

    tpm = Swtpm(tmp_path / "swtpm-state")
    tpm.start()
    yield tpm
    tpm.stop()


def test_cli_enroll_and_daemon_unlock_share_the_tpm_keystore(tmp_path, swtpm, monkeypatch):
    from PIL import Image

    from firmware.vision import FacePipeline

    secret = tmp_path / "etc" / "device.secret"
    monkeypatch.setenv(ENV_TPM_TCTI, swtpm.tcti)
    monkeypatch.setenv("FACELOCK_DEVICE_SECRET", str(secret))  # the file keystore's, which must stay unused
    pipe = FacePipeline.from_manifest(num_threads=1)
    base = df.near("astronaut")
    write_replay_folder(tmp_path / "frames", df.live_person(base, pipe.process(base).primary.mesh.points, 40, seed=1))
    (tmp_path / "enroll").mkdir()
    for i, f in enumerate(df.enrolled()):
        Image.fromarray(np.asarray(f, dtype=np.uint8)).save(tmp_path / "enroll" / f"{i}.png")
    cfg = write_config(tmp_path)
    text = cfg.read_text()
    cfg.write_text(text.replace("[keystore]\nscrypt_log2_n = 10\n", ""))
    assert "[keystore]" not in cfg.read_text()
    data = tmp_path / "data"
    facelock(data, "ca", "init", config=cfg)
    facelock(data, "device", "init", "--id", "kill-test", config=cfg)
    uid = facelock(data, "enroll", "Eileen Collins", "--images", tmp_path / "enroll", config=cfg).stdout.strip()
    assert uid
    env = daemon_env(tmp_path)
    env[ENV_TPM_TCTI] = swtpm.tcti
    env["FACELOCK_DEVICE_SECRET"] = str(secret)
    p = start(cfg, env=env)
    try:
        s = wait_status(data, p.pid, timeout=90)
        assert s["state"] == "IDLE", s["fault"]
        end = time.monotonic() + 60
        granted = []
        while not granted and time.monotonic() < end:
            with AuditLog(data / "audit.db", readonly=True) as log:
                granted = [r for r in log.records() if r.kind == "granted"]
            time.sleep(0.1)
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert granted, err[-2000:]
    assert not secret.exists()  # nobody fell back to the file keystore
