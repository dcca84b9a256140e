"""provisioning.research.biokey_eval on generated pairs (and, when ../shared is there, on real faces)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from firmware.biokey import BiokeyParams
from provisioning.research.biokey_eval import (
    _upper95,
    entropy_estimate,
    evaluate_biokey,
    pairs_from_embeddings,
)


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


# ---- held-out choice of t ------------------------------------------------------------------------
def test_split_halves_is_identity_disjoint():
    from provisioning.research.biokey_eval import DROPPED, TEST, TUNE, split_halves

    sets, ia, ib = [], [], []
    for fold in range(5):  # LFW View-2 order: 600 pairs per fold, identities disjoint between folds
        for j in range(600):
            sets.append("lfwa_gray")
            ia.append(f"f{fold}p{j % 50}")
            ib.append(f"f{fold}p{(j + (j % 2)) % 50}")
    for j in range(40):  # a small set: identities alternate between halves
        sets.append("orl")
        ia.append(f"s{j % 4}")
        ib.append(f"s{(j + j % 3) % 4}")
    halves = split_halves(sets, ia, ib)
    assert halves[:1800] == [TUNE] * 1800 and halves[1800:3000] == [TEST] * 1200
    seen: dict[tuple[str, str], set[str]] = {}
    for s, a, b, h in zip(sets, ia, ib, halves, strict=True):
        if h != DROPPED:
            for x in (a, b):
                seen.setdefault((s, x), set()).add(h)
    assert all(len(v) == 1 for v in seen.values())
    assert {h for s, h in zip(sets, halves, strict=True) if s == "orl"} == {TUNE, TEST, DROPPED}
    # genuine pairs are never dropped
    assert all(h != DROPPED for a, b, h in zip(ia, ib, halves, strict=True) if a == b)
    # an explicit fold column wins over the position
    folds = [4] * 600 + [0] * 2400 + [0] * 40
    assert split_halves(sets, ia, ib, folds)[:600] == [TEST] * 600
    # an LFW file whose identities cross folds is refused, not silently leaked
    with pytest.raises(ValueError, match="View-2"):
        split_halves(["lfwa_gray"] * 1800, ["x"] * 1800, ["x"] * 1800, [0] * 900 + [3] * 900)


def test_bit_distances_match_the_decoder():
    """Regeneration happens exactly when the measured distance is <= t, at every t."""
    from provisioning.research.biokey_eval import bit_distances

    rng = np.random.default_rng(5)
    x = _unit(rng)
    pairs = [(x, _near(rng, x, c), True) for c in (0.95, 0.9, 0.85, 0.8, 0.7)] + [(x, None, True)]
    hd = bit_distances(pairs, BiokeyParams(), draws=2, seed=1)
    assert hd.shape == (6, 2) and np.isinf(hd[5]).all() and np.all(np.diff(hd[:5].mean(axis=1)) >= -5)
    from firmware.biokey import extractor

    for t in (20, 50, 70, 90):
        p = BiokeyParams(t=t)
        for a, b, _ in pairs[:5]:
            key, helper = extractor.enroll(a, p)
            d = int(np.count_nonzero(extractor.probe_bits(a, helper) ^ extractor.probe_bits(b, helper)))
            try:
                ok = extractor.reproduce(b, helper) == key
            except extractor.WrongFaceError:
                ok = False
            assert ok == (d <= t), (t, d)


def test_choose_t_respects_measured_and_predicted_impostor_rates():
    from provisioning.research.biokey_eval import choose_t, predicted_impostor_rate

    rng = np.random.default_rng(6)
    n = 511
    genuine = rng.binomial(n, 0.08, size=(2000, 1)).astype(float)
    impostor = rng.binomial(26, 0.46, size=(2000, 1)) * (n / 26.0)  # ~26 degrees of freedom, like faces
    hd = np.vstack([genuine, impostor])
    same = np.array([True] * 2000 + [False] * 2000)
    t, table = choose_t(hd, same, 9, max_impostor_rate=0.0005)
    assert table[t][1] <= 0.0005 and predicted_impostor_rate(impostor.ravel(), n, t) <= 0.0005
    bigger = [u for u in table if u > t]
    assert all(table[u][1] > 0.0005 or predicted_impostor_rate(impostor.ravel(), n, u) > 0.0005 for u in bigger)
    assert table[t][0] == max(table[u][0] for u in table if u <= t)  # the most genuine regenerations allowed


def test_holdout_check_on_generated_pairs():
    from provisioning.research.biokey_eval import TEST, TUNE, holdout_check

    rng = np.random.default_rng(7)
    pairs, halves = [], []
    for i in range(60):
        x = _unit(rng)
        h = TUNE if i % 2 else TEST
        pairs += [(x, _near(rng, x, 0.85), True), (x, _unit(rng), False)]
        halves += [h, h]
    rep = holdout_check(pairs, halves, draws=2, seed=3)
    assert rep["tune_pairs"] == rep["test_pairs"] == 60
    chosen = rep["test_at_chosen_t"]
    assert chosen["t"] == rep["chosen_t"] and chosen["biokey_genuine_rate"] >= 0.9
    assert chosen["biokey_impostor_rate"] == 0.0 and chosen["bar_met"] is True
    assert chosen["biokey_impostor_rate_upper95"] == pytest.approx(1 - 0.05 ** (1 / 30), abs=1e-4)


def test_holdout_check_refuses_an_empty_half():
    from provisioning.research.biokey_eval import TEST, TUNE, holdout_check

    rng = np.random.default_rng(8)
    x = _unit(rng)
    pairs = [(x, _near(rng, x, 0.9), True), (x, _unit(rng), False)]
    with pytest.raises(ValueError, match="test half"):
        holdout_check(pairs, [TUNE, TUNE], draws=1)
    with pytest.raises(ValueError, match="tuning half"):
        holdout_check(pairs, [TEST, TUNE], draws=1)
