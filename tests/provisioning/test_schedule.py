"""`facelock policy set` argument parsing (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.errors import ProvisioningError
from provisioning.schedule import DAYS, describe, parse_days, window


@pytest.mark.parametrize("spec, days", [
    ("mon-fri", ["mon", "tue", "wed", "thu", "fri"]),
    ("weekdays", ["mon", "tue", "wed", "thu", "fri"]),
    ("weekend", ["sat", "sun"]),
    ("sat-mon", ["mon", "sat", "sun"]),  # a range may wrap past Sunday
    ("fri,mon,FRI", ["mon", "fri"]),
    ("all", list(DAYS)),
    ("mon-mon", ["mon"]),
])
def test_parse_days(spec, days):
    assert parse_days(spec) == days


@pytest.mark.parametrize("spec", ["", "funday", "mon-", "mon,,tue", "monday", "mon-xyz"])
def test_parse_days_refuses(spec):
    with pytest.raises(ProvisioningError):
        parse_days(spec)


@given(st.integers(0, 6), st.integers(0, 6))
def test_ranges_cover_the_days_between(i, j):
    got = parse_days(f"{DAYS[i]}-{DAYS[j]}")
    assert len(got) == (j - i) % 7 + 1 and DAYS[i] in got and DAYS[j] in got


def test_window_validated_by_firmware_policy():
    assert window("mon-fri", "08:00", "18:00") == {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00",
                                                   "end": "18:00"}
    assert describe(window("weekdays", "22:00", "06:00")) == "mon-fri 22:00-06:00"
    for start, end in (("24:00", "08:00"), ("8:00", "09:00"), ("08:60", "09:00"), ("noon", "13:00")):
        with pytest.raises(ProvisioningError, match="HH:MM"):
            window("all", start, end)
