"""provisioning.biokey_eval on generated pairs (and, when ../shared is there, on real faces)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from firmware.biokey import BiokeyParams
from provisioning.biokey_eval import _upper95, entropy_estimate, evaluate_biokey, pairs_from_embeddings


def _unit(rng, d=128):
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v)


def _near(rng, x, cos):
    z = rng.standard_normal(x.size)
    z -= z.dot(x) * x
    z /= np.linalg.norm(z)
    return cos * x + np.sqrt(1 - cos**2) * z


def test_rates_on_generated_pairs():
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(30):
        x = _unit(rng)
        pairs.append((x, _near(rng, x, 0.85), True))
        pairs.append((x, _unit(rng), False))
    pairs.append((None, _unit(rng), True))  # no face found: counts as a genuine failure
    rep = evaluate_biokey(pairs, sets=["a"] * 40 + ["b"] * 21)
    assert rep["biokey_genuine"] == 31 and rep["biokey_impostor"] == 30
    assert rep["biokey_genuine_rate"] == pytest.approx(30 / 31)
    assert rep["biokey_impostor_rate"] == 0.0
    assert rep["biokey_missing_embeddings"] == 1
    assert 0 < rep["biokey_entropy_bits"] <= rep["biokey_code"]["k"]
    assert rep["biokey_entropy_certified_bits"] == pytest.approx(-np.log2(1 - 0.05 ** (1 / 30)), abs=0.1)
    assert set(rep["biokey_per_set"]) == {"a", "b"}


def test_entropy_estimate_behaves():
    p = BiokeyParams()
    rng = np.random.default_rng(1)
    # independent bits: fhd ~ Binomial(n, 0.5)/n -> dof ~ n, entropy capped by k
    fhd = rng.binomial(p.n, 0.5, size=4000) / p.n
    e = entropy_estimate(fhd, p, 0)
    assert e["biokey_degrees_of_freedom"] == pytest.approx(p.n, rel=0.1)
    assert e["biokey_entropy_bits"] == e["biokey_code"]["k"]
    # strongly correlated bits (few degrees of freedom): far fewer bits
    fhd_low = rng.binomial(20, 0.5, size=4000) / 20
    low = entropy_estimate(fhd_low, p, 0)
    assert low["biokey_degrees_of_freedom"] == pytest.approx(20, rel=0.15)
    assert low["biokey_entropy_bits"] < low["biokey_degrees_of_freedom"] < e["biokey_entropy_bits"]  # <= N bits
    assert low["biokey_entropy_fe_bound_bits"] == 0.0


def test_upper_bound():
    assert _upper95(0, 3000) == pytest.approx(0.000998, rel=0.01)  # the "rule of three"
    assert 0.01 < _upper95(10, 1000) < 0.02


def test_adapter_from_cache():
    e = {"a.png": np.ones(8), "b.png": None}
    out = pairs_from_embeddings(["a.png", "a.png"], ["b.png", "a.png"], [1, 0], e)
    assert out[0][1] is None and out[1][2] is False


@pytest.mark.shared
@pytest.mark.slow
def test_biokey_on_real_pairs_subset(shared_faces):
    """Every 8th pair of pairs.csv through the real pipeline: the acceptance bar on a subset."""
    pytest.importorskip("ai_edge_litert")
    from firmware.vision import FacePipeline, QualityConfig, VisionError, load_image

    with open(shared_faces / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))[::8]
    pipe = FacePipeline.from_manifest(num_threads=1, quality=QualityConfig.permissive())
    cache: dict[str, np.ndarray | None] = {}
    for r in rows:
        for path in (r["path_a"], r["path_b"]):
            if path not in cache:
                try:
                    res = pipe.process(load_image(shared_faces / path))
                    cache[path] = res.embedding if res.ok else None
                except VisionError:
                    cache[path] = None
    pairs = pairs_from_embeddings([r["path_a"] for r in rows], [r["path_b"] for r in rows],
                                  [r["same"] == "1" for r in rows], cache)
    rep = evaluate_biokey(pairs)
    assert rep["biokey_genuine_rate"] >= 0.90, rep
    assert rep["biokey_impostor_accepted"] <= 1, rep  # <= 0.002 on ~500 impostor pairs
