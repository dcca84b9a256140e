"""Verification metrics against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.research.metrics import (
    FAILURE_SCORE,
    auc,
    best_accuracy_threshold,
    cv_accuracy,
    default_folds,
    eer,
    summarize,
    tar_at_far,
    threshold_at_far,
)

scores_st = st.lists(st.floats(-1, 1, allow_nan=False).map(lambda x: round(x, 3)), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(scores_st, st.sampled_from([1e-1, 1e-2, 1e-3, 0.5]))
def test_threshold_at_far_is_the_lowest_threshold_meeting_the_target(imp, far):
    imp = np.array(imp)
    thr = threshold_at_far(imp, far)
    allowed = int(np.floor(far * len(imp) + 1e-9))
    assert (imp >= thr).sum() <= allowed
    lower = [s for s in np.unique(imp) if s < thr]
    if lower:  # any lower candidate (an impostor score) would exceed the allowance
        assert (imp >= max(lower)).sum() > allowed


@settings(max_examples=150, deadline=None)
@given(scores_st, scores_st)
def test_auc_is_the_pairwise_win_rate(gen, imp):
    g, i = np.array(gen), np.array(imp)
    brute = ((g[:, None] > i[None]).sum() + 0.5 * (g[:, None] == i[None]).sum()) / (len(g) * len(i))
    assert auc(g, i) == pytest.approx(brute)


@settings(max_examples=150, deadline=None)
@given(scores_st, st.lists(st.booleans(), min_size=1, max_size=60))
def test_best_accuracy_threshold_is_optimal(s, y):
    n = min(len(s), len(y))
    s, y = np.array(s[:n]), np.array(y[:n])
    thr, acc = best_accuracy_threshold(s, y)
    assert ((s >= thr) == y).mean() == pytest.approx(acc)
    cands = np.concatenate([np.unique(s), [np.inf]])
    assert acc >= max(((s >= c) == y).mean() for c in cands) - 1e-12


def test_known_values():
    gen = np.array([0.9, 0.8, 0.7, 0.3])
    imp = np.array([0.1, 0.2, 0.4, 0.75])
    assert auc(gen, imp) == pytest.approx(13 / 16)
    tar, thr = tar_at_far(gen, imp, 0.25)
    assert tar == pytest.approx(0.75) and 0.4 < thr < 0.4 + 1e-9  # one impostor (0.75) may pass
    assert eer(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 0.0
    assert 0.2 <= eer(gen, imp) <= 0.3
    s = np.array([FAILURE_SCORE, 0.9, 0.1])
    r = summarize(s, np.array([True, True, False]), np.array([0, 1, 2]))
    assert r["pairs"] == 3 and r["genuine"] == 2  # the failed genuine pair counts, as a reject


def test_folds_are_stratified_and_deterministic():
    y = np.array([True] * 30 + [False] * 20)
    f = default_folds(y)
    assert (f == default_folds(y)).all()
    for k in range(10):
        assert (y[f == k]).sum() == 3 and (~y[f == k]).sum() == 2


def test_cv_accuracy_separable_and_random():
    rng = np.random.default_rng(0)
    y = np.arange(400) % 2 == 0
    s = np.where(y, 0.8, 0.2) + rng.normal(0, 0.05, 400)
    assert cv_accuracy(s, y, default_folds(y))["accuracy"] == 1.0
    r = cv_accuracy(rng.normal(size=400), y, default_folds(y))["accuracy"]
    assert 0.35 < r < 0.65
