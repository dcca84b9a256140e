"""Issue 11.12 (TOML): a deeply nested config file is a typed config error, never a RecursionError.

Before the fix ``facelockd --check-config`` on a file of a few thousand nested arrays died with a
RecursionError traceback and exit 1, which systemd's RestartPreventExitStatus=78 does not stop (a boot
loop).  Now the nesting is measured before parsing and refused with the reason, exit 78.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.daemon import REPO, env, write_config


def check_config(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firmware", "--check-config", "-c", str(path)], cwd=REPO,
                          env=env(), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("shape", ["array", "inline_table", "mixed"])
def test_deeply_nested_toml_is_refused_with_exit_78(tmp_path, shape):
    n = 5000
    value = {"array": "[" * n + "1" + "]" * n,
             "inline_table": "{a = " * n + "1" + "}" * n,
             "mixed": "[{a = " * (n // 2) + "1" + "}]" * (n // 2)}[shape]
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text() + f"[vision]\nx = {value}\n")
    r = check_config(cfg)
    assert r.returncode == 78, r.stderr[-800:]
    assert "config error" in r.stderr and "nested" in r.stderr
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr


def test_moderate_nesting_inside_strings_and_comments_is_not_counted(tmp_path):
    """The depth scan ignores brackets in strings and comments: a normal config still loads."""
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text() + '# [[[[[[[[[[[[[[[[[[[[ not nesting\n[log]\nlevel = "info"  # ]]]]]]\n')
    r = check_config(cfg)
    assert r.returncode == 0, r.stderr[-800:]


def test_an_oversized_config_is_refused(tmp_path):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text() + "#" + "x" * (1 << 21) + "\n")
    r = check_config(cfg)
    assert r.returncode == 78 and "larger than" in r.stderr, r.stderr[-800:]
