"""Honest match thresholds: every cross-identity pair, identity-disjoint cross-validation, worst set governs.

Why this shape (issue 12): thresholds fitted at "FAR 1e-3" on a 4,114-pair impostor list accepted 4x
more strangers on faces outside it, 14x on family photos.  A list that small cannot see below ~1e-3,
and one set (grey LFW-a) dominated it.  So:

- **all pairs**: every pair of images of two different people is an impostor comparison (millions of
  them; FAR resolvable to ~1e-6), every pair of one person's images a genuine one;
- **worst set governs**: a threshold is fitted overall at the promised FAR and on each set (pairs
  inside one set) at ``set_ratio`` times it; the highest wins, so no kind of face is left weaker;
- **out of sample**: the identities are split in two halves (``reps`` random splits); thresholds are
  fitted on one half's pairs and the FAR counted on the other half's pairs, whose people the fit never
  saw.  The fitting FAR is lowered (``fit_far = promise * m``) until the out-of-sample FAR holds the
  promise with 95 % confidence; the shipped threshold is then fitted on every identity at that fit FAR;
- **interval**: Clopper-Pearson on the pooled held-out counts treats pairs as independent, which they
  are not (one person is in thousands of pairs), so an identity bootstrap (resampling people) is
  reported next to it.

Pure numpy over a matrix of cosine scores; images without a usable face never enter impostor pairs
(the device makes no comparison for them) and count as rejections in genuine pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FAILURE_SCORE = -2.0
#: threshold of a fit that saw no impostor pair at all: it can vouch for nothing, so it accepts nobody
REJECT_ALL = 1.5
#: fitting FAR = promise x one of these, largest first: the first that holds out of sample is shipped
FIT_MULTIPLIERS = (1.0, 0.8, 0.63, 0.5, 0.4, 0.32, 0.25, 0.2, 0.16, 0.125, 0.1, 0.063, 0.04)


# ----------------------------------------------------------------------------------------- statistics
def clopper_pearson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial interval for k successes in n trials."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    a = (1 - conf) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def cp_upper(k: int, n: int, conf: float = 0.95) -> float:
    """One-sided upper confidence bound of a binomial rate."""
    from scipy.stats import beta

    if n <= 0:
        return 1.0
    return 1.0 if k >= n else float(beta.ppf(conf, k + 1, n - k))


def threshold_at_far(impostor_desc: np.ndarray, far: float) -> float:
    """Smallest threshold accepting at most floor(far*n) of the impostor scores (sorted descending).

    Accept means ``score >= threshold``.  With floor(far*n) == 0 the threshold sits just above the
    highest impostor score: with too few pairs to see ``far`` the rule errs on the strict side.
    """
    n = len(impostor_desc)
    if n == 0:
        return REJECT_ALL
    k = int(np.floor(far * n + 1e-9))
    if k >= n:
        return float(impostor_desc[-1])
    return float(np.nextafter(np.float64(impostor_desc[k]), np.inf))


def count_at_or_above(sorted_asc: np.ndarray, thr: float) -> int:
    return int(len(sorted_asc) - np.searchsorted(sorted_asc, thr, side="left"))


# ----------------------------------------------------------------------------------------- pair space
@dataclass
class ScoredSet:
    """Cosine scores of probes (rows) against references (columns) with their labels.

    ``symmetric``: rows and columns are the same images (each unordered pair counted once); otherwise
    every (probe, reference) cell is a comparison (an attempt against a template), except a probe
    against its own source image.
    """

    scores: np.ndarray  # (R, C) float32
    row_keys: np.ndarray  # (R,) identity index
    col_keys: np.ndarray  # (C,)
    row_sets: np.ndarray  # (R,) set name
    col_sets: np.ndarray
    row_ok: np.ndarray  # (R,) bool: usable face
    col_ok: np.ndarray
    symmetric: bool
    row_image: np.ndarray | None = None  # (R,) source image index of each probe (non-symmetric)
    key_names: list[str] = field(default_factory=list)

    @classmethod
    def from_embeddings(cls, vectors: np.ndarray, keys: np.ndarray, sets: np.ndarray,
                        key_names: list[str] | None = None) -> ScoredSet:
        v = np.nan_to_num(np.asarray(vectors, np.float32))
        ok = np.isfinite(np.asarray(vectors)).all(1)
        s = v @ v.T
        s[~ok] = FAILURE_SCORE
        s[:, ~ok] = FAILURE_SCORE
        return cls(s, keys, keys, sets, sets, ok, ok, True, key_names=key_names or [])

    def pair_masks(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(impostor, genuine) boolean masks over the sub-matrix [rows][:, cols]."""
        rk, ck = self.row_keys[rows], self.col_keys[cols]
        same = rk[:, None] == ck[None, :]
        if self.symmetric:
            upper = rows[:, None] < cols[None, :]
            both_ok = self.row_ok[rows][:, None] & self.col_ok[cols][None, :]
            return (~same) & upper & both_ok, same & upper
        ok = self.col_ok[cols][None, :] & self.row_ok[rows][:, None]
        own = (self.row_image[rows][:, None] == cols[None, :]) if self.row_image is not None else False
        return (~same) & ok, same & ~own

    def pairs_of(self, keys_in: np.ndarray | None = None, set_name: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(impostor scores, genuine scores), each sorted ascending, of pairs whose both identities are
        in ``keys_in`` (all when None) and, with ``set_name``, whose both images are in that set."""
        tag = (None if keys_in is None else hash(np.asarray(keys_in).tobytes()), set_name)
        cache = self.__dict__.setdefault("_pairs_cache", {})
        if tag not in cache:
            imp, gen = self._pairs_of(keys_in, set_name)
            cache[tag] = (np.sort(imp.astype(np.float64)), np.sort(gen.astype(np.float64)))
        return cache[tag]

    def _pairs_of(self, keys_in: np.ndarray | None, set_name: str | None) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(len(self.row_keys))
        cols = np.arange(len(self.col_keys))
        if keys_in is not None:
            rows = rows[np.isin(self.row_keys, keys_in)]
            cols = cols[np.isin(self.col_keys, keys_in)]
        if set_name is not None:
            rows = rows[self.row_sets[rows] == set_name]
            cols = cols[self.col_sets[cols] == set_name]
        sub = self.scores[np.ix_(rows, cols)]
        imp, gen = self.pair_masks(rows, cols)
        return sub[imp], sub[gen]

    @property
    def set_names(self) -> list[str]:
        return sorted(set(self.row_sets.tolist()) & set(self.col_sets.tolist()))


# -------------------------------------------------------------------------------------- fit and check
@dataclass
class Fit:
    """Thresholds fitted on one group of identities at one fitting FAR."""

    overall: float
    per_set: dict[str, float]
    governing: dict[str, bool]  # set -> had enough pairs to see its FAR, so it may govern

    @property
    def shipped(self) -> float:
        cand = [self.overall] + [t for s, t in self.per_set.items() if self.governing[s]]
        return float(max(cand))

    @property
    def governed_by(self) -> str:
        best, name = self.overall, "overall"
        for s, t in self.per_set.items():
            if self.governing[s] and t > best:
                best, name = t, s
        return name


def _desc(sorted_asc: np.ndarray) -> np.ndarray:
    return sorted_asc[::-1]


def fit_thresholds(space: ScoredSet, keys_in: np.ndarray | None, fit_fars: list[float], set_ratio: float,
                   cache: dict | None = None) -> list[Fit]:
    """One :class:`Fit` per fitting FAR (overall at f, each set at f * set_ratio)."""
    imp_all, _ = space.pairs_of(keys_in)
    all_desc = _desc(imp_all)
    per_set_desc = {}
    for s in space.set_names:
        imp_s, _ = space.pairs_of(keys_in, s)
        if len(imp_s):
            per_set_desc[s] = _desc(imp_s)
    fits = []
    for f in fit_fars:
        ps = {s: threshold_at_far(d, min(f * set_ratio, 1.0)) for s, d in per_set_desc.items()}
        gov = {s: len(d) * f * set_ratio >= 1.0 for s, d in per_set_desc.items()}
        fits.append(Fit(threshold_at_far(all_desc, f), ps, gov))
    return fits


@dataclass
class HeldOut:
    """Pooled counts on identities that were not in the fit."""

    impostor_accepts: int = 0
    impostor_pairs: int = 0
    genuine_rejects: int = 0
    genuine_pairs: int = 0
    per_set: dict[str, list[int]] = field(default_factory=dict)  # set -> [accepts, pairs, rejects, genuine]
    thresholds: list[float] = field(default_factory=list)
    boot_num: list[np.ndarray] = field(default_factory=list)  # per half: (K, K) accept counts by identity pair
    boot_den: list[np.ndarray] = field(default_factory=list)

    @property
    def far(self) -> float:
        return self.impostor_accepts / max(self.impostor_pairs, 1)

    @property
    def frr(self) -> float:
        return self.genuine_rejects / max(self.genuine_pairs, 1)


def identity_halves(keys: np.ndarray, reps: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``reps`` random splits of the identities present in ``keys`` into two halves, both ways round."""
    uniq = np.unique(keys)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        p = rng.permutation(uniq)
        a, b = np.sort(p[: len(p) // 2]), np.sort(p[len(p) // 2:])
        out += [(a, b), (b, a)]
    return out


def _identity_pair_counts(space: ScoredSet, keys_in: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """(accepts, pairs) summed per identity pair over the impostor pairs of ``keys_in``."""
    rows = np.flatnonzero(np.isin(space.row_keys, keys_in))
    cols = np.flatnonzero(np.isin(space.col_keys, keys_in))
    sub = space.scores[np.ix_(rows, cols)]
    imp, _ = space.pair_masks(rows, cols)
    pos = {k: i for i, k in enumerate(keys_in.tolist())}
    mr = np.zeros((len(rows), len(keys_in)), np.float32)
    mr[np.arange(len(rows)), [pos[k] for k in space.row_keys[rows].tolist()]] = 1
    mc = np.zeros((len(cols), len(keys_in)), np.float32)
    mc[np.arange(len(cols)), [pos[k] for k in space.col_keys[cols].tolist()]] = 1
    acc = (imp & (sub >= thr)).astype(np.float32)
    return mr.T @ acc @ mc, mr.T @ imp.astype(np.float32) @ mc


def held_out_check(space: ScoredSet, halves, fits_per_half: list[list[Fit]], which: int,
                   bootstrap: bool = False) -> HeldOut:
    """Counts on each test half at the ``which``-th fit of its training half, pooled."""
    h = HeldOut()
    for (_, test), fits in zip(halves, fits_per_half, strict=True):
        thr = fits[which].shipped
        h.thresholds.append(thr)
        imp, gen = space.pairs_of(test)
        h.impostor_accepts += count_at_or_above(imp, thr)
        h.impostor_pairs += len(imp)
        h.genuine_rejects += len(gen) - count_at_or_above(gen, thr)
        h.genuine_pairs += len(gen)
        for s in space.set_names:
            i_s, g_s = space.pairs_of(test, s)
            c = h.per_set.setdefault(s, [0, 0, 0, 0])
            c[0] += count_at_or_above(i_s, thr)
            c[1] += len(i_s)
            c[2] += len(g_s) - count_at_or_above(g_s, thr)
            c[3] += len(g_s)
        if bootstrap:
            num, den = _identity_pair_counts(space, test, thr)
            h.boot_num.append(num)
            h.boot_den.append(den)
    return h


def identity_bootstrap(h: HeldOut, draws: int = 400, seed: int = 0, conf: float = 0.95) -> tuple[float, float]:
    """Interval of the pooled held-out FAR when the *people* are resampled (pairs share people)."""
    rng = np.random.default_rng(seed)
    vals = np.empty(draws)
    for b in range(draws):
        num = den = 0.0
        for n_, d_ in zip(h.boot_num, h.boot_den, strict=True):
            w = rng.multinomial(len(n_), np.full(len(n_), 1 / len(n_))).astype(np.float64)
            num += float(w @ n_ @ w)
            den += float(w @ d_ @ w)
        vals[b] = num / max(den, 1.0)
    a = (1 - conf) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


@dataclass
class OperatingPoint:
    promise: float  # per-comparison FAR promised overall
    set_promise: float  # per-comparison FAR promised on every set
    fit_far: float  # FAR at which the shipped threshold was fitted
    threshold: float
    governed_by: str
    held_out: HeldOut
    holds: bool  # out-of-sample FAR met the promises at fit_far

    def record(self, ci_boot: tuple[float, float] | None = None) -> dict:
        h = self.held_out
        lo, hi = clopper_pearson(h.impostor_accepts, h.impostor_pairs)
        per_set = {}
        for s, (a, n, r, g) in sorted(h.per_set.items()):
            slo, shi = clopper_pearson(a, n)
            per_set[s] = {"far": a / n if n else None, "impostors_above": a, "impostor_pairs": n,
                          "ci95": [slo, shi], "frr": r / g if g else None, "genuine_pairs": g}
        out = {
            "far": self.promise, "set_far": self.set_promise, "threshold": self.threshold,
            "fit_far": self.fit_far, "governed_by": self.governed_by, "holds": self.holds,
            "out_of_sample": {
                "far": h.far, "impostors_above": h.impostor_accepts, "impostor_pairs": h.impostor_pairs,
                "ci95_binomial": [lo, hi], "frr": h.frr, "genuine_pairs": h.genuine_pairs,
                "thresholds_range": [min(h.thresholds), max(h.thresholds)], "per_set": per_set,
            },
        }
        if ci_boot is not None:
            out["out_of_sample"]["ci95_identity_bootstrap"] = list(ci_boot)
        return out


def calibrate_point(space: ScoredSet, promise: float, set_ratio: float = 10.0, reps: int = 5, seed: int = 0,
                    min_set_pairs_ratio: float = 1.0, halves=None, bootstrap: bool = True) -> OperatingPoint:
    """Choose the fitting FAR by identity-disjoint CV, then fit on everything.

    The chosen fit FAR is the largest ``promise * m`` (m in FIT_MULTIPLIERS) at which the held-out FAR
    is <= ``promise`` with 95 % one-sided binomial confidence and every set's held-out FAR is <=
    ``promise * set_ratio``.  When none holds, the strictest is shipped and ``holds`` is False.
    """
    halves = halves or identity_halves(space.row_keys, reps, seed)
    fit_fars = [promise * m for m in FIT_MULTIPLIERS]
    fits = [fit_thresholds(space, train, fit_fars, set_ratio) for train, _ in halves]
    chosen, ok = len(fit_fars) - 1, False
    for j in range(len(fit_fars)):
        h = held_out_check(space, halves, fits, j)
        sets_ok = all(a <= promise * set_ratio * n for a, n, _, _ in h.per_set.values() if n)
        if cp_upper(h.impostor_accepts, h.impostor_pairs) <= promise and sets_ok:
            chosen, ok = j, True
            break
    h = held_out_check(space, halves, fits, chosen, bootstrap=bootstrap)
    final = fit_thresholds(space, None, [fit_fars[chosen]], set_ratio)[0]
    return OperatingPoint(promise, promise * set_ratio, fit_fars[chosen], final.shipped, final.governed_by, h, ok)


# --------------------------------------------------------------------------------------- measurements
def far_at(space: ScoredSet, thr: float) -> dict:
    """FAR/FRR at one threshold over all pairs and per set (in-sample when ``space`` was calibrated on)."""
    def rates(imp: np.ndarray, gen: np.ndarray) -> dict:
        a = count_at_or_above(imp, thr)
        r = len(gen) - count_at_or_above(gen, thr)
        return {"far": a / len(imp) if len(imp) else None, "impostors_above": a, "impostor_pairs": int(len(imp)),
                "frr": r / len(gen) if len(gen) else None, "genuine_pairs": int(len(gen))}

    out = {"threshold": thr, **rates(*space.pairs_of()), "per_set": {}}
    for s in space.set_names:
        out["per_set"][s] = rates(*space.pairs_of(None, s))
    return out


def surname(name: str) -> str:
    parts = [p for p in name.split("_") if p.lower() not in ("jr", "sr", "ii", "iii")]
    return parts[-1].lower() if len(parts) > 1 else ""


def hard_impostors(space: ScoredSet, thr: float, key_names: list[str]) -> dict:
    """Impostor pairs of two different people with the same surname (LFW naming), which includes
    the real relatives the sets hold (Bush father and son, the Clintons, ...)."""
    sn = np.array([surname(k) if "/" not in k else "" for k in key_names])
    rs, cs = sn[space.row_keys], sn[space.col_keys]
    rows = np.flatnonzero(rs != "")
    cols = np.flatnonzero(cs != "")
    sub = space.scores[np.ix_(rows, cols)]
    imp, _ = space.pair_masks(rows, cols)
    mask = imp & (rs[rows][:, None] == cs[cols][None, :])
    s = sub[mask]
    ri, ci = np.nonzero(mask & (sub >= thr))
    accepted = sorted({tuple(sorted((key_names[space.row_keys[rows[a]]], key_names[space.col_keys[cols[b]]])))
                       for a, b in zip(ri, ci, strict=True)})
    mi, mj = np.nonzero(mask)
    ka, kb = space.row_keys[rows[mi]], space.col_keys[cols[mj]]
    id_pairs = {(int(min(a, b)), int(max(a, b))) for a, b in zip(ka, kb, strict=True)}
    people = {k for p in id_pairs for k in p}
    return {"kind": "same surname, different person", "impostor_pairs": int(len(s)),
            "identity_pairs": len(id_pairs), "people": len(people), "impostors_above": int((s >= thr).sum()),
            "far": float((s >= thr).mean()) if len(s) else None,
            "accepted_identity_pairs": [list(p) for p in accepted]}
