"""Login rate limit per client address (pure; time passed in): at most `limit` attempts per `window_s`.

This slows a brute force from one address; the per-account lockout (central.console.operators) stops a
distributed one against one account.  Kept in memory: a console restart forgets it, the lockout stays.
"""

from __future__ import annotations

import threading
from collections import deque


class LoginThrottle:
    def __init__(self, limit: int = 10, window_s: float = 60.0, max_clients: int = 10000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str, now: float) -> float:
        """0.0 when this attempt may go ahead (and counts it), else the seconds to wait."""
        with self._lock:
            q = self._hits.get(client)
            if q is None:
                if len(self._hits) >= self.max_clients:  # bounded memory: forget the stalest client
                    self._hits.pop(min(self._hits, key=lambda c: self._hits[c][-1] if self._hits[c] else 0))
                q = self._hits[client] = deque()
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                return max(0.1, q[0] + self.window_s - now)
            q.append(now)
            return 0.0
