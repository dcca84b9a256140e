"""Benchmark helper process: the "lock controller" that puts events into a shared outbox file.

Prints "ready", waits for a line on stdin, puts N access_granted events as fast as it can, prints the
seconds it took.  Not a CLI command (the leading underscore keeps it out of `facelock bench`).
"""

from __future__ import annotations

import sys
import time

from firmware.telemetry.events import make_event
from firmware.telemetry.outbox import Outbox


def main() -> None:
    path, device, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    outbox = Outbox(path)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    for _ in range(n):
        outbox.put(make_event(device, "access_granted", user_id="u-bench", scores={"match": 0.91}))
    print(f"{time.perf_counter() - t0:.6f}", flush=True)
    outbox.close()


if __name__ == "__main__":
    main()
