"""Score-level fusion of the learned PAD model with the texture model (provisioning.research.liveness_fusion):
the fold rules `facelock eval-liveness --calibrate --fusion` measures with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware.vision.liveness import LivenessFrame
from provisioning.research import liveness_attempts as la
from provisioning.research import liveness_fusion as lf

DIM = 133


def _recs(fas, feats=None, fps=15.0, seed=0):
    """Records with a face, a learned-model score per frame and (optionally) texture features."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 100, (468, 3))
    out = []
    for i, s in enumerate(fas):
        t = i / fps
        p = LivenessFrame(landmarks=base + rng.normal(0, 2, base.shape), embedding=np.ones(8) + rng.normal(0, .05, 8),
                          fas_score=float(s), pad_score=0.5, t=t)
        out.append(la.FrameRecord(t, True, True, "ok", p, np.ones(8), None if feats is None else feats[i]))
    return out


def _world(seed=0, n_nuaa=4):
    """nuaa frame folders (texture features separate live from print, learned score does not) and videos."""
    rng = np.random.default_rng(seed)
    sources, records = [], {}
    for k in range(n_nuaa):
        ident = f"nuaa{k:04d}"
        for live in (True, False):
            name = f"nuaa_like/{k:04d}/{'live' if live else 'spoof'}"
            x = rng.normal(0, 1, (8, DIM))
            x[:, 0] += -2.0 if live else 2.0
            sources.append(la.Source(name, Path(name), live, "bona_fide" if live else "print", ident, 15.0, "frames"))
            records[name] = _recs(rng.uniform(0.3, 0.7, 8), x, seed=k)
    for k, ident in enumerate(("alice", "bob", "carol")):
        for live in (True, False):
            name = f"{'live' if live else 'attack'}/{ident}.mp4"
            x = rng.normal(0, 1, (40, DIM))
            x[:, 0] += -2.0 if live else 2.0
            fas = rng.uniform(0.0, 0.2, 40) if live else rng.uniform(0.8, 1.0, 40)
            sources.append(la.Source(name, Path(name), live, "bona_fide" if live else "screen", ident, 15.0, "video"))
            records[name] = _recs(fas, x, seed=10 + k)
    return sources, records


def test_window_medians_is_the_learned_check_rule():
    recs = _recs(np.random.default_rng(1).uniform(0, 1, 23))
    fas, _ = lf.frame_scores(recs, None)
    assert np.allclose(lf.window_medians(fas, 5), la.window_scores(recs, 5))
    assert len(lf.window_medians(fas[:4], 5)) == 0


def test_fuse_rules():
    f, t = np.array([0.1, 0.9]), np.array([0.5, np.nan])
    assert np.array_equal(lf.fuse("fasnet", {}, f, t), f)
    s = lf.fuse("sum", {"w": 0.25}, f, t)
    assert s[0] == pytest.approx(0.2) and np.isnan(s[1])  # no texture score: no fused score
    g = lf.fuse("logistic", {"a": 1.0, "b": 0.0, "c": 0.0}, f, t)
    assert g[0] == pytest.approx(0.1, abs=1e-6)
    with pytest.raises(ValueError):
        lf.fuse("max", {}, f, t)


def test_with_scores_replaces_only_the_learned_score():
    recs = _recs([0.2, 0.3, 0.4]) + [la.FrameRecord(1.0, False, False, "no_face")]
    new = lf.with_scores(recs, np.array([0.9, np.nan, 0.1]))
    assert [r.payload.fas_score if r.payload else "-" for r in new] == [0.9, None, 0.1, "-"]
    assert new[0].payload.pad_score == recs[0].payload.pad_score and np.array_equal(
        new[0].payload.landmarks, recs[0].payload.landmarks)


def _side(live, fas, tex):
    return lf.Side(live, np.asarray(fas, float), np.asarray(tex, float))


def test_sum_keeps_the_learned_model_alone_when_texture_adds_nothing():
    rng = np.random.default_rng(2)
    sides = [_side(True, rng.uniform(0, .2, 30), rng.uniform(0, 1, 30)) for _ in range(3)] + \
            [_side(False, rng.uniform(.8, 1, 30), rng.uniform(0, 1, 30)) for _ in range(3)]
    fit = lf.fit_fusion("sum", sides, 5)
    assert fit["w"] == 0.0 and fit["window_error"] == 0.0
    assert fit["threshold"] == pytest.approx(lf.fit_fusion("fasnet", sides, 5)["threshold"])


