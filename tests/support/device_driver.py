"""A device process for the reliability test: puts events until the outbox has seen `total`, publishing
through TelemetryClient, then idles until killed.

The count of events ever created is the outbox's own last seq (committed atomically with each event), so
a SIGKILL at any instant followed by a restart creates exactly `total` events, never one more.
"""

from __future__ import annotations

import json
import sys
import time

from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.config import MqttConfig
from firmware.telemetry.events import make_event
from firmware.telemetry.outbox import Outbox


def main() -> None:
    cfg = MqttConfig(**json.loads(sys.argv[1]))
    outbox = Outbox(sys.argv[2])
    total, rate = int(sys.argv[3]), float(sys.argv[4])
    client = TelemetryClient(cfg, outbox)
    client.start()
    start, made = time.monotonic(), 0
    while outbox.last_seq() < total:
        outbox.put(make_event(cfg.device_id, "access_granted", user_id="u1", n=outbox.last_seq() + 1))
        made += 1
        ahead = made / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
