"""atheris fuzz target for the container parser and opener.

Run by tests/crypto/test_fuzz.py as a subprocess with -runs=N over a seed
corpus of valid tokens; any exception other than a CryptoError is a crash.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from firmware.crypto import container
    from firmware.crypto.errors import CryptoError

KEY = bytes(range(32))


def target(data: bytes) -> None:
    try:
        container.read_header(data)
    except CryptoError:
        pass
    try:
        opened = container.open_(KEY, data)
    except CryptoError:
        return
    # Only a genuine, untampered token may open; the corpus holds some, and
    # mutations that keep them valid must decrypt to a consistent payload.
    assert (opened.array is None) != (opened.data is None)


if __name__ == "__main__":
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
