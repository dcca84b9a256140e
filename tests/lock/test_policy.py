"""Lockout and backoff, schedules, lockdown, and the policy config's refusals."""

from __future__ import annotations

import datetime as dt

import pytest

from firmware.config_errors import ConfigError
from firmware.lock import policy as p

CFG = p.LockoutConfig(max_failures=5, window_s=60, base_lockout_s=30, factor=2, max_lockout_s=200,
                      reset_after_s=900)


def test_five_failures_within_window_lock_out_then_backoff_grows_and_caps():
    st = p.LockoutState()
    for i in range(4):
        st, lock = p.register_failure(st, float(i), CFG)
        assert lock == 0
    st, lock = p.register_failure(st, 4.0, CFG)
    assert lock == 30 and p.lockout_remaining(st, 10.0) == 24
    durations = []
    now = 40.0
    for _ in range(5):
        st, lock = p.register_failure(st, now, CFG)
        durations.append(lock)
        now += lock + 1
    assert durations == [60, 120, 200, 200, 200]


def test_failures_outside_window_do_not_count():
    st = p.LockoutState()
    for i in range(10):
        st, lock = p.register_failure(st, i * 20.0, CFG)  # never 5 within 60 s
        assert lock == 0


def test_success_and_quiet_reset_the_backoff():
    st = p.LockoutState()
    for i in range(5):
        st, lock = p.register_failure(st, float(i), CFG)
    assert st.level == 1
    # a success clears failures, backoff and lockout; the hourly/daily budgets keep their memory
    assert p.register_success(st) == p.LockoutState(recent=st.recent) and len(st.recent) == 5
    st2, lock = p.register_failure(st, 4.0 + 900, CFG)  # long quiet: free attempts again
    assert lock == 0 and st2.level == 0


def _pc(**kw):
    return p.PolicyConfig.from_dict(kw)


MON_10 = dt.datetime(2024, 1, 1, 10, 0)  # a Monday
SAT_10 = dt.datetime(2024, 1, 6, 10, 0)


def test_schedule_weekdays_and_window():
    cfg = _pc(schedule={"bob": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}]})
    ok = p.LockoutState()
    assert p.authorize(cfg, "bob", MON_10, ok, 0).allowed
    assert p.authorize(cfg, "bob", SAT_10, ok, 0) == p.Decision(False, "schedule")
    assert p.authorize(cfg, "bob", MON_10.replace(hour=19), ok, 0).reason == "schedule"
    assert p.authorize(cfg, "alice", SAT_10, ok, 0).allowed  # no schedule = any time


def test_schedule_across_midnight():
    w = p.window_from_dict("w", {"days": ["fri"], "start": "22:00", "end": "02:00"})
    assert w.contains(dt.datetime(2024, 1, 5, 23, 0))  # Fri 23:00
    assert w.contains(dt.datetime(2024, 1, 6, 1, 0))  # Sat 01:00 belongs to Friday's window
    assert not w.contains(dt.datetime(2024, 1, 6, 23, 0))


def test_lockdown_modes_and_lockout():
    cfg = _pc(admins=["root"])
    st = p.LockoutState()
    assert p.authorize(cfg, "bob", MON_10, st, 0, p.Lockdown.ADMINS).reason == "lockdown"
    assert p.authorize(cfg, "root", MON_10, st, 0, p.Lockdown.ADMINS).allowed
    assert p.authorize(cfg, "root", MON_10, st, 0, p.Lockdown.NOBODY).reason == "lockdown"
    locked = p.LockoutState(until=100.0)
    assert p.authorize(cfg, "root", MON_10, locked, 50).reason == "lockout"
    assert p.may_set_lockdown(cfg, "root") and not p.may_set_lockdown(cfg, "bob")
    assert not p.may_set_lockdown(_pc(admins=["root"], remote_lockdown="nobody"), "root")
    assert not p.may_remote_unlock(cfg, p.Lockdown.NOBODY, "root")
    assert p.may_remote_unlock(cfg, p.Lockdown.ADMINS, "root")


@pytest.mark.parametrize(("d", "key"), [
    ({"max_failure": 3}, "policy.max_failure"),
    ({"max_failures": 0}, "policy.max_failures"),
    ({"window_s": -1}, "policy.window_s"),
    ({"factor": 0.5}, "policy.factor"),
    ({"lockdown": "maybe"}, "policy.lockdown"),
    ({"admins": "root"}, "policy.admins"),
    ({"schedule": {"bob": [{"days": ["funday"]}]}}, "policy.schedule.bob[0].days"),
    ({"schedule": {"bob": [{"start": "25:00"}]}}, "policy.schedule.bob[0].start"),
    ({"schedule": {"bob": [{"from": "08:00"}]}}, "policy.schedule.bob[0].from"),
])
def test_bad_policy_config_names_the_key(d, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        p.PolicyConfig.from_dict(d)


def test_a_steady_trickle_of_failures_is_capped_by_the_hourly_and_daily_budgets():
    """1 failure / 15 s never reaches 5 in 60 s; the budgets still hold it to <= 20 an hour, 60 a day."""
    cfg = p.LockoutConfig()
    st, t, accepted = p.LockoutState(), 0.0, []
    while t < 86400:
        if p.lockout_remaining(st, t) > 0:
            t = st.until  # the attacker waits exactly as long as the lock makes them
            continue
        st, _ = p.register_failure(st, t, cfg)
        accepted.append(t)
        t += 15.0
    hours = [sum(1 for a in accepted if h * 3600 <= a < (h + 1) * 3600) for h in range(24)]
    assert max(hours) <= cfg.max_failures_per_hour
    assert len(accepted) <= cfg.max_failures_per_day
    rolling = max(sum(1 for b in accepted if a <= b < a + 3600) for a in accepted)
    assert rolling <= cfg.max_failures_per_hour


@pytest.mark.parametrize(("d", "key"), [
    ({"window_s": 0.001}, "policy.window_s"),
    ({"base_lockout_s": 0.01}, "policy.base_lockout_s"),
    ({"max_failures": 1000}, "policy.max_failures"),
    ({"max_failures_per_hour": 0}, "policy.max_failures_per_hour"),
    ({"max_failures_per_hour": 50, "max_failures_per_day": 10}, "policy.max_failures_per_day"),
    ({"base_lockout_s": 600, "max_lockout_s": 60}, "policy.max_lockout_s"),
])
def test_config_values_that_would_disable_lockout_are_refused(d, key):
    with pytest.raises(ConfigError, match=key):
        p.PolicyConfig.from_dict(d)
