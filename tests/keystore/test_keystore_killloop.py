"""SIGKILL a keystore writer at random moments; the store must always open with every committed key.

The writer is a forked child (fast: no interpreter start per round) that creates,
rotates, deletes keys and rotates the KEK, reporting each operation on a pipe
only after the call returned (= committed).  The parent kills it after a random
short delay, then reopens the keystore and checks every reported key version.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time

import pytest

from firmware.keystore import KeyNotFoundError, KeystoreConfig, open_keystore

ROUNDS = 250
CFG = KeystoreConfig(scrypt_log2_n=10)


def _writer(data_dir, wfd: int, seed: int) -> None:
    rnd = random.Random(seed)
    ks = open_keystore(CFG, data_dir, passphrase="pw")
    out = os.fdopen(wfd, "w", buffering=1)
    out.write("R\n")  # ready: the parent's random delay starts now, so kills land inside operations
    while True:
        kid = f"k{rnd.randrange(8)}"
        op = rnd.random()
        secret = os.urandom(32)
        h = hashlib.sha256(secret).hexdigest()
        if op < 0.05:
            ks.rewrap(new_passphrase="pw")
            continue
        if op < 0.15:
            out.write(f"I D {kid}\n")  # intent: a kill before "D" leaves the delete ambiguous
            try:
                ks.delete(kid)
                out.write(f"D {kid}\n")
            except KeyNotFoundError:
                pass
            continue
        try:
            v = ks.rotate(kid, secret=secret)
        except KeyNotFoundError:
            v = ks.create(kid, secret=secret)
        out.write(f"C {kid} {v} {h}\n")


@pytest.mark.slow
def test_sigkill_writer_never_breaks_the_store(tmp_path):
    data_dir = tmp_path / "data"
    expected: dict[str, dict[int, str]] = {}
    rnd = random.Random(1234)
    committed_ops = 0
    for rnd_no in range(ROUNDS):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(r)
            try:
                _writer(data_dir, w, rnd_no)
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            first = f.readline()
            assert first == "R\n", first
            time.sleep(rnd.uniform(0.0, 0.03))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            lines = f.read().splitlines()
        maybe_deleted = None
        for line in lines:
            parts = line.split()
            maybe_deleted = None
            if parts[:2] == ["I", "D"] and len(parts) == 3:
                maybe_deleted = parts[2]
            elif len(parts) == 2 and parts[0] == "D":
                expected.pop(parts[1], None)
            elif len(parts) == 4 and parts[0] == "C":
                expected.setdefault(parts[1], {})[int(parts[2])] = parts[3]
            # a torn last line means the kill hit between commit and report: not counted as committed
        committed_ops += len(lines)
        ks = open_keystore(CFG, data_dir, passphrase="pw")  # must open
        if maybe_deleted is not None and not ks.exists(maybe_deleted):
            expected.pop(maybe_deleted, None)  # killed after the delete committed, before it was reported
        for kid in ks.list_ids():  # every stored key must unseal (none half-written)
            for v in ks.versions(kid):
                ks.unseal(kid, v)
        for kid, versions in expected.items():
            for v, h in versions.items():
                assert hashlib.sha256(ks.unseal(kid, v)).hexdigest() == h, (rnd_no, kid, v)
    leftovers = [p.name for p in (data_dir / "keystore").iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 1  # at most the last killed writer's temp (cleaned by the next writer)
    assert committed_ops > ROUNDS // 5  # the writer really was working between the kills (even on a loaded CI box)
