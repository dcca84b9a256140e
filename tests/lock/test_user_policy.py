"""Per-user schedules stored by `facelock policy set` are enforced by the lock (together with the config's),
users appear in the audit log by pseudonym only, and the config refuses an [mqtt] that cannot work."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest

from firmware.config import config_from_dict
from firmware.config_errors import ConfigError
from firmware.lock import policy as pol
from firmware.lock import statemachine as sm
from firmware.lock.statemachine import State
from provisioning import demofaces as df

MON_10 = dt.datetime(2026, 11, 23, 10, 0)  # a Monday
SAT_10 = dt.datetime(2026, 11, 28, 10, 0)


def w(days, start, end):
    return pol.window_from_dict("t", {"days": days, "start": start, "end": end})


def test_both_schedule_sources_must_allow():
    cfg_w = (w(["mon", "tue", "wed", "thu", "fri"], "08:00", "18:00"),)
    store_w = (w(["mon"], "09:00", "11:00"),)
    assert pol.schedule_allows(MON_10, cfg_w, store_w)
    assert not pol.schedule_allows(MON_10.replace(hour=12), cfg_w, store_w)  # config yes, store no
    assert not pol.schedule_allows(SAT_10, (w(["sat"], "09:00", "11:00"),), cfg_w)  # store yes, config no
    assert pol.schedule_allows(SAT_10, None, None)  # unlisted: any time
    cfg = pol.PolicyConfig(schedules={"u1": cfg_w})
    st = pol.LockoutState()
    assert pol.authorize(cfg, "u1", MON_10, st, 0.0, user_schedules={"u1": store_w}).allowed
    d = pol.authorize(cfg, "u1", MON_10.replace(hour=12), st, 0.0, user_schedules={"u1": store_w})
    assert not d.allowed and d.reason == "schedule"


def test_stored_policies_parse_and_a_broken_one_denies_only_that_user():
    got = pol.schedules_from_policies({
        "a": {"schedule": [{"days": ["mon"], "start": "09:00", "end": "11:00"}]},
        "b": {},  # no schedule: unrestricted, not listed
        "c": {"schedule": [{"days": ["funday"], "start": "09:00", "end": "11:00"}]},
        "d": {"schedule": "mon"},
    })
    assert set(got) == {"a", "c", "d"} and got["c"] == () and got["d"] == ()
    assert pol.schedule_allows(MON_10, got["a"]) and not pol.schedule_allows(MON_10, got["c"])


def test_management_key_counts_as_admin():
    cfg = pol.PolicyConfig(admins=frozenset({"root"}))
    assert pol.may_set_lockdown(cfg, pol.MANAGEMENT) and pol.may_set_lockdown(cfg, "root")
    assert not pol.may_set_lockdown(cfg, "mallory") and not pol.may_set_lockdown(cfg, None)
    assert not pol.may_set_lockdown(replace(cfg, remote_lockdown="nobody"), pol.MANAGEMENT)
    assert pol.may_remote_unlock(cfg, pol.Lockdown.ADMINS, pol.MANAGEMENT)
    assert not pol.may_remote_unlock(cfg, pol.Lockdown.NOBODY, pol.MANAGEMENT)


def test_remote_unlock_duration_and_boot_into_lockout():
    st = sm.step(sm.Snapshot(), sm.Input(sm.Event.COMMAND, command=sm.Command.UNLOCK, duration_s=1.5), 100.0)
    assert st.row == "remote_unlock" and st.snapshot.deadline == pytest.approx(101.5)
    st = sm.step(sm.Snapshot(), sm.Input(sm.Event.COMMAND, command=sm.Command.UNLOCK), 100.0)
    assert st.snapshot.deadline == pytest.approx(100.0 + sm.Timing().unlock_s)
    snap = sm.boot_snapshot(lockout_until=130.0)
    assert snap.state is State.LOCKOUT and not snap.relay and snap.deadline == 130.0
    assert sm.boot_snapshot(tamper_active=True, lockout_until=130.0).state is State.TAMPER


@pytest.mark.parametrize(("extra", "key"), [
    ({"mqtt": {"device_id": "other-door"}}, "mqtt.device_id"),
    ({"mqtt": {"device_id": "front"}, "daemon": {"events": False}}, "daemon.events"),
])
def test_config_refuses_an_mqtt_section_that_cannot_work(extra, key):
    with pytest.raises(ConfigError, match=key):
        config_from_dict({"device": {"id": "front"}, **extra})
    ok = config_from_dict({"device": {"id": "front"}, "mqtt": {"device_id": "front", "ca_file": "ca.pem"}},
                          path="/etc/facelock/facelock.toml")
    assert ok.sections["mqtt"].ca_file == "/etc/facelock/ca.pem"  # relative: next to the config file


def test_schedule_from_the_template_store_is_enforced_and_audit_uses_the_pseudonym(make_harness, pipeline,
                                                                                   tmp_path):
    """The real astronaut, enrolled with a stored schedule that excludes now: recognised, refused."""
    from firmware.config import Config, DeviceConfig, LockConfig
    from firmware.keystore import KeystoreConfig, open_keystore
    from firmware.pseudonym import audit_pseudonym
    from firmware.site import open_site
    from firmware.templates import TemplateStore

    data = tmp_path / "store"
    ks = KeystoreConfig(scrypt_log2_n=10)
    store = TemplateStore(data, open_keystore(ks, data))
    uid = store.enroll("Eileen Collins", np.stack([pipeline.process(f).embedding for f in df.enrolled()]))
    now = dt.datetime.now()
    other_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(now.weekday() + 3) % 7]
    store.set_policy(uid, {"schedule": [{"days": [other_day], "start": "00:00", "end": "00:00"}]})
    ref = audit_pseudonym(store.keystore, uid)
    store.close()
    site = open_site(Config(device=DeviceConfig(data_dir=str(data)), lock=LockConfig(liveness="off"),
                            sections={"keystore": ks}))
    decider = site.decider(num_threads=2)
    assert decider.enrolled.pseudonyms == {uid: ref} and len(ref) == 16
    assert uid in decider.enrolled.schedules
    frames = df.live_sequence(df.astronaut(), 24, seed=2)
    h = make_harness(frames, lambda: decider)
    assert h.run_until(lambda: "denied" in h.rows(), timeout=15)
    denied = [i for s, i in h.steps if s.row == "denied"][0]
    assert denied.user == uid and denied.reason == "schedule" and not h.relay_pin_high()
    assert h.ctl.lockout == pol.LockoutState()  # a recognised user off schedule is not a failed attempt
    rec = [r for r in h.audit.records() if r.kind == "denied"][0]
    assert rec.data["user"] == ref and rec.data["reason"] == "schedule"
    assert all(uid.encode() not in f.read_bytes() for f in h.data_dir.glob("audit.db*"))
