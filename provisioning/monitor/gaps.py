"""Which seqs of a device are missing: the one pure scan behind both monitor stores' resend requests
(provisioning.monitor.store for the monitor's SQLite file, central.monitor_store for the centre's database).

A device's seqs run 1, 2, 3 ...; the store keeps a contiguous mark (every seq up to it is stored) and
reads the stored seqs above it, ascending.  The holes between them are what the monitor asks the device
to publish again (`"resend": [[lo, hi], ...]` on its receipt topic).
"""

from __future__ import annotations

from collections.abc import Iterable

SCAN_LIMIT = 5000  # stored seqs read above the mark per gap check (the holes past them wait for the next)
RANGE_LIMIT = 16  # ranges per resend request (the device takes at most 64)


def missing_ranges(seqs: Iterable[int], contiguous: int, limit: int = RANGE_LIMIT) -> list[list[int]]:
    """The missing [lo, hi] ranges (inclusive) between `contiguous` and the stored `seqs` above it
    (ascending), at most `limit` of them.  A seq at or below the mark, or repeated, adds no range."""
    ranges: list[list[int]] = []
    prev = contiguous
    for seq in seqs:
        if seq > prev + 1:
            ranges.append([prev + 1, seq - 1])
            if len(ranges) >= limit:
                break
        prev = max(prev, seq)
    return ranges
