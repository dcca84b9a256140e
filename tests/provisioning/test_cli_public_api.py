"""The CLI uses the stores' and keystores' public methods, never their internals (issue 14): a static walk over
the CLI's modules for attribute access to a private name (``x._name``) on anything but ``self``/``cls``.

Why: the CLI reaching into ``store._db`` or the keystore file's encoding ties it to one implementation and
bypasses the checks the public methods make; a store change then breaks the CLI at run time, not here."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = sorted([*(REPO / "provisioning" / "commands").glob("*.py"), REPO / "provisioning" / "stores.py",
              REPO / "provisioning" / "cli.py"])


def private_accesses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Name) and owner.id in ("os", "sys"):  # os._exit, sys._getframe: the stdlib's
                continue
            where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
            out.append(f"{where}:{node.lineno}: .{node.attr}")
    return out


def test_the_cli_reads_no_private_internals():
    assert CLI and all(p.exists() for p in CLI)
    found = [hit for p in CLI for hit in private_accesses(p)]
    assert not found, "\n".join(found)


def test_the_walk_sees_a_private_access(tmp_path):
    p = tmp_path / "probe.py"
    p.write_text("def f(self, store):\n    self._ok = 1\n    return store._db.backup\n")
    assert private_accesses(p) == ["probe.py:3: ._db"]
