"""The lock's side of the centre's bundles, below the daemon: the [fleet] section, the settings a lock takes
(within its own bounds), and users.db made to hold exactly a bundle's people (sealed, atomic, local users
untouched).  End to end with the real daemon, broker and centre: tests/central/test_daemon_fleet.py."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.config import Config, config_from_dict
from firmware.config_errors import ConfigError
from firmware.fleet.settings import lock_settings
from firmware.keystore import KeystoreConfig, open_keystore
from firmware.pseudonym import user_secret_id
from firmware.templates import FleetPerson, FleetUserConflictError, TemplateStore

MQTT = {"device_id": "facelock-1", "host": "127.0.0.1"}


def test_fleet_section_is_off_by_default_strict_and_needs_mqtt():
    assert "fleet" not in config_from_dict({}).sections
    assert config_from_dict({"fleet": {}, "mqtt": MQTT}).sections["fleet"].enabled is False
    with pytest.raises(ConfigError, match="fleet.enabled: needs an \\[mqtt\\]"):
        config_from_dict({"fleet": {"enabled": True}})
    with pytest.raises(ConfigError, match="fleet.enable: unknown key"):
        config_from_dict({"fleet": {"enable": True}, "mqtt": MQTT})
    with pytest.raises(ConfigError, match="fleet.enabled: expected true or false"):
        config_from_dict({"fleet": {"enabled": "yes"}, "mqtt": MQTT})
    cfg = config_from_dict({"fleet": {"enabled": True, "centre_pubkey_file": "pki/c.pub"}, "mqtt": MQTT},
                           path="/etc/facelock/facelock.toml")
    assert cfg.sections["fleet"].centre_pubkey_file == "/etc/facelock/pki/c.pub"


def test_settings_are_taken_only_within_the_locks_bounds():
    base = Config()  # liveness "required", unlock_s 5, max_failures 5
    s = lock_settings(base, {"unlock_s": 2.5, "max_failures": 3, "match_threshold": 0.7})
    assert s.config.lock.unlock_s == 2.5 and s.config.policy.lockout.max_failures == 3
    assert s.threshold_floor == 0.7 and s.ignored == ()
    assert s.config.lock.timing().unlock_s == 2.5
    s = lock_settings(base, {"unlock_s": 1000, "max_failures": 0, "liveness": "off", "volume": 3,
                             "match_threshold": 2, "window_s": "x"})
    assert s.config == base and s.threshold_floor is None
    assert [n for n, _ in s.ignored] == ["liveness", "match_threshold", "max_failures", "unlock_s", "volume",
                                         "window_s"]
    assert "at most 300" in dict(s.ignored)["unlock_s"] and "weaker" in dict(s.ignored)["liveness"]
    auto = config_from_dict({"lock": {"liveness": "auto"}})
    assert lock_settings(auto, {"liveness": "required"}).config.lock.liveness == "required"
    assert not lock_settings(auto, {"liveness": "required"}).same_decider(lock_settings(auto, {}))
    # each alone fits, together they clash: checked in name order, the second is not taken
    s = lock_settings(base, {"frames_per_attempt": 20, "max_frames_per_attempt": 10})
    assert (s.config.lock.frames_per_attempt, s.config.lock.max_frames_per_attempt) == (20, 30)
    assert [n for n, _ in s.ignored] == ["max_frames_per_attempt"]
    # removing a setting at the centre returns to the file's value
    assert lock_settings(base, {}).config == base


def _vecs(seed: int, k: int = 2) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((k, 192)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_sync_fleet_holds_exactly_the_bundles_people_sealed_and_leaves_local_users(tmp_path):
    ks = open_keystore(KeystoreConfig(scrypt_log2_n=10), tmp_path)
    with TemplateStore(tmp_path, ks) as ts:
        local = ts.enroll("Installer", _vecs(1))
        a, b = "8d4c5a1e-0000-4000-8000-00000000000a", "8d4c5a1e-0000-4000-8000-00000000000b"
        sched = [{"days": ["mon"], "start": "08:00", "end": "18:00"}]
        r = ts.sync_fleet(1, [FleetPerson(a, _vecs(2)), FleetPerson(b, _vecs(3), sched)], "off")
        assert (r.added, r.updated, r.removed) == (2, 0, 0)
        assert ts.fleet_state() == (1, "off", frozenset({a, b}))
        assert ts.get(b).policy == {"fleet": True, "schedule": sched}
        got = {c.user_id: c.embeddings for c in ts.candidates()}
        assert set(got) == {local, a, b} and np.allclose(got[a], _vecs(2))
        # a bundle that changes nothing about the people does not bump the generation (no reload)
        gen = ts.generation()
        r = ts.sync_fleet(2, [FleetPerson(a, _vecs(2)), FleetPerson(b, _vecs(3), sched)], "nobody")
        assert (r.unchanged, ts.generation(), ts.fleet_state()[:2]) == (2, gen, (2, "nobody"))
        # b removed at the centre: purged (row and sealed secret); the local user stays
        r = ts.sync_fleet(3, [FleetPerson(a, _vecs(2))], "off")
        assert r.removed == 1 and ts.generation() > gen
        assert {u.user_id for u in ts.list()} == {local, a}
        assert user_secret_id(b) not in ks.list_ids() and user_secret_id(a) in ks.list_ids()
        # revoked on the lock itself: the next bundle does not reactivate them
        ts.revoke(a)
        ts.sync_fleet(4, [FleetPerson(a, _vecs(4))], "off")
        assert ts.get(a).status == "revoked"
        # a centre id equal to a local user's: refused before anything is written
        with pytest.raises(FleetUserConflictError):
            ts.sync_fleet(5, [FleetPerson(local, _vecs(5))], "off")
        assert ts.fleet_state()[0] == 4
    raw = (tmp_path / "users.db").read_bytes()
    for seed in (2, 3, 4):  # no embedding in the clear at rest (any 8-float run of one)
        for row in _vecs(seed):
            assert row.astype("<f4").tobytes()[:32] not in raw


def test_fleet_onboarding_cli_refuses_bad_input(tmp_path):
    """`facelock device fleet-csr|fleet-install`: a bad id and a missing key are typed errors, nothing written
    (the good path, with the centre signing, is in tests/central/test_daemon_fleet.py)."""
    from tests.support.cli import facelock

    data = tmp_path / "data"
    r = facelock(data, "device", "fleet-csr", "--id", "door/a", ok=False)
    assert r.returncode != 0 and "invalid device id" in r.stderr and "Traceback" not in r.stderr
    assert not (data / "device" / "device.key").exists()
    (tmp_path / "answer").mkdir()
    r = facelock(data, "device", "fleet-install", tmp_path / "answer", "--broker", "h:8883", ok=False)
    assert r.returncode != 0 and "fleet-csr" in r.stderr and "Traceback" not in r.stderr
    r = facelock(data, "device", "fleet-csr", "--id", "door-a")
    csr = (data / "device" / "fleet.csr").read_bytes()
    assert csr.startswith(b"-----BEGIN CERTIFICATE REQUEST") and "door-a" in r.stdout
    assert (data / "device" / "device.key").stat().st_mode & 0o777 == 0o600
