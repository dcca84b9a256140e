"""`facelock eval --biokey` through the real pipeline on two public-domain people (no ../shared needed)."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from tests.provisioning.conftest import ENROLL_VARIANTS, PROBE_VARIANT, person_a, person_b, save, variant


def test_eval_biokey_reports_rates_and_explains_a_skipped_holdout(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from provisioning.cli import main

    paths: dict[str, list[str]] = {}
    for name, rgb in (("eileen", person_a()), ("grace", person_b())):
        d = tmp_path / "sets" / "demo" / name
        d.mkdir(parents=True)
        for i, v in enumerate([*ENROLL_VARIANTS[:3], PROBE_VARIANT]):
            save(d / f"{i}.png", variant(rgb, **v))
            paths.setdefault(name, []).append(f"sets/demo/{name}/{i}.png")
    rows = [("demo", ps[0], p, n, n, 1) for n, ps in paths.items() for p in ps[1:]]
    rows += [("demo", a, b, "eileen", "grace", 0) for a in paths["eileen"] for b in paths["grace"][:2]]
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["set", "path_a", "path_b", "identity_a", "identity_b", "same"])
        w.writerows(rows)
    out = tmp_path / "eval.json"
    r = CliRunner().invoke(main, ["eval", "--pairs", str(tmp_path / "pairs.csv"), "--root", str(tmp_path),
                                  "--biokey", "--quiet", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["biokey_genuine"] == 6 and rep["biokey_impostor"] == 8
    assert rep["biokey_genuine_rate"] >= 5 / 6 and rep["biokey_impostor_rate"] == 0.0
    # two identities: one per half, and their impostor pairs would link the halves -> skipped, with the reason
    assert "no genuine or no impostor pairs" in rep["biokey_holdout"]["skipped"]
    assert "hold-out check skipped" in r.stderr
    r2 = CliRunner().invoke(main, ["eval", "--pairs", str(tmp_path / "pairs.csv"), "--root", str(tmp_path),
                                   "--biokey", "--no-biokey-holdout", "--quiet", "--json", str(out)])
    assert r2.exit_code == 0 and "biokey_holdout" not in json.loads(out.read_text())
