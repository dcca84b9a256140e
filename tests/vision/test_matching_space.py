"""The research matching-space maps (provisioning/research/matching_space.py) on synthetic embeddings.

Why: the figures it reports (no learned linear map beats the shipped cosine by the issue-12 margin)
are only worth something if the maps are what they claim: the identity config is the shipped path
exactly, WCCN whitens the within-identity scatter it was fitted on, the fold never looks at the
held-out identities, and failed images stay failures.
"""

from __future__ import annotations

import numpy as np

from provisioning.research import matching_space as ms


def _people(rng: np.random.Generator, n_id: int = 60, per: int = 4, d: int = 12, noise_axis: int = 0):
    """Unit embeddings of ``n_id`` people, their within-person variation mostly along one axis."""
    centres = rng.normal(size=(n_id, d))
    keys = np.repeat(np.arange(n_id), per)
    x = centres[keys] + 0.1 * rng.normal(size=(n_id * per, d))
    x[:, noise_axis] += 1.5 * rng.normal(size=n_id * per)
    return x / np.linalg.norm(x, axis=1, keepdims=True), keys


def test_identity_config_is_the_shipped_cosine():
    rng = np.random.default_rng(0)
    x, keys = _people(rng)
    mu, w = ms.fit_space(x, keys, ms.SpaceConfig())
    assert np.array_equal(w, np.eye(x.shape[1])) and not mu.any()
    np.testing.assert_allclose(ms.project(x, mu, w), x, atol=1e-6)


def test_wccn_whitens_the_fitted_within_class_scatter():
    rng = np.random.default_rng(1)
    x, keys = _people(rng)
    mu, w = ms.fit_space(x, keys, ms.SpaceConfig(shrink=0.0))
    sw, dof = ms.within_class_scatter(x, keys)
    assert dof == len(x) - len(np.unique(keys))
    white = w @ (sw / (np.trace(sw) / x.shape[1])) @ w.T
    np.testing.assert_allclose(white, np.eye(x.shape[1]), atol=1e-6)
    # the nuisance axis, where one person's photos differ most, is the one shrunk most
    assert np.argmin(np.linalg.norm(w, axis=0)) == 0


def test_wccn_separates_people_whose_photos_vary_along_one_axis():
    rng = np.random.default_rng(2)
    x, keys = _people(rng, n_id=120)
    fit = keys < 60
    mu, w = ms.fit_space(x[fit], keys[fit], ms.SpaceConfig(shrink=0.1))

    def gap(v):  # genuine mean minus impostor mean cosine, on the people the fit never saw
        v, k = v[~fit], keys[~fit]
        s = v @ v.T
        same = (k[:, None] == k[None, :]) & ~np.eye(len(k), dtype=bool)
        return s[same].mean() - s[k[:, None] != k[None, :]].mean()

    assert gap(ms.project(x, mu, w)) > gap(x) + 0.1


def test_failed_images_stay_failures_and_reject_every_pair():
    rng = np.random.default_rng(3)
    x, keys = _people(rng)
    x[5] = np.nan
    mu, w = ms.fit_space(x[~np.isnan(x).any(1)], keys[~np.isnan(x).any(1)], ms.SpaceConfig(0.5, centre=True))
    z = ms.project(x, mu, w)
    assert np.isnan(z[5]).all() and np.isfinite(np.delete(z, 5, 0)).all()
    s = ms.pair_scores(z, np.array([[4, 5], [5, 6], [4, 6]]))
    assert s[0] == s[1] == -2.0 and -1.0 <= s[2] <= 1.0


def test_the_map_is_fitted_on_the_fit_identities_only(monkeypatch):
    """run_fold hands fit_space the rows of the fit half and nothing of the held-out half."""
    rng = np.random.default_rng(4)
    x, keys = _people(rng, n_id=40)
    seen = {}
    real = ms.fit_space

    def spy(xf, kf, cfg, sets=None, teacher=None):
        seen["keys"] = set(kf.tolist())
        seen["teacher_rows"] = None if teacher is None else len(teacher)
        return real(xf, kf, cfg, sets, teacher)

    monkeypatch.setattr(ms, "fit_space", spy)

    class FS:  # the FaceSet fields run_fold reads
        pass

    fs = FS()
    fs.keys, fs.sets, fs.key_names = keys, np.array(["s"] * len(keys)), [str(k) for k in range(40)]
    train, test = np.arange(20), np.arange(20, 40)
    pairs = np.array([(i, i + 1) for i in range(0, len(keys), 4)])
    r = ms.run_fold(x, np.ones(len(keys), bool), fs, train, test, ms.SpaceConfig(0.5), pairs, [1e-2],
                    teacher=x.copy())
    assert seen["keys"] == set(train.tolist()) and seen["teacher_rows"] == 20 * 4
    assert r.lfw_pairs == 20  # only the held-out people's genuine pairs are counted
