"""The backup bundle format (provisioning/backup.py): round trip, wrong passphrase, tampering, bounds."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning import backup
from provisioning.errors import BackupError, PassphraseError

FAST = 10  # scrypt log2(N) for tests; the default (15) is what the CLI writes


def test_round_trip():
    entries = {"users.db": b"\x00SQLite" * 100, "keystore/x": bytes(range(256))}
    blob = backup.seal(b"pw", {"users": ["a"]}, entries, log2_n=FAST)
    b = backup.open_(b"pw", blob)
    assert b.entries == entries and b.manifest == {"users": ["a"]} and b.created
    assert b"SQLite" not in blob and b"users" not in blob  # nothing readable in the bundle


def test_default_cost_is_recorded_in_the_header():
    blob = backup.seal(b"pw", {}, {})
    assert blob[:4] == b"FLBK" and blob[6] == backup.DEFAULT_LOG2_N


def test_wrong_passphrase_is_a_passphrase_error():
    blob = backup.seal(b"pw", {}, {"k": b"v"}, log2_n=FAST)
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        backup.open_(b"pW", blob)


@settings(max_examples=60, deadline=None)
@given(pos=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused(pos, bit):
    blob = bytearray(backup.seal(b"pw", {"m": 1}, {"k": b"value"}, log2_n=FAST))
    pos %= len(blob)
    blob[pos] ^= 1 << bit
    with pytest.raises(BackupError):
        backup.open_(b"pw", bytes(blob))


def test_truncated_garbage_and_crafted_cost_are_refused():
    blob = backup.seal(b"pw", {}, {}, log2_n=FAST)
    for bad in (b"", b"FLBK", blob[:-1], b"x" * 100):
        with pytest.raises(BackupError):
            backup.open_(b"pw", bad)
    crafted = bytearray(blob)
    crafted[6] = 30  # N = 2^30 would need 1 TiB of memory: refused before any KDF work
    with pytest.raises(backup.BackupKdfError, match="MiB"):
        backup.open_(b"pw", bytes(crafted))
    v2 = bytearray(blob)
    struct.pack_into(">B", v2, 4, 2)
    with pytest.raises(BackupError, match="unsupported"):
        backup.open_(b"pw", bytes(v2))


def test_empty_passphrase_refused():
    with pytest.raises(PassphraseError):
        backup.seal(b"", {}, {})