def test_sum_weighs_texture_in_when_it_separates_what_the_learned_model_cannot():
    rng = np.random.default_rng(3)
    sides = [_side(True, rng.uniform(.3, .7, 30), rng.uniform(0, .1, 30)) for _ in range(3)] + \
            [_side(False, rng.uniform(.3, .7, 30), rng.uniform(.9, 1, 30)) for _ in range(3)]
    fit = lf.fit_fusion("sum", sides, 5)
    assert fit["w"] > 0 and fit["window_error"] == 0.0 < lf.fit_fusion("fasnet", sides, 5)["window_error"]
    lg = lf.fit_fusion("logistic", sides, 5)
    assert lg["b"] > abs(lg["a"])  # the informative score carries the weight


def test_source_balanced_error_weighs_each_source_alike():
    live = [np.zeros(1000), np.ones(4)]  # a long clip all accepted, a short folder all refused at t = 0.5
    assert lf.source_balanced_error(live, [], 0.5) == pytest.approx(0.5)


def test_texture_model_without_a_subject_never_depends_on_its_frames():
    sources, records = _world()
    data = lf.texture_training_data(sources, records)
    assert len(data.y) == 64 and set(data.subjects) == {f"nuaa{k:04d}" for k in range(4)}
    m1 = lf.TextureModels(data).without(frozenset({"nuaa0001"}))
    x2 = data.x.copy()
    x2[data.subjects == "nuaa0001"] = 50.0  # the left-out subject's frames changed beyond recognition
    m2 = lf.TextureModels(lf.TextureData(x2, data.y, data.subjects)).without(frozenset({"nuaa0001"}))
    assert np.array_equal(m1.weights, m2.weights) and m1.bias == m2.bias
    m3 = lf.TextureModels(lf.TextureData(x2, data.y, data.subjects)).without(frozenset())
    assert not np.array_equal(m1.weights, m3.weights)


def test_folds_hold_out_each_identity_and_the_learned_model_alone_matches_calibrate():
    sources, records = _world()
    seen: dict[str, dict[str, float]] = {}

    def decide(ident, held, recs, threshold):
        assert {s.identity for s in held} == {ident} and set(recs) == {s.name for s in held}
        return [{"name": s.name, "ident": ident, "threshold": threshold} for s in held]

    res = lf.fusion_folds(sources, records, 5, decide)
    idents = sorted({s.identity for s in sources})
    for m in ("fasnet", "sum", "logistic"):
        assert sorted(res[m]["folds"]) == idents
        assert sorted(r["name"] for r in res[m]["sources"]) == sorted(s.name for s in sources)
        seen[m] = {r["ident"]: r["threshold"] for r in res[m]["sources"]}
    stats = la.window_stats(sources, records, 30, 5)
    for ident in idents:  # the learned model alone: the very threshold --calibrate fits for that fold
        assert seen["fasnet"][ident] == pytest.approx(la.calibrate(sources, stats, exclude_identity=ident)
                                                      ["fasnet_max_attack"])
    # each nuaa subject judged by a model without it, trained on models without it and each other subject
    keys = set(res["texture_models"])
    for k in range(4):
        assert f"nuaa{k:04d}" in keys
        assert all(",".join(sorted((f"nuaa{k:04d}", f"nuaa{j:04d}"))) in keys for j in range(4) if j != k)
    # texture separates the nuaa folders the learned score cannot: the fusion weighs it in
    assert res["sum"]["all_identities_fit"]["w"] > 0


def test_sweep_at_weight_zero_is_the_learned_model_alone():
    sources, records = _world(seed=4)
    res = lf.fusion_folds(sources, records, 5, lambda i, held, recs, t: [{"i": i, "t": t}], methods=("fasnet",),
                          sweep=(0.0, 0.5))
    assert [r["t"] for r in res["sum@0"]["sources"]] == [r["t"] for r in res["fasnet"]["sources"]]
    assert all(f["w"] == 0.5 for f in res["sum@0.5"]["folds"].values())


def test_fusion_is_an_identity_disjoint_measurement_only(tmp_path):
    from click.testing import CliRunner

    from provisioning.cli import main

    res = CliRunner().invoke(main, ["eval-liveness", "--root", str(tmp_path), "--json", str(tmp_path / "r.json"),
                                    "--fusion"])
    assert res.exit_code != 0 and "--fusion needs --calibrate" in res.output
