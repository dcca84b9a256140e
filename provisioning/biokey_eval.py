"""Evaluate the fuzzy extractor on labelled pairs: enroll from image a, regenerate from image b.

Called by ``facelock eval --biokey`` with the pipeline's embeddings, or
directly with ``(embedding_a, embedding_b, same)`` triples.  Reports

* ``biokey_genuine_rate``: same person, key regenerated (a missing embedding
  -- no face found -- counts as not regenerated);
* ``biokey_impostor_rate``: different people, key regenerated;
* ``biokey_entropy_bits``: an estimate of how many bits of guessing a key
  costs an attacker who presents faces, capped by the code dimension k.
  Method (Daugman's degrees of freedom, as for iris codes): the impostor
  pairs' fractional bit disagreement (before decoding) has mean p and
  standard deviation s; it behaves like a binomial of N = p(1-p)/s^2
  independent bits.  A random face regenerates the key when it disagrees in
  at most t of n bits, i.e. with probability P = BinomCDF(floor(N t/n); N, p),
  and the estimate is min(k, -log2 P).  Also reported, for honesty:
  ``biokey_entropy_certified_bits`` = -log2 of the 95 % upper bound of the
  measured impostor rate (all that the data alone can certify), and
  ``biokey_entropy_fe_bound_bits`` = max(0, N - (n - k)), the worst-case
  fuzzy-extractor bound (the code offset may leak n-k bits).
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Iterable, Sequence

import numpy as np

from firmware.biokey import extractor
from firmware.biokey.bch import bch_code
from firmware.biokey.errors import WrongFaceError

Pair = tuple["np.ndarray | None", "np.ndarray | None", bool]


def _binom_log2_cdf(x: int, n: int, p: float) -> float:
    """log2 P(X <= x) for X ~ Binomial(n, p), computed in log space (tiny tails)."""
    if x < 0:
        return -math.inf
    if x >= n:
        return 0.0
    terms = [
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)
        for k in range(x + 1)
    ]
    m = max(terms)
    return (m + math.log(sum(math.exp(t - m) for t in terms))) / math.log(2)


def _upper95(successes: int, trials: int) -> float:
    """One-sided 95 % Clopper-Pearson upper bound (exact for 0 successes: 1 - 0.05^(1/n))."""
    if trials == 0:
        return 1.0
    if successes == 0:
        return 1.0 - 0.05 ** (1.0 / trials)
    lo, hi = successes / trials, 1.0
    for _ in range(60):  # bisection on P(X <= successes; p) = 0.05
        mid = (lo + hi) / 2
        if _binom_log2_cdf(successes, trials, mid) > math.log2(0.05):
            lo = mid
        else:
            hi = mid
    return hi


def entropy_estimate(impostor_fhd: np.ndarray, params: extractor.BiokeyParams, impostor_hits: int) -> dict:
    """The entropy figures described in the module docstring."""
    n, t = params.n, params.t
    k = bch_code(params.m, params.t).k
    out: dict = {"biokey_code": {"n": n, "k": k, "t": t}}
    if impostor_fhd.size >= 2:
        p = float(impostor_fhd.mean())
        s = float(impostor_fhd.std(ddof=1))
        dof = p * (1 - p) / s**2 if s > 0 else float(n)
        dof_i = max(1, int(round(dof)))
        log2p = _binom_log2_cdf(int(math.floor(dof_i * t / n)), dof_i, p)
        out.update(
            biokey_impostor_bit_disagreement_mean=round(p, 4),
            biokey_impostor_bit_disagreement_std=round(s, 4),
            biokey_degrees_of_freedom=round(dof, 1),
            biokey_entropy_bits=round(min(float(k), -log2p), 1),
            biokey_entropy_fe_bound_bits=round(max(0.0, dof - (n - k)), 1),
        )
    else:
        out.update(biokey_entropy_bits=None, biokey_degrees_of_freedom=None, biokey_entropy_fe_bound_bits=None)
    trials = int(impostor_fhd.size)
    out["biokey_entropy_certified_bits"] = (
        round(-math.log2(_upper95(impostor_hits, trials)), 1) if trials else None
    )
    return out


def evaluate_biokey(
    pairs: Iterable[Pair],
    params: extractor.BiokeyParams | None = None,
    sets: Sequence[str] | None = None,
) -> dict:
    """Enroll a fresh fuzzy extractor from each pair's a, try to regenerate the key from b.

    ``pairs`` yields (embedding_a, embedding_b, same); an embedding may be None
    (the pipeline found no face): the pair then counts as not regenerated.
    ``sets``, if given, names each pair's subset for a per-set breakdown.
    """
    p = params or extractor.BiokeyParams()
    n = p.n
    ok_list, same_list, fhd_list = [], [], []
    t_enroll, t_rep = [], []
    for a, b, same in pairs:
        same_list.append(bool(same))
        if a is None or b is None:
            ok_list.append(False)
            fhd_list.append(math.nan)
            continue
        t0 = time.perf_counter()
        key, helper = extractor.enroll(a, p)
        t1 = time.perf_counter()
        bits_b = extractor.probe_bits(b, helper)
        bits_a = extractor.probe_bits(a, helper)
        fhd_list.append(float(np.count_nonzero(bits_a ^ bits_b)) / n)
        t2 = time.perf_counter()
        try:
            ok = hmac.compare_digest(extractor.reproduce(b, helper), key)
        except WrongFaceError:
            ok = False
        t3 = time.perf_counter()
        ok_list.append(ok)
        t_enroll.append(t1 - t0)
        t_rep.append(t3 - t2)
    ok_arr, same_arr, fhd = np.array(ok_list, bool), np.array(same_list, bool), np.array(fhd_list)
    gen, imp = same_arr, ~same_arr
    imp_fhd = fhd[imp & np.isfinite(fhd)]
    report: dict = {
        "biokey_pairs": int(ok_arr.size),
        "biokey_genuine": int(gen.sum()),
        "biokey_impostor": int(imp.sum()),
        "biokey_genuine_rate": float(ok_arr[gen].mean()) if gen.any() else None,
        "biokey_impostor_rate": float(ok_arr[imp].mean()) if imp.any() else None,
        "biokey_impostor_accepted": int(ok_arr[imp].sum()),
        "biokey_missing_embeddings": int((~np.isfinite(fhd)).sum()),
        "biokey_genuine_bit_disagreement_median": float(np.nanmedian(fhd[gen])) if gen.any() else None,
    }
    report.update(entropy_estimate(imp_fhd, p, int(ok_arr[imp].sum())))
    report["biokey_params"] = {"m": p.m, "t": p.t, "candidates": p.candidates}
    if t_enroll:
        report["biokey_ms_enroll_median"] = round(1e3 * float(np.median(t_enroll)), 2)
        report["biokey_ms_regenerate_median"] = round(1e3 * float(np.median(t_rep)), 2)
    if sets is not None:
        names = np.array(list(sets))
        per = {}
        for name in sorted(set(names.tolist())):
            m = names == name
            per[name] = {
                "genuine": int((m & gen).sum()),
                "impostor": int((m & imp).sum()),
                "biokey_genuine_rate": float(ok_arr[m & gen].mean()) if (m & gen).any() else None,
                "biokey_impostor_rate": float(ok_arr[m & imp].mean()) if (m & imp).any() else None,
            }
        report["biokey_per_set"] = per
    return report


def pairs_from_embeddings(path_a: Sequence[str], path_b: Sequence[str], same: Sequence[bool],
                          embeddings: dict[str, np.ndarray | None]) -> list[Pair]:
    """Adapter for an embedding cache {image path: embedding or None} (e.g. `facelock eval`'s results)."""
    if not len(path_a) == len(path_b) == len(same):
        raise ValueError("path_a, path_b and same must have one entry per pair")
    return [(embeddings.get(a), embeddings.get(b), bool(s)) for a, b, s in zip(path_a, path_b, same, strict=True)]
