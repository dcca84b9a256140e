"""Alert notifications: console lines and a JSON webhook (POST), the latter off the monitor's I/O thread."""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import urllib.error
import urllib.request
from typing import TextIO

from provisioning.monitor.rules import Alert
from provisioning.monitor.sanitize import printable

log = logging.getLogger("facelock.monitor")


def alert_dict(alert: Alert) -> dict:
    return {"rule": alert.rule, "device": alert.device, "ts": alert.ts, "detail": alert.detail,
            "event_id": alert.event_id}


class ConsoleNotifier:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def notify(self, alert: Alert) -> None:
        # The detail quotes device-supplied text: escaped, never interpreted by the terminal.
        print(f"ALERT {printable(alert.rule)} device={printable(alert.device)} {printable(alert.detail)}",
              file=self.stream, flush=True)

    def close(self) -> None:
        pass


class WebhookNotifier:
    """POSTs each alert as JSON to `url`; a slow or failing endpoint never blocks the monitor."""

    def __init__(self, url: str, timeout_s: float = 5.0, max_queue: int = 1000) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.sent = 0
        self.failed = 0
        self._q: queue.Queue[Alert | None] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="facelock-webhook", daemon=True)
        self._thread.start()

    def notify(self, alert: Alert) -> None:
        try:
            self._q.put_nowait(alert)
        except queue.Full:
            self.failed += 1
            log.warning("webhook queue full; alert %s for %s dropped from the webhook (it is stored)",
                        alert.rule, alert.device)

    def _run(self) -> None:
        while True:
            alert = self._q.get()
            if alert is None:
                return
            body = json.dumps({"facelock_alert": alert_dict(alert)}).encode()
            req = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    resp.read(1024)
                self.sent += 1
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.failed += 1
                log.warning("webhook POST failed: %s", exc.__class__.__name__)

    def close(self, timeout: float = 5.0) -> None:
        self._q.put(None)
        self._thread.join(timeout)
