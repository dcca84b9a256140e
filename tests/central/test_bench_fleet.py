"""`facelock bench fleet` runs end to end at a small size (the 1,000-door figures are for the closing note):
every event stored once, every door acknowledges the push and the revocation, the bare reference ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_fleet_small() -> None:
    r = subprocess.run([sys.executable, "-m", "provisioning.cli", "bench", "fleet", "--json", "--doors", "20",
                        "--per-process", "10", "--events", "10", "--rate", "5", "--tamper-every", "50"],
                       cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    ing = res["ingest"]
    assert ing["complete"] and ing["sent"] == 200 and ing["lost"] == 0 and ing["duplicated"] == 0
    assert res["revocation_complete"] and res["bare_insert"]["complete"]
    assert res["alert_latency_ms"]["alerts"] == res["alert_latency_ms"]["tampers"] == 4
    assert 0 < res["ratio_vs_bare"]
