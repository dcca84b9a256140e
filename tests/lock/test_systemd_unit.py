"""The shipped systemd unit passes `systemd-analyze verify` and keeps its hardening and watchdog."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "firmware" / "systemd" / "facelockd.service"


def test_unit_verifies(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (make system-deps installs the systemd package)")
    text = UNIT.read_text()
    daemon = Path(sys.executable).parent / "facelockd"
    assert daemon.exists(), "facelockd console script missing: pip install -e ."
    # verify checks that ExecStart exists: point it at this machine's facelockd, nothing else changes
    local = tmp_path / "facelockd.service"
    local.write_text(text.replace("/usr/local/bin/facelockd", str(daemon)))
    r = subprocess.run([exe, "verify", str(local)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "facelockd.service" not in r.stderr, r.stderr  # no warnings about our unit


def test_unit_hardening_and_watchdog():
    text = UNIT.read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, flags=re.M))
    assert settings["Type"] == "notify" and int(settings["WatchdogSec"]) > 0
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/facelock",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "RestrictSUIDSGID": "yes",
                       "RestartPreventExitStatus": "78", "DevicePolicy": "closed"}.items():
        assert settings.get(key) == value, key
    assert settings["User"] != "root"
