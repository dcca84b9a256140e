"""Reconnect backoff (pure) and a smoke run of `facelock bench mqtt` (shape only; speed is not asserted)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from firmware.telemetry.backoff import Backoff
from provisioning.cli import main as cli


def test_backoff_grows_exponentially_with_jitter_and_caps() -> None:
    lo = Backoff(0.5, 8.0, rng=lambda: 0.0)
    hi = Backoff(0.5, 8.0, rng=lambda: 1.0)
    assert [lo.next_delay() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [hi.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    hi.reset()
    assert hi.next_delay() == 0.5
    real = Backoff(1.0, 1.0)
    assert len({real.next_delay() for _ in range(20)}) > 1  # jittered


def test_bench_mqtt_prints_the_promised_json() -> None:
    res = CliRunner().invoke(cli, ["bench", "mqtt", "--json", "--events", "300", "--rounds", "1"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output.strip().splitlines()[-1])
    for key in ("outbox_events_per_s", "bare_paho_per_s", "ratio"):
        assert data[key] > 0
    assert data["latency_ms"]["p50"] <= data["latency_ms"]["p99"]
    assert abs(data["ratio"] - data["outbox_events_per_s"] / data["bare_paho_per_s"]) < 0.01
