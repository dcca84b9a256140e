"""Trust boundary: the C permutation and the hazmat binding in front of it (issue 11, item 10).

The attacker hands the permutation tables they like to `fl_perm_apply` (directly through the
cffi module, or through `firmware.crypto.hazmat.native.perm_apply`).  Before the fix an entry of
0x7fffffff made the C core read and write far outside the buffers (a segfault).  Now the C core
range-checks every index and returns -1 (libsodium style) before moving a byte, and the binding
accepts only tables it built itself.

The C-level attacks run in a child process, so that the old code's crash fails the test instead of
killing pytest; the child inherits FACELOCK_NATIVE_LIB / LD_PRELOAD, so under `make sanitize` the
instrumented build is the one attacked.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from firmware.crypto.hazmat import native as N
from firmware.errors import NativeError

REPO = Path(__file__).resolve().parents[2]

# One child process runs every hostile call and prints one JSON line of results.
_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from firmware.crypto.hazmat import native as N

    ffi, lib = N.ffi, N.lib
    n = int(sys.argv[1])                       # buffer length
    rows_cols_rem = json.loads(sys.argv[2])    # [rows, cols, rem] of that length
    cases = json.loads(sys.argv[3])            # [[section offset, value, inverse], ...]
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, n, dtype=np.uint8)
    words = lib.fl_perm_scratch_words(n)
    good = np.asarray(N.perm_tables(rng.integers(0, 256, N.CHAOS_SEEDBYTES, dtype=np.uint8), n)).copy()
    results = []
    for pos, value, inverse in cases:
        t = good.copy()
        t[pos] = value
        out = np.full(n, 0xA5, dtype=np.uint8)
        rc = lib.fl_perm_apply(ffi.from_buffer("uint8_t[]", out), ffi.from_buffer("uint8_t[]", data), n,
                               ffi.from_buffer("uint32_t[]", t), words, inverse)
        results.append([rc, bool((out == 0xA5).all())])
    print(json.dumps(results))
    """
)


def _dims(n: int) -> tuple[int, int, int]:
    """(rows, cols, remainder cells) of the grid native/cipher.c lays a buffer of n bytes out as."""
    m = n // N.CELLBYTES
    c = math.isqrt(m)
    r = m // c
    return r, c, m - r * c


def _run_child(n: int, cases: list[list[int]]) -> list[list]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n), json.dumps(list(_dims(n))), json.dumps(cases)],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )
    assert proc.returncode == 0, (
        f"the native core crashed on hostile tables (exit {proc.returncode}): {proc.stderr[-2000:]}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_out_of_range_index_in_every_section_is_refused_in_c():
    """0x7fffffff (the issue's segfault), the first index past the end, and 2^32-1, in each table."""
    n = 32 * 103 + 5  # 103 cells: 10 x 10 grid + 3 remainder cells + 5 tail bytes
    rows, cols, rem = _dims(n)
    assert (rows, cols, rem) == (10, 10, 3)
    sections = {"rows": (0, rows), "cols": (rows, cols), "shift": (rows + cols, cols),
                "rem": (2 * rows + cols, rem)}
    cases = []
    for start, bound in sections.values():
        for value in (0x7FFFFFFF, bound, 0xFFFFFFFF):
            for inverse in (0, 1):
                cases.append([start + (value % 2), value, inverse])  # first or second entry of the table
    results = _run_child(n, cases)
    assert len(results) == len(cases)
    for (pos, value, inverse), (rc, untouched) in zip(cases, results, strict=True):
        assert rc == -1, f"index {value:#x} at word {pos} (inverse={inverse}) was accepted"
        assert untouched, f"index {value:#x} at word {pos}: output written before the refusal"


def test_random_hostile_tables_never_crash_the_core():
    """Many random corruptions of one word: in-range values are applied, out-of-range ones give -1."""
    n = 32 * 57 + 31
    rows, cols, rem = _dims(n)
    bounds = [rows] * rows + [cols] * cols + [cols] * rows + [rem] * rem
    rng = np.random.default_rng(11)
    cases = []
    for _ in range(400):
        pos = int(rng.integers(0, len(bounds)))
        value = int(rng.choice([rng.integers(0, 2 * bounds[pos] + 1), rng.integers(0, 2**32)]))
        cases.append([pos, value, int(rng.integers(0, 2))])
    results = _run_child(n, cases)
    for (pos, value, _inv), (rc, _untouched) in zip(cases, results, strict=True):
        assert rc == (0 if value < bounds[pos] else -1), (pos, value, bounds[pos], rc)


def test_in_range_but_not_a_permutation_returns_no_stale_memory():
    """A duplicated index leaves holes in the inverse; they come back as zeros, not old memory."""
    n = 32 * 16
    seed = np.arange(N.CHAOS_SEEDBYTES, dtype=np.uint32).astype(np.uint8)
    t = np.asarray(N.perm_tables(seed, n)).copy()
    t[1] = t[0]  # row table now maps two rows to one source row
    data = (np.arange(n) % 100 + 1).astype(np.uint8)  # bytes 1..100: neither 0 nor the 0xA5 sentinel
    out = np.full(n, 0xA5, dtype=np.uint8)
    rc = N.lib.fl_perm_apply(N.ffi.from_buffer("uint8_t[]", out), N.ffi.from_buffer("uint8_t[]", data), n,
                             N.ffi.from_buffer("uint32_t[]", t), t.size, 1)
    assert rc == 0
    assert not (out == 0xA5).any()
    assert (out == 0).sum() == 4 * 32  # exactly one 4-cell row was never written


def test_binding_refuses_tables_it_did_not_build():
    seed = np.zeros(N.CHAOS_SEEDBYTES, dtype=np.uint8)
    data = np.arange(32 * 20, dtype=np.uint32).astype(np.uint8)
    tables = N.perm_tables(seed, data.size)
    # its own tables work and invert
    assert np.array_equal(N.perm_apply(N.perm_apply(data, tables), tables, inverse=True), data)
    raw = np.asarray(tables).copy()
    with pytest.raises(NativeError, match="perm_tables"):
        N.perm_apply(data, raw)  # a plain array, even an identical one, is not accepted
    hostile = raw.copy()
    hostile[0] = 0x7FFFFFFF
    with pytest.raises(NativeError):
        N.perm_apply(data, hostile)
    with pytest.raises(NativeError, match="built for"):
        N.perm_apply(data[:-32], tables)  # tables of another length
    with pytest.raises(TypeError):
        N.PermTables()
    with pytest.raises(AttributeError):
        tables._words = hostile.tobytes()
    forged = N.PermTables._built(raw.tobytes(), data.size)  # private constructor: tag is fresh, fine
    object.__setattr__(forged, "_words", hostile.tobytes())  # edited after the build
    with pytest.raises(NativeError, match="not built"):
        N.perm_apply(data, forged)
    view = np.asarray(tables)
    with pytest.raises(ValueError):
        view[0] = 1  # the view is read-only
