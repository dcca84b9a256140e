"""The ``facelock`` CLI as a subprocess (what an installer runs), with the test's passphrase and CA dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"


def facelock(data_dir: Path, *args: str | Path, config: Path | None = None, ok: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, FACELOCK_PASSPHRASE=PASSPHRASE, FACELOCK_CA_DIR=str(Path(data_dir).with_name("ca")),
               PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "provisioning.cli", *map(str, args), "--data-dir", str(data_dir)]
    if config is not None:
        argv += ["--config", str(config)]
    r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert r.returncode == 0, (argv, r.stdout[-1000:], r.stderr[-2000:])
    return r
