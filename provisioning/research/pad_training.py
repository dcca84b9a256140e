"""Training of the single-frame PAD classifier (build time only: models/liveness/train_pad.py, evaluations).

The device only *scores* with a fitted :class:`firmware.vision.liveness.pad_model.PadModel`; fitting lives
here so that no training code ships in, or is imported by, the lock's runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from firmware.vision.liveness.pad_model import PadModel


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> tuple[np.ndarray, float]:
    """Newton-IRLS fit of an L2-regularised logistic regression on standardised x. Returns (w, b).

    Classes are weighted to balance (live and attack counts differ per fold).
    """
    n, d = x.shape
    pos = max(float(y.sum()), 1.0)
    neg = max(float(n - y.sum()), 1.0)
    sw = np.where(y > 0.5, n / (2 * pos), n / (2 * neg))
    xa = np.column_stack([x, np.ones(n)])
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(iters):
        z = np.clip(xa @ theta, -30, 30)
        p = 1 / (1 + np.exp(-z))
        g = xa.T @ (sw * (p - y)) + reg * theta
        hmat = (xa * (sw * p * (1 - p))[:, None]).T @ xa + np.diag(reg + 1e-9)
        step = np.linalg.solve(hmat, g)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:-1], float(theta[-1])


def fit_pad_model(features: np.ndarray, is_attack: np.ndarray, l2: float = 1.0, threshold: float = 0.5,
                  meta: dict[str, Any] | None = None) -> PadModel:
    """Standardise the features and fit the logistic regression: the PadModel the device loads."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(is_attack, dtype=np.float64)
    mean = x.mean(0)
    std = x.std(0) + 1e-6
    w, b = fit_logistic((x - mean) / std, y, l2=l2)
    return PadModel(mean, std, w, b, float(threshold), dict(meta or {}))


#: the L2 strengths ``select_l2`` chooses from (models/liveness/train_pad.py's grid)
L2_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


def select_l2(x: np.ndarray, y: np.ndarray, subjects: list[str], target_bpcer: float = 0.10,
              grid: tuple[float, ...] = L2_GRID) -> tuple[float, dict[float, tuple[float, float, float]]]:
    """The texture model's selection rule, cross-subject only: per L2, the leave-one-subject-out scores, their
    threshold at ``target_bpcer`` and the APCER there; the best L2 is the lowest APCER (ties: the stronger
    regularisation).  Returns (best L2, {l2: (apcer, bpcer, threshold)}).  One rule for the shipped model
    (train_pad.py) and every re-trained fold (liveness_fusion)."""
    from provisioning.research.liveness_eval import apcer_bpcer, cross_subject_scores, threshold_at_bpcer

    results: dict[float, tuple[float, float, float]] = {}
    for l2 in grid:
        sc = cross_subject_scores(x, y, subjects, l2)
        thr = threshold_at_bpcer(sc[y == 0], target_bpcer)
        apcer, bpcer = apcer_bpcer(sc[y == 1], sc[y == 0], thr)
        results[l2] = (float(apcer), float(bpcer), float(thr))
    best = min(grid, key=lambda k: (results[k][0], -k))
    return best, results
