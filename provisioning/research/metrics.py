"""Verification metrics over scored pairs: ROC, TAR@FAR, EER, AUC, k-fold accuracy (pure numpy).

Convention: a pair is accepted when ``score >= threshold``.  Pairs whose images had no usable face get
``FAILURE_SCORE`` (below every cosine), so they count as non-matches and are never dropped.
"""

from __future__ import annotations

import numpy as np

FAILURE_SCORE = -2.0


def _split(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError("scores and labels must be 1-d and of equal length")
    return s[y], s[~y]


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """Smallest threshold whose false-accept rate on ``impostor`` is <= far.

    With n impostors at most floor(far·n) of them may score >= the threshold; when that is 0 the
    threshold sits just above the highest impostor score.
    """
    imp = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    if len(imp) == 0:
        raise ValueError("no impostor scores")
    k = int(np.floor(far * len(imp) + 1e-9))
    if k >= len(imp):
        return float(imp[-1])
    return float(np.nextafter(imp[k], np.inf))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the target FAR."""
    thr = threshold_at_far(impostor, far)
    gen = np.asarray(genuine, dtype=np.float64)
    return (float((gen >= thr).mean()) if len(gen) else float("nan")), thr


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds), thresholds descending, starting at (0, 0)."""
    gen = np.asarray(genuine, dtype=np.float64)
    imp = np.asarray(impostor, dtype=np.float64)
    thr = np.unique(np.concatenate([gen, imp]))[::-1]
    g = np.sort(gen)
    i = np.sort(imp)
    tar = (len(g) - np.searchsorted(g, thr, side="left")) / max(len(g), 1)
    far = (len(i) - np.searchsorted(i, thr, side="left")) / max(len(i), 1)
    return np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]), np.concatenate([[np.inf], thr])


def auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Probability that a genuine pair outscores an impostor pair (ties count half)."""
    gen = np.asarray(genuine, dtype=np.float64)
    imp = np.asarray(impostor, dtype=np.float64)
    if not len(gen) or not len(imp):
        return float("nan")
    i = np.sort(imp)
    below = np.searchsorted(i, gen, side="left")
    ties = np.searchsorted(i, gen, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(gen) * len(imp)))


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate (linear interpolation where FAR crosses FRR)."""
    far, tar, _ = roc_curve(genuine, impostor)
    frr = 1 - tar
    d = far - frr
    k = int(np.argmax(d >= 0))
    if k == 0:
        return float(far[0])
    d0, d1 = d[k - 1], d[k]
    w = d0 / (d0 - d1) if d1 != d0 else 0.0
    return float(far[k - 1] + w * (far[k] - far[k - 1]))


def best_accuracy_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy on (scores, labels); midpoints between scores."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    order = np.argsort(s)
    s, y = s[order], y[order]
    # threshold between s[j-1] and s[j]: pairs 0..j-1 rejected, j.. accepted
    neg_below = np.concatenate([[0], np.cumsum(~y)])
    pos_above = y.sum() - np.concatenate([[0], np.cumsum(y)])
    acc = (neg_below + pos_above) / len(s)
    valid = np.ones(len(s) + 1, dtype=bool)
    valid[1:-1] = s[1:] > s[:-1]  # cannot split between equal scores
    j = int(np.argmax(np.where(valid, acc, -1)))
    if j == 0:
        thr = s[0] - 1e-6
    elif j == len(s):
        thr = s[-1] + 1e-6
    else:
        thr = (s[j - 1] + s[j]) / 2
    return float(thr), float(acc[j])


def default_folds(labels: np.ndarray, k: int = 10) -> np.ndarray:
    """Deterministic stratified folds: the i-th genuine (impostor) pair in file order goes to fold i % k."""
    y = np.asarray(labels).astype(bool)
    folds = np.empty(len(y), dtype=np.int64)
    for cls in (True, False):
        idx = np.flatnonzero(y == cls)
        folds[idx] = np.arange(len(idx)) % k
    return folds


def cv_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict:
    """k-fold accuracy: threshold chosen on the other folds, accuracy measured on the held-out one."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    f = np.asarray(folds)
    accs, thrs = [], []
    for fold in np.unique(f):
        test = f == fold
        thr, _ = best_accuracy_threshold(s[~test], y[~test]) if (~test).any() else (0.0, 0.0)
        accs.append(float(((s[test] >= thr) == y[test]).mean()))
        thrs.append(thr)
    return {"accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
            "fold_thresholds_mean": float(np.mean(thrs)), "folds": len(accs)}


def summarize(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray | None = None) -> dict:
    """All pair-level metrics of the `facelock eval` JSON for one set of pairs."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    gen, imp = _split(s, y)
    if folds is None:
        folds = default_folds(y)
    out: dict = {"pairs": int(len(s)), "genuine": int(len(gen)), "impostor": int(len(imp))}
    out.update(cv_accuracy(s, y, folds))
    if len(gen) and len(imp):
        for far, key in ((1e-2, "1e-2"), (1e-3, "1e-3"), (1e-4, "1e-4")):
            tar, thr = tar_at_far(gen, imp, far)
            out[f"tar_at_far_{key}"] = tar
            out[f"threshold_at_far_{key}"] = thr
        out["eer"] = eer(gen, imp)
        out["auc"] = auc(gen, imp)
    return out
