"""`make demo-central` runs end to end and every step comes out as expected (exit 0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_central_passes_every_step() -> None:
    r = subprocess.run([sys.executable, "-m", "central.demo"], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200"), timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "all steps as expected" in r.stdout
    for step in ("astronaut at door A (in the group)", "astronaut at door B (not granted)",
                 "astronaut at door A after revocation"):
        assert step in r.stdout
