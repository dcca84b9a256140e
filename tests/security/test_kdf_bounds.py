"""Trust boundary: KDF parameters stored in files are read before anything is authenticated (issue 11, item 9).

The attacker writes the KDF header: a 101-byte backup bundle asking scrypt for N=2^20, r=32, p=16
(4 GiB of memory and 16 passes over it), a keystore file with the same parameters and a re-computed
checksum.  Before the fix `backup import` of that file reached 4.2 GB RSS.  Now every reader bounds
the parameters first (`firmware.crypto.kdf`: 64 MiB of memory, 256 MiB of work) and refuses with a
typed error, fast and without the allocation.

The attacks run as real processes (the `facelock` CLI; the keystore opened as the daemon opens it),
timed, each reporting its own peak RSS (getrusage(RUSAGE_SELF)).  The children get an address-space limit of 2 GiB so that
running this module against the old code fails quickly instead of eating the machine's memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AS_LIMIT = 2 << 30
MAX_REFUSAL_RSS_MIB = 300  # a Python process with the CLI imported, and no scrypt buffer
MAX_REFUSAL_S = 20.0  # process start + imports on a loaded 2-core machine; the refusal itself is < 1 ms


def hostile_backup() -> bytes:
    """The issue's file: FLBK v1, scrypt, log2N=20, r=32, p=16, salt, nonce and 64 bytes of "body"."""
    blob = b"FLBK" + bytes([1, 1, 20, 32, 16]) + os.urandom(16) + os.urandom(12) + os.urandom(64)
    assert len(blob) == 101
    return blob


def _limit_memory() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_measured(argv: list[str], env: dict[str, str], timeout: float = 60.0) -> dict:
    """Run a child; its exit code, output and wall time (the child reports its own peak RSS)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_limit_memory)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{argv[:4]} still running after {timeout} s: the KDF parameters were not bounded")
    elapsed = time.monotonic() - t0
    return {"rc": proc.returncode, "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace"),
            "elapsed_s": elapsed}


def child_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["FACELOCK_PASSPHRASE"] = "any passphrase at all"
    env["FACELOCK_DEVICE_SECRET"] = str(tmp_path / "machine" / "device.secret")
    env.pop("FACELOCK_CONFIG", None)
    return env


# The child reports its own peak RSS as the last stdout line: VmHWM of /proc/self/status, which belongs to the
# child's own address space.  (ru_maxrss is no good here: Linux carries the forking parent's high-water mark
# across exec, so under the full suite it reports the size of pytest, not of the child.)
_PEAK_RSS = "int(next(ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')).split()[1]) / 1024"
_CLI_CHILD = """
import json, sys, time
t0 = time.monotonic()
from provisioning.cli import main
try:
    main(sys.argv[1:], standalone_mode=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "refuse_s": time.monotonic() - t0,
                  "maxrss_mib": PEAK}))
sys.exit(code if isinstance(code, int) else 1)
""".replace("PEAK", _PEAK_RSS)


def test_hostile_backup_bundle_is_refused_fast_by_the_cli(tmp_path):
    bundle = tmp_path / "hostile.bak"
    bundle.write_bytes(hostile_backup())
    target = tmp_path / "target"
    r = run_measured([sys.executable, "-c", _CLI_CHILD, "backup", "import", str(bundle), "--data-dir", str(target)],
                     child_env(tmp_path))
    lines = [ln for ln in r["stderr"].splitlines() if ln.strip()]
    assert r["rc"] == 1, r
    assert len(lines) == 1 and lines[0].startswith("facelock: error: "), r["stderr"][-3000:]
    assert "scrypt" in lines[0] and "limit is 64 MiB" in lines[0], lines[0]
    report = json.loads(r["stdout"].strip().splitlines()[-1])
    assert report["maxrss_mib"] < MAX_REFUSAL_RSS_MIB, report
    assert r["elapsed_s"] < MAX_REFUSAL_S, r["elapsed_s"]
    assert not (target / "keystore").exists() and not (target / "users.db").exists()  # nothing touched
    print(f"hostile backup import: refused in {r['elapsed_s']:.2f} s (process), peak RSS "
          f"{report['maxrss_mib']:.0f} MiB")


def test_hostile_backup_bundle_is_refused_before_any_kdf_work():
    from provisioning import backup

    blob = hostile_backup()
    t0 = time.perf_counter()
    with pytest.raises(backup.BackupKdfError, match="4096 MiB"):
        backup.open_(b"whatever", blob)
    assert time.perf_counter() - t0 < 0.05  # the bound check, not scrypt (scrypt at 32 MiB alone takes ~0.1 s)
    # every over-limit combination of the header's three bytes is refused, every in-limit one reaches the tag
    for log2_n, r, p, ok in ((20, 32, 16, False), (20, 1, 1, False), (19, 1, 1, False), (16, 4, 1, True), (16, 8, 1, True),
                             (17, 8, 1, False), (15, 8, 4, True), (15, 8, 9, False), (40, 1, 1, False),
                             (15, 0, 1, False), (15, 8, 0, False)):
        crafted = bytearray(blob)
        crafted[6:9] = bytes([log2_n, r, p])
        if ok:
            with pytest.raises(backup.WrongPassphraseError):
                backup.open_(b"whatever", bytes(crafted))
        else:
            with pytest.raises(backup.BackupKdfError):
                backup.open_(b"whatever", bytes(crafted))


_KEYSTORE_CHILD = """
import json, sys, time
from pathlib import Path
from firmware.keystore import KeystoreConfig, open_keystore
t0 = time.monotonic()
try:
    open_keystore(KeystoreConfig(device_secret_path=sys.argv[2]), Path(sys.argv[1]))
    result = "opened"
