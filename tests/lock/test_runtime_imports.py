"""The device runtime must not import research, training or evaluation code (nor the management side).

Two walks, because each catches what the other cannot:
- a static walk over every module of the ``firmware`` package, including imports inside functions
  (where optional and lazy imports hide), which fails on any import of ``provisioning``, ``models``,
  ``tests`` or a build/research-only library;
- a dynamic one: ``facelockd`` itself (the real daemon, replay camera, mock GPIO) runs a few seconds and
  reports every module loaded; none may come from outside the runtime's allowed roots.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"

#: top-level packages the device runtime may never import: the management CLI and its research code,
#: the model build scripts, the tests, and libraries only training/evaluation uses
FORBIDDEN = {"provisioning", "models", "tests", "scipy", "sklearn", "skimage", "matplotlib", "torch",
             "tensorflow", "pytest", "hypothesis"}
#: names whose *definition* in the runtime would mean training code moved back in
TRAINING_NAMES = {"fit_logistic", "fit_pad_model", "cross_subject_scores", "cached_sequence", "roc_curve",
                  "tar_at_far", "replay_burst", "sign_command"}


def _imports(tree: ast.AST, module: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    pkg = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                out.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
            elif node.module:
                out.append((node.module, node.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            out.append((str(node.args[0].value), node.lineno))
    return out


def runtime_modules() -> dict[str, Path]:
    mods = {}
    for f in sorted(FIRMWARE.rglob("*.py")):
        rel = f.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def test_no_runtime_module_imports_research_or_management_code():
    mods = runtime_modules()
    assert "firmware.daemon" in mods and "firmware.lock.statemachine" in mods  # the walk sees the runtime
    bad = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        for imp, line in _imports(tree, name if path.name != "__init__.py" else name + ".__init__"):
            if imp.split(".")[0] in FORBIDDEN:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {imp}")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in TRAINING_NAMES:
                bad.append(f"{path.relative_to(REPO)}:{node.lineno} defines {node.name} (research/management code)")
    assert not bad, "\n".join(bad)


def test_the_walk_catches_a_lazy_research_import(tmp_path):
    """The checker itself can fail: an import hidden inside a function is found."""
    src = "def f():\n    from provisioning.research import metrics\n    return metrics\n"
    found = [m for m, _ in _imports(ast.parse(src), "firmware.lock.x")]
    assert "provisioning.research" in found
    rel = [m for m, _ in _imports(ast.parse("from ..research import x\n"), "firmware.lock.x")]
    assert rel == ["firmware.research"]


def test_the_running_daemon_loads_only_runtime_modules(tmp_path):
    """facelockd for real (replay camera, mock pins): every module it loaded comes from the runtime."""
    from tests.support.daemon import daemon_env, write_config

    cfg = write_config(tmp_path)
    dump = tmp_path / "modules.json"
    code = ("import atexit, json, sys\n"
            f"atexit.register(lambda: open({str(dump)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
            "from firmware.daemon import main\n"
            f"sys.exit(main(['-c', {str(cfg)!r}, '--run-for', '3']))\n")
    env = daemon_env(tmp_path)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    loaded = json.loads(dump.read_text())
    assert "firmware.lock.runtime" in loaded and "firmware.vision.pipeline" in loaded, "the daemon never ran"
    bad = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN)
    assert not bad, bad


@pytest.mark.parametrize("name", sorted(TRAINING_NAMES))
def test_research_names_live_outside_the_runtime(name):
    """Each research/management function named above exists, just not in firmware/ (the list is not stale)."""
    hits = [p for p in (REPO / "provisioning").rglob("*.py") if f"def {name}(" in p.read_text()]
    assert hits, f"{name} is defined nowhere: update TRAINING_NAMES"
