"""Exponential reconnect backoff with jitter (pure; the random source is injected for tests).

"Equal jitter": the n-th delay is uniform in [d/2, d] with d = min(cap, base * 2**n), so a fleet of locks
that lost the broker at the same moment does not reconnect in lock-step, yet no lock waits near zero.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(self, base_s: float, cap_s: float, rng: Callable[[], float] = random.random) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.rng = rng
        self.attempt = 0

    def next_delay(self) -> float:
        d = min(self.cap_s, self.base_s * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return d / 2 + self.rng() * d / 2

    def reset(self) -> None:
        self.attempt = 0