except Exception as exc:
    result = f"{type(exc).__name__}: {exc}"
print(json.dumps({"result": result, "refuse_s": time.monotonic() - t0,
                  "maxrss_mib": PEAK}))
""".replace("PEAK", _PEAK_RSS)


def test_hostile_keystore_kdf_header_is_refused_fast(tmp_path):
    """A keys.fks whose KDF parameters were rewritten (the checksum is not a MAC: it is recomputed)."""
    from firmware.keystore import KeystoreConfig, keyfile, open_keystore

    env = child_env(tmp_path)
    data = tmp_path / "data"
    cfg = KeystoreConfig(scrypt_log2_n=10, device_secret_path=env["FACELOCK_DEVICE_SECRET"])
    open_keystore(cfg, data).create("templates")
    path = data / "keystore" / "keys.fks"
    doc = keyfile.decode(path.read_bytes())
    doc.params.update(log2n=20, r=32, p=16)
    path.write_bytes(keyfile.encode(doc))
    r = run_measured([sys.executable, "-c", _KEYSTORE_CHILD, str(data), env["FACELOCK_DEVICE_SECRET"]], env)
    assert r["rc"] == 0, r
    report = json.loads(r["stdout"].strip().splitlines()[-1])
    assert report["result"].startswith("KeystoreKdfError: "), report
    assert "limit is 64 MiB" in report["result"], report
    assert report["refuse_s"] < 1.0, report
    assert report["maxrss_mib"] < MAX_REFUSAL_RSS_MIB, report
    print(f"hostile keystore header: refused in {report['refuse_s'] * 1000:.1f} ms, peak RSS "
          f"{report['maxrss_mib']:.0f} MiB")


def test_config_cannot_ask_for_an_unbounded_kdf_either():
    """The writer obeys the reader's bound, so nothing FaceLock writes is refused by FaceLock."""
    from firmware.config_errors import ConfigError
    from firmware.keystore import KeystoreConfig

    assert KeystoreConfig(scrypt_log2_n=16, scrypt_r=8).scrypt_log2_n == 16  # 64 MiB: at the limit
    for bad in ({"scrypt_log2_n": 22}, {"scrypt_log2_n": 17}, {"scrypt_r": 32, "scrypt_log2_n": 15},
                {"scrypt_p": 16}):
        with pytest.raises(ConfigError, match="keystore.scrypt"):
            KeystoreConfig.from_dict(bad)


def test_hostile_pin_descriptor_is_refused_before_the_face_or_the_kdf(tmp_path):
    """An image's PIN descriptor (authenticated, but read before any key exists) asking Argon2id for 1 GiB."""
    import base64

    from firmware.crypto import container, pinfactor
    from tests.provisioning.conftest import Cli, assert_one_line_error

    hostile = {"kdf": "argon2id", "m": 1 << 20, "t": 3, "p": 1, "salt": base64.b64encode(b"s" * 16).decode()}
    t0 = time.perf_counter()
    with pytest.raises(pinfactor.PinDescriptorError, match="1048576 KiB"):
        pinfactor.combine(b"k" * 32, "a long enough pin", hostile)
    assert time.perf_counter() - t0 < 0.05
    for bad in ({**hostile, "m": 64 * 1024, "t": 5}, {**hostile, "m": 64 * 1024, "p": 64}, {**hostile, "m": 8},
                {**hostile, "m": "65536"}, {**hostile, "extra": 1}):
        with pytest.raises(pinfactor.PinDescriptorError):
            pinfactor.parse_descriptor(bad)
    # through `facelock decrypt` on an initialised device: one line, exit 1, no face asked, no KDF run
    cli = Cli(tmp_path / "data")
    cli("ca", "init", ok=True)
    cli("device", "init", "--id", "door-1", ok=True)
    flk = tmp_path / "hostile.flk"
    flk.write_bytes(container.seal_file_bytes(b"k" * 32, b"x", check_image=False,
                                              metadata={"facelock": {"user_id": "u", "pin": hostile}}))
    t0 = time.perf_counter()
    r = cli("decrypt", flk, "-o", tmp_path / "out.jpg", "--camera", "/nonexistent/camera",
            env={"FACELOCK_PIN": "a long enough pin"})
    assert_one_line_error(r, 1, "limit|outside")
    assert time.perf_counter() - t0 < 2.0
