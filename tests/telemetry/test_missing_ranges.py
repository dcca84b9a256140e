"""missing_ranges: the holes between a device's contiguous seq mark and its stored seqs above it (the
resend requests of both monitor stores come from this one function)."""

from __future__ import annotations

from provisioning.monitor.gaps import missing_ranges


def test_holes_between_the_mark_and_the_stored_seqs() -> None:
    assert missing_ranges([], 5) == []
    assert missing_ranges([6, 7, 8], 5) == []  # contiguous: nothing missing
    assert missing_ranges([8], 5) == [[6, 7]]
    assert missing_ranges([7, 9, 10, 14], 5) == [[6, 6], [8, 8], [11, 13]]
    assert missing_ranges([1, 2, 4], 0) == [[3, 3]]


def test_at_most_limit_ranges_and_no_range_from_repeats_or_old_seqs() -> None:
    seqs = list(range(2, 200, 2))  # every odd seq missing
    assert missing_ranges(seqs, 0, limit=3) == [[1, 1], [3, 3], [5, 5]]
    assert len(missing_ranges(seqs, 0)) == 16
    assert missing_ranges([3, 3, 5], 1) == [[2, 2], [4, 4]]
    assert missing_ranges([1, 2, 6], 4) == [[5, 5]]  # seqs at or below the mark are ignored


def test_a_generator_is_read_only_as_far_as_needed() -> None:
    read: list[int] = []

    def seqs():
        for s in range(2, 10_000, 2):
            read.append(s)
            yield s

    assert len(missing_ranges(seqs(), 0, limit=2)) == 2
    assert len(read) == 2
