"""The BCH code: known dimensions, corrects up to t errors, detects random words."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.biokey.bch import BCHCode, bch_code


@pytest.mark.parametrize(
    ("m", "t", "k"),
    [(4, 1, 11), (4, 2, 7), (4, 3, 5), (5, 3, 16), (6, 5, 36), (8, 30, 63), (8, 42, 47), (8, 63, 9)],
)
def test_dimensions_match_the_bch_tables(m, t, k):
    assert BCHCode(m, t).k == k


def test_generator_divides_x_n_minus_1():
    code = bch_code(8, 42)
    # x^n + 1 over GF(2) must be divisible by g(x): check that g's multiples are cyclic
    msg = np.zeros(code.k, np.uint8)
    msg[0] = 1
    cw = code.encode(msg)
    assert code.is_codeword(cw)
    assert code.is_codeword(np.roll(cw, 17))  # BCH codes are cyclic


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_corrects_up_to_t_errors(data):
    m, t = data.draw(st.sampled_from([(5, 3), (8, 42), (9, 87)]))
    code = bch_code(m, t)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    cw = code.encode(rng.integers(0, 2, code.k).astype(np.uint8))
    errors = data.draw(st.integers(0, t))
    r = cw.copy()
    r[rng.choice(code.n, errors, replace=False)] ^= 1
    out = code.decode(r)
    assert out is not None and np.array_equal(out, cw)


def test_too_many_errors_never_silently_yield_the_sent_codeword():
    code = bch_code(9, 87)
    rng = np.random.default_rng(7)
    cw = code.encode(rng.integers(0, 2, code.k).astype(np.uint8))
    for _ in range(10):
        r = cw.copy()
        r[rng.choice(code.n, 3 * code.t, replace=False)] ^= 1
        out = code.decode(r)
        assert out is None or not np.array_equal(out, cw)


def test_bad_arguments():
    with pytest.raises(ValueError):
        BCHCode(3, 1)
    with pytest.raises(ValueError):
        BCHCode(8, 200)
    with pytest.raises(ValueError):
        bch_code(8, 42).decode(np.zeros(10, np.uint8))
