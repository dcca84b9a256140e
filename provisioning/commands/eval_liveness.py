"""`facelock eval-liveness --root DIR --json OUT`: liveness figures in ISO/IEC 30107-3 terms.

Default mode: the PRODUCT's decision.  The shipped ``LivenessPolicy`` and models, unchanged, decide attempts
built exactly as the daemon builds them (``provisioning.research.liveness_attempts``) from video clips
(``live/``, ``attack/``), nuaa frame folders and still bursts; BPCER over live attempts, APCER per attack
type, the time a live person waits until "live" (median/p95), per source the attempts, verdicts and
reasons.  ``--calibrate`` adds the identity-disjoint figures: every identity decided with thresholds
fitted on the other identities only (and ``--write-thresholds`` ships the all-identity fit).

``--train`` (the component diagnostic of the texture model), over a folder laid out like extras/spoof (``nuaa_like/<subject>/{live,spoof}``, ``silent_face_samples/
{real,fake}``):
- single-frame PAD score, cross-subject: every subject is scored by a model trained on the other subjects
  only; APCER per attack type and BPCER at (a) the pooled BPCER-10 % threshold and (b) thresholds chosen on
  the training subjects alone (nested, the honest operating point);
- multi-frame attempts: every group of 4 frames of one subject's live or spoof session, scored by the mean;
- the shipped model (models/liveness) on silent_face_samples, which it never saw;
- replay: every dev image of pairs.csv replayed as a 10-frame burst with sensor noise and small shifts,
  decided by the full default LivenessPolicy (must be rejected: 100 %).
Per-image pipeline features are cached (provisioning.research.liveness_eval.cache_dir()).
"""

from __future__ import annotations

import json
import time
from itertools import combinations
from pathlib import Path

import click


def _nested_scores(x, y, subjects, l2, target):
    """Out-of-fold scores, and per test subject a threshold picked on the training subjects' own out-of-fold
    scores (never on the test subject)."""
    import numpy as np

    from provisioning.research.liveness_eval import cross_subject_scores, threshold_at_bpcer
    from provisioning.research.pad_training import fit_pad_model

    subs = np.asarray(subjects)
    scores = np.full(len(y), np.nan)
    thr = np.full(len(y), np.nan)
    for s in sorted(set(subjects)):
        te = subs == s
        inner = cross_subject_scores(x[~te], y[~te], list(subs[~te]), l2)
        t = threshold_at_bpcer(inner[y[~te] == 0], target)
        scores[te] = fit_pad_model(x[~te], y[~te], l2=l2).score_features(x[te])
        thr[te] = t
    return scores, thr


def _summary(attack_by_type, bona, thr_attack_by_type=None, thr_bona=None, pooled_target=0.10):
    import numpy as np

    from provisioning.research.liveness_eval import apcer_bpcer, operating_points, threshold_at_bpcer

    all_attack = np.concatenate(list(attack_by_type.values()))
    t = threshold_at_bpcer(bona, pooled_target)
    out = {
        "n_bona_fide": int(len(bona)),
        "n_attack": {k: int(len(v)) for k, v in attack_by_type.items()},
        "pooled_threshold": {"threshold": t, "rule": f"BPCER <= {pooled_target} on the pooled test scores",
                             "bpcer": apcer_bpcer(all_attack, bona, t)[1],
                             "apcer": {k: apcer_bpcer(v, bona, t)[0] for k, v in attack_by_type.items()}},
        "curve": operating_points(all_attack, bona),
    }
    if thr_attack_by_type is not None:
        out["nested_threshold"] = {
            "rule": f"per test subject, BPCER <= {pooled_target} on the training subjects' out-of-fold scores",
            "bpcer": float((bona >= thr_bona).mean()),
            "apcer": {k: float((v < thr_attack_by_type[k]).mean()) for k, v in attack_by_type.items()},
            "thresholds": sorted({round(float(x), 4) for x in thr_bona}),
        }
    return out


def pad_report(root: Path, pipe, l2: float, target: float) -> dict:
    import numpy as np

    from firmware.vision.liveness.pad_model import load_pad_model
    from provisioning.research.liveness_eval import cached_sequence, spoof_samples

    samples = spoof_samples(root)
    feats = [cached_sequence(pipe, s.path, "still1") for s in samples]
    no_face = [str(s.path.relative_to(root)) for s, f in zip(samples, feats, strict=True) if not f.valid[0]]
    idx = [i for i, s in enumerate(samples) if s.subject != "silent_face" and feats[i].valid[0]]
    if not idx:
        raise click.ClickException(f"no nuaa_like/<subject>/{{live,spoof}} faces under {root}")
    x = np.stack([feats[i].pad[0] for i in idx]).astype(np.float64)
    y = np.array([samples[i].attack for i in idx], dtype=np.float64)
    subjects = [samples[i].subject for i in idx]
    types = np.array([samples[i].attack_type for i in idx])
    scores, thr = _nested_scores(x, y, subjects, l2, target)
    attack_types = sorted({str(t) for t in types[y == 1]})
    single = _summary({k: scores[types == k] for k in attack_types}, scores[y == 0],
                      {k: thr[types == k] for k in attack_types}, thr[y == 0], target)
    single["protocol"] = f"leave-one-subject-out over {len(set(subjects))} subjects"

    # multi-frame: all groups of 4 frames of one subject's live or spoof session, mean score
    subs = np.asarray(subjects)
    g_scores: dict[str, list] = {"bona_fide": []}
    g_thr: dict[str, list] = {"bona_fide": []}
    for s in sorted(set(subjects)):
        for kind in ["bona_fide", *attack_types]:
            members = np.flatnonzero((subs == s) & (types == kind))
            for g in combinations(members, 4):
                g_scores.setdefault(kind, []).append(float(scores[list(g)].mean()))
                g_thr.setdefault(kind, []).append(float(thr[g[0]]))
    multi = _summary({k: np.array(g_scores[k]) for k in attack_types}, np.array(g_scores["bona_fide"]),
                     {k: np.array(g_thr[k]) for k in attack_types}, np.array(g_thr["bona_fide"]), target)
    multi["protocol"] = "every group of 4 frames of one subject's session, mean of out-of-fold scores"

    shipped = {}
    try:
        model = load_pad_model()
        rows = []
        for s, f in zip(samples, feats, strict=True):
            if s.subject == "silent_face" and f.valid[0]:
                sc = float(model.score_features(f.pad[:1])[0])
                rows.append({"file": s.path.name, "attack": s.attack, "score": sc, "rejected": sc >= model.threshold})
        shipped = {"threshold": model.threshold, "silent_face_samples": rows,
                   "note": "shipped model trained on nuaa_like only: silent_face_samples are unseen"}
    except Exception as exc:  # noqa: BLE001 - report, do not hide, a missing shipped model
        shipped = {"error": str(exc)}
    return {"single_frame": single, "multi_frame": multi, "shipped_model": shipped, "no_face": no_face,
            "l2": l2}


def replay_report(faces: Path, pipe, limit: int | None) -> dict:
    import csv

    from firmware.vision.liveness.pad_model import load_pad_model
    from firmware.vision.liveness.policy import LivenessPolicy
    from provisioning.research.liveness_eval import cached_sequence

    policy = LivenessPolicy.from_files()
    model = load_pad_model()
    images: set[str] = set()
    with open(faces / "pairs.csv", newline="") as f:
        for r in csv.DictReader(f):
            images.update((r["path_a"], r["path_b"]))
    paths = sorted(images)[:limit] if limit else sorted(images)
    import hashlib

    rejected, few_frames, accepted = 0, 0, []
    fails: dict[str, int] = {}
    held_out = {"trials": 0, "rejected": 0}
    worst = {"shape_change": 0.0, "embedding_cosine": 1.0}
    t0 = time.time()
    for p in paths:
        feats = cached_sequence(pipe, faces / p, "replay10")
        frames = feats.frames(pad_scores=model.score_features(feats.pad))
        d = policy.decide(frames)
        # the other half of the images than models/liveness/calibrate_liveness.py calibrated on
        if int(hashlib.sha1(p.encode()).hexdigest(), 16) % 2 == 1:
            held_out["trials"] += 1
            held_out["rejected"] += int(not d.live)
        if not d.live:
            rejected += 1
        else:
            accepted.append(p)
        for name, c in d.checks.items():
            if c.verdict.value == "fail":
                fails[name] = fails.get(name, 0) + 1
        st = d.checks["static_replay"]
        if st.verdict.value == "fail":
            worst["shape_change"] = max(worst["shape_change"], st.scores["shape_change"])
            worst["embedding_cosine"] = min(worst["embedding_cosine"], st.scores.get("embedding_cosine", 1.0))
        if len(frames) < policy.config.min_frames:
            few_frames += 1
    n = len(paths)
    th = policy.thresholds.static
    return {
        "trials": n, "frames_per_trial": 10, "rejected": rejected, "rejection_rate": rejected / n if n else None,
        "held_out_half": {**held_out, "rejection_rate": held_out["rejected"] / held_out["trials"]
                          if held_out["trials"] else None},
        "check_failures": fails, "trials_with_fewer_than_min_frames_with_a_face": few_frames,
        "accepted_images": accepted[:50],
        "static_thresholds": {"max_shape_change": th.max_shape_change, "min_embedding_cosine": th.min_embedding_cosine,
                              "same_face_min_cosine": th.same_face_min_cosine},
        "closest_to_threshold_among_static_fails": worst, "seconds": round(time.time() - t0, 1),
        "burst": "provisioning.research.synth.replay_burst(n=10, noise_sigma=3, max_shift=3 px, seed=0)",
    }


def _policy_with(base, fasnet_max_attack: float | None = None, static_shape: float | None = None,
                 static_cos: float | None = None, blink: dict | None = None):
    """The same policy with calibrated thresholds replaced (the identity-disjoint folds)."""
    from dataclasses import replace

    from firmware.vision.liveness.policy import LivenessPolicy

    th = base.thresholds
    if fasnet_max_attack is not None:
        th = replace(th, fasnet=replace(th.fasnet, max_attack=fasnet_max_attack))
    if static_shape is not None:
        th = replace(th, static=replace(th.static, max_shape_change=static_shape))
    if static_cos is not None:
        th = replace(th, static=replace(th.static, min_embedding_cosine=static_cos))
    if blink is not None:
        th = replace(th, blink=replace(th.blink, min_drop=blink["blink_min_drop"],
                                       min_drop_appearance=blink["blink_min_drop_appearance"]))
    if static_shape is not None:
        from provisioning.research.liveness_attempts import STATIC_SPAN_S

        th = replace(th, static=replace(th.static, min_span_s=STATIC_SPAN_S))
    pol = LivenessPolicy(base.config, th, base.pad_model, base.fasnet)
    return pol


def _blink_calibration(sources, records, policy, params, exclusions: Path | None) -> dict:
    """The blink check's thresholds from real footage, leave-one-identity-out (why: the thresholds the
    shipped policy relies on were fitted on synthetic sequences).  Positives: the windows of real live
    videos (and of live frame folders that are consecutive frames); negatives: the windows of real attack
    videos and attack frame folders; windows = every window of 3..max_frames_per_attempt consecutive face
    frames at the presented frame rate, or up to the frames spanning ``[liveness] blink_wait_s`` when more
    (what an attempt starting at any frame gives the check, waiting for a blink included); spans in
    the exclusion manifest cut out.  Per fold: thresholds from the other identities' attack windows
    (``fit_blink``: 1.25 x the deepest dip still showing a blink), then the held-out identity's attack
    windows showing a blink (blink false accept) and live windows showing one (blink detection)."""
    from provisioning.research import liveness_attempts as la

    excl = la.load_exclusions(exclusions)
    use, left = la.blink_sources(sources, excl)
    b = policy.thresholds.blink
    wait = float(policy.config.blink_wait_s)
    stats = la.blink_stats(use, records, params, policy.config.min_frames, b.min_iod_px, excl, wait)
    folds: dict = {}
    tot = {"attack": [0, 0], "live": [0, 0]}
    for ident in sorted({s.identity for s in sources}):
        fit = la.fit_blink(use, stats, exclude_identity=ident)
        row: dict = {"fit": {k: round(v, 5) for k, v in fit.items()}, "attack": [0, 0], "live": [0, 0]}
        for s in use:
            if s.identity != ident:
                continue
            hit, n = la.blink_rates(stats[s.name], fit["blink_min_drop"], fit["blink_min_drop_appearance"])
            side = "live" if s.live else "attack"
            row[side][0] += hit
            row[side][1] += n
            tot[side][0] += hit
            tot[side][1] += n
        if row["attack"][1] or row["live"][1]:  # identities with no calibration window (stills) are no fold
            folds[ident] = row
    full = la.fit_blink(use, stats)
    per_source = {}
    for s in use:
        hit, n = la.blink_rates(stats[s.name], full["blink_min_drop"], full["blink_min_drop_appearance"])
        st = stats[s.name]
        per_source[s.name] = {"live": s.live, "identity": s.identity, "windows": n, "blink_windows": hit,
                              "max_ear_dip_blinking": float(st[0].strength().max()) if st[0].n else 0.0,
                              "max_appearance_dip_blinking": float(st[1].strength().max()) if st[1].n else 0.0}
    return {
        "protocol": "leave-one-identity-out: thresholds fitted on the other identities' attack windows "
                    f"({la.BLINK_MARGIN} x the deepest relative dip still showing a blink, per signal), measured "
                    "on the held-out identity's attack and live windows",
        "windows": f"every run of {max(params.frames_per_attempt, policy.config.min_frames)}.."
                   f"{params.max_frames_per_attempt} consecutive scored face frames at the presented frame rate, "
                   + (f"or up to the frames spanning blink_wait_s {wait} s when more (the attempt waits that long "
                      "for a blink), " if wait > 0 else "")
                   + f"(a gap > face_lost_s {params.face_lost_s} s ends a run); median inter-ocular distance "
                   f">= {b.min_iod_px:.1f} px (else the check says UNKNOWN)",
        "left_out": [x for x in left if not x["source"].startswith("stills/")]
        + [{"source": f"{sum(x['source'].startswith('stills/') for x in left)} still bursts (--stills)",
            "reason": "a synthetic sequence (one photo + noise)"}], "fit": {k: round(v, 5) for k, v in full.items()},
        "held_out": {"attack_blink": f"{tot['attack'][0]}/{tot['attack'][1]}",
                     "live_blink": f"{tot['live'][0]}/{tot['live'][1]}"},
        "folds": folds, "per_source": per_source}


def _fusion_report(sources, records, policy, params, blink: dict) -> dict:
    """``--fusion``: the learned model fused with the texture model, leave-one-identity-out (texture model
    re-trained without the judged identity, fusion weight and threshold fitted on the others, the fold's
    static-replay and blink thresholds as ``--calibrate`` fits them); per method the product's figures
    (``provisioning.research.liveness_fusion``).  A measurement: nothing shipped changes."""
    from provisioning.research import liveness_attempts as la
    from provisioning.research import liveness_fusion as lf

    stats = la.window_stats(sources, records, params.max_frames_per_attempt, policy.thresholds.fasnet.frames)
    static = {i: la.calibrate(sources, stats, exclude_identity=i) for i in sorted({s.identity for s in sources})}

    def decide(ident: str, held, recs, threshold: float) -> list:
        th = static[ident]
        pol = _policy_with(policy, threshold, th["static_max_shape_change"], th["static_min_embedding_cosine"],
                           blink["folds"].get(ident, {}).get("fit", blink["fit"]))
        return la.evaluate(held, recs, pol, params)["sources"]

    res = lf.fusion_folds(sources, records, policy.thresholds.fasnet.frames, decide, sweep=lf.SWEEP_W)
    out: dict = {"protocol": lf.__doc__.split("Protocol", 1)[1].split("Pure:", 1)[0].strip(),
                 "texture_models_l2": res["texture_models"],
                 "frames_without_texture_score": res["frames_without_texture_score"]}
    for m in ("fasnet", *lf.METHODS):
        out[m] = {"summary": la.summarise(res[m]["sources"]), "folds": res[m]["folds"],
                  "all_identities_fit": res[m]["all_identities_fit"], "sources": res[m]["sources"]}
    out["sum_fixed_w"] = {
        "what": "hindsight bound, not a protocol: each weight fixed for every fold, only the threshold fitted "
                "on the other identities",
        **{f"{w:g}": {"summary": la.summarise(res[f"sum@{w:g}"]["sources"]), "changed": _changed(
            res["fasnet"]["sources"], res[f"sum@{w:g}"]["sources"])} for w in lf.SWEEP_W}}
    for m in lf.METHODS:
        out[m]["changed"] = _changed(res["fasnet"]["sources"], res[m]["sources"])
    return out


def _changed(before: list, after: list) -> list[str]:
    """The attempts whose outcome differs from the learned model alone's (``source #k: before -> after``)."""
    old = {s["name"]: [a["outcome"] for a in s["attempts"]] for s in before}
    out = []
    for s in after:
        new = [a["outcome"] for a in s["attempts"]]
        if new != old.get(s["name"]):
            out.append(f"{s['name']}: {' '.join(old.get(s['name'], []))} -> {' '.join(new)}")
    return out


def product_mode(root: Path, json_out: Path, stills: Path | None, config: Path | None, fps: float | None,
                 do_calibrate: bool, write_thresholds: bool, no_cache: bool,
                 exclusions: Path | None = None, fusion: bool = False) -> dict:
    """The shipped policy over attempts built as the daemon builds them (see the module docstring)."""
    from firmware.config import Config, load_config
    from firmware.site import open_site
    from firmware.vision.liveness import LivenessConfig, LivenessPolicy
    from firmware.vision.liveness.fasnet import FasNet
    from firmware.vision.manifest import Manifest
    from provisioning.research import liveness_attempts as la

    cfg = load_config(config) if config is not None else Config()
    lcfg = cfg.sections.get("liveness") or LivenessConfig()
    params = la.AttemptParams.from_lock(cfg.lock)
    sources = la.discover(root, stills, frames_fps=fps or cfg.camera.fps)
    if not sources:
        raise click.ClickException(f"nothing to evaluate under {root}: expected live/ and attack/ clips, "
                                   "nuaa_like/<subject>/{live,spoof} folders, or --stills")
    policy = LivenessPolicy.from_files(lcfg)
    # per-frame analysis: the daemon's analyzer; every per-frame score is computed (and cached) once,
    # whichever checks the configured policy runs, so one cache serves every policy
    scorer = policy if policy.fasnet is not None else LivenessPolicy(lcfg, policy.thresholds, policy.pad_model,
                                                                     FasNet.from_manifest())
    m = Manifest.load()
    models_id = ",".join(f"{n}:{sp.sha256[:12]}" for n, sp in sorted(m.models.items()))
    observer = la.liveness_decider(scorer, params, open_site(cfg).pipeline(1))  # the lock's per-frame analysis
    records = {}
    t0 = time.time()
    for src in sources:
        records[src.name] = la.analyze_source(src, observer, scorer, fps if src.kind == "video" else None,
                                              models_id, use_cache=not no_cache, need_pad_features=fusion)
    report: dict = {
        "standard": "ISO/IEC 30107-3: BPCER over live attempts, APCER per attack type (attempt level)",
        "decision": "the shipped LivenessPolicy and models over attempts built as the daemon builds them",
        "root": str(root), "attempt_params": params.__dict__,
        "liveness_config": {k: getattr(lcfg, k) for k in ("required", "any_of", "veto", "min_frames")},
        "thresholds": {"fasnet": policy.thresholds.fasnet.__dict__, "static": policy.thresholds.static.__dict__,
                       "motion": policy.thresholds.motion.__dict__},
        "fps": fps or "each clip's own (frame folders and bursts at [camera] fps)",
        "analysis_seconds": round(time.time() - t0, 1),
    }
    report.update(la.evaluate(sources, records, policy, params))
    if do_calibrate:
        window = params.max_frames_per_attempt
        k = policy.thresholds.fasnet.frames
        folds = {}
        per = []
        stats = la.window_stats(sources, records, window, k)
        blink = _blink_calibration(sources, records, policy, params, exclusions)
        for ident in sorted({s.identity for s in sources}):
            th = la.calibrate(sources, stats, exclude_identity=ident)
            pol = _policy_with(policy, th["fasnet_max_attack"], th["static_max_shape_change"],
                               th["static_min_embedding_cosine"],
                               # an identity with no blink window (a still) leaves the fit unchanged
                               blink["folds"].get(ident, {}).get("fit", blink["fit"]))
            held = [s for s in sources if s.identity == ident]
            r = la.evaluate(held, records, pol, params)
            per.extend(r["sources"])
            folds[ident] = {k2: round(v, 5) for k2, v in th.items()}
        full = la.calibrate(sources, stats)
        report["identity_disjoint"] = {
            "rule": "each identity decided with thresholds fitted on the other identities only",
            "summary": la.summarise(per), "sources": per, "folds": folds, "all_identities_fit": full}
        report["blink_calibration"] = blink
        if fusion:
            report["fusion"] = _fusion_report(sources, records, policy, params, blink)
        if write_thresholds:
            _write_thresholds(policy, full, report["identity_disjoint"]["summary"], blink)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    _echo(report["summary"], "shipped thresholds")
    if do_calibrate:
        _echo(report["identity_disjoint"]["summary"], "identity-disjoint calibration")
        b = report["blink_calibration"]
        click.echo(f"[blink, leave-one-identity-out] attack windows showing a blink {b['held_out']['attack_blink']}, "
                   f"live windows showing one {b['held_out']['live_blink']}; shipped fit {b['fit']}")
    if "fusion" in report:
        for m, r in report["fusion"].items():
            if isinstance(r, dict) and "summary" in r:
                _echo(r["summary"], f"fusion {m}, identity-disjoint, all-identity fit {r['all_identities_fit']}")
                for c in r.get("changed", []):
                    click.echo(f"    changed: {c}")
        for w, r in report["fusion"]["sum_fixed_w"].items():
            if isinstance(r, dict):
                _echo(r["summary"], f"fusion sum, w fixed at {w} (hindsight)")
    for s in report["sources"]:
        outs = [a["outcome"] for a in s["attempts"]]
        click.echo(f"  {s['name']}: {s['attack_type']}, attempts {len(outs)} "
                   + ", ".join(f"{o} {outs.count(o)}" for o in sorted(set(outs)))
                   + (f", first live after {s['time_to_live_s']} s" if s["time_to_live_s"] is not None else ""))
    click.echo(f"wrote {json_out}")
    return report


def _echo(summary: dict, label: str) -> None:
    ap = ", ".join(f"{k} {v['apcer'] if v['apcer'] is None else round(v['apcer'], 4)} "
                   f"({v['accepted']}/{v['attempts']})" for k, v in summary["apcer"].items())
    b = summary["bpcer"]
    ttl = summary["time_to_live_s"]
    click.echo(f"[{label}] BPCER {b if b is None else round(b, 4)} over {summary['live_attempts']} live attempts "
               f"({summary['live_attempts_refused_as_spoof']} refused as spoof, "
               f"{summary['live_attempts_inconclusive']} inconclusive); APCER {ap}; time to live median "
               f"{ttl['median']} s p95 {ttl['p95']} s; never live: {summary['live_sources_never_live']}")


def _write_thresholds(policy, fit: dict, summary: dict, blink: dict) -> None:
    """Ship the all-identity fit (sha256 re-pinned in models/liveness/manifest.json)."""
    from dataclasses import replace

    from firmware.vision.liveness.pad_model import default_liveness_dir
    from firmware.vision.liveness.policy import load_verified_json, thresholds_to_json
    from provisioning.research.liveness_attempts import STATIC_SPAN_S

    d = default_liveness_dir()
    old = load_verified_json("thresholds", d)
    th = policy.thresholds
    th = replace(th, fasnet=replace(th.fasnet, max_attack=round(fit["fasnet_max_attack"], 4)),
                 static=replace(th.static, max_shape_change=round(fit["static_max_shape_change"], 5),
                                min_embedding_cosine=round(fit["static_min_embedding_cosine"], 4),
                                min_span_s=STATIC_SPAN_S),
                 blink=replace(th.blink, min_drop=blink["fit"]["blink_min_drop"],
                               min_drop_appearance=blink["fit"]["blink_min_drop_appearance"]))
    cal = dict(old.get("calibration", {}))
    cal["blink_real_footage"] = {k: blink[k] for k in ("protocol", "windows", "left_out", "fit", "held_out", "folds")}
    cal["blink_real_footage"]["by"] = "facelock eval-liveness --calibrate --write-thresholds (blink_min_drop, " \
        "blink_min_drop_appearance; the synthetic-sequence figures above are no longer what they come from)"
    cal["product_attempts"] = {"fit": fit, "identity_disjoint_summary": {
        k: summary[k] for k in ("bpcer", "apcer", "time_to_live_s", "live_attempts")},
        "by": "facelock eval-liveness --calibrate --write-thresholds"}
    blob = thresholds_to_json(th, cal).encode()
    _repin(d, "thresholds", blob)


def _repin(d: Path, name: str, blob: bytes) -> None:
    import hashlib

    from firmware import fsutil

    man = json.loads((d / "manifest.json").read_text())
    entry = man["files"][name]
    fsutil.atomic_write(d / entry["file"], blob, 0o644)
    entry["sha256"] = hashlib.sha256(blob).hexdigest()
    entry["bytes"] = len(blob)
    fsutil.atomic_write(d / "manifest.json", (json.dumps(man, indent=2, sort_keys=True) + "\n").encode(), 0o644)
    click.echo(f"wrote {d / entry['file']} (sha256 {entry['sha256'][:12]}) and re-pinned it in {d / 'manifest.json'}")


@click.command("eval-liveness")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="liveness_video folder (live/, attack/), an extras/spoof folder (nuaa_like/), or extras/ "
                   "holding both")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="write the report here")
@click.option("--train", "train", is_flag=True,
              help="component diagnostic: re-train the texture PAD model leave-one-subject-out (old mode)")
@click.option("--stills", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="images to hold still in front of the lock (still bursts, attack type still_replay)")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="device config whose [lock]/[liveness] to use (default: the shipped defaults)")
@click.option("--fps", type=click.FloatRange(min=1.0, max=120.0), default=None,
              help="present videos at this rate (default: each clip's own)")
@click.option("--calibrate", "do_calibrate", is_flag=True,
              help="also report the identity-disjoint (leave-one-identity-out) calibration")
@click.option("--write-thresholds", is_flag=True,
              help="with --calibrate: write the all-identity fit to models/liveness/thresholds.json")
@click.option("--no-cache", is_flag=True, help="recompute every frame (default: cached numbers, no pixels)")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="--calibrate: spans left out of the blink calibration (default: "
                   "models/liveness/calibration_exclusions.csv)")
@click.option("--fusion", is_flag=True,
              help="with --calibrate: also measure the learned model fused with the texture model (weighted sum, "
                   "logistic), leave-one-identity-out with the texture model re-trained per fold; a measurement, "
                   "nothing shipped changes")
@click.option("--faces", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="--train: folder with pairs.csv for the replay run (default: ROOT/../.. when it has one)")
@click.option("--replay-limit", type=click.IntRange(min=1), default=None, help="--train: replay only N images")
@click.option("--no-replay", is_flag=True, help="--train: skip the replay run")
@click.option("--l2", type=float, default=None, help="--train: PAD regularisation (default: the shipped model's)")
@click.option("--target-bpcer", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.10)
def command(root: Path, json_out: Path, train: bool, stills: Path | None, config: Path | None, fps: float | None,
            do_calibrate: bool, write_thresholds: bool, no_cache: bool, exclusions: Path | None, fusion: bool,
            faces: Path | None,
            replay_limit: int | None, no_replay: bool, l2: float | None, target_bpcer: float) -> None:
    """The product's liveness decision on real footage (default), or the texture-model diagnostic (--train)."""
    if train:
        train_mode(root, json_out, faces, replay_limit, no_replay, l2, target_bpcer)
        return
    if fusion and not do_calibrate:
        raise click.UsageError("--fusion needs --calibrate (it is an identity-disjoint measurement)")
    product_mode(root, json_out, stills, config, fps, do_calibrate, write_thresholds, no_cache, exclusions, fusion)


def train_mode(root: Path, json_out: Path, faces: Path | None, replay_limit: int | None, no_replay: bool,
               l2: float | None, target_bpcer: float) -> None:
    """``--train``: the texture PAD model re-trained leave-one-subject-out, 4-frame groups, replay bursts.
    A component diagnostic (it never measures the shipped decision)."""
    from firmware.vision.liveness.pad_model import load_pad_model
    from firmware.vision.liveness.policy import load_thresholds
    from firmware.vision.pipeline import FacePipeline

    pipe = FacePipeline.from_manifest()
    if l2 is None:
        l2 = float(load_pad_model().meta.get("l2", 1.0))
    report = {"standard": "ISO/IEC 30107-3 (APCER per attack type, BPCER)", "root": str(root),
              "score": "attack score in [0,1]; attack when >= threshold"}
    report.update(pad_report(root, pipe, l2, target_bpcer))
    if not no_replay:
        faces = faces or root.parent.parent
        if not (faces / "pairs.csv").is_file():
            raise click.ClickException(f"no pairs.csv in {faces} for the replay run (pass --faces or --no-replay)")
        report["replay"] = replay_report(faces, pipe, replay_limit)
    th = load_thresholds()
    report["liveness_thresholds"] = {"static": th.static.__dict__, "blink": th.blink.__dict__,
                                     "motion": th.motion.__dict__}
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    s, m = report["single_frame"], report["multi_frame"]
    click.echo(f"single-frame (cross-subject): APCER {s['pooled_threshold']['apcer']} at BPCER "
               f"{s['pooled_threshold']['bpcer']:.3f}; nested APCER {s['nested_threshold']['apcer']} "
               f"BPCER {s['nested_threshold']['bpcer']:.3f}; EER {s['curve']['eer']:.3f}")
    click.echo(f"multi-frame (4):              APCER {m['pooled_threshold']['apcer']} at BPCER "
               f"{m['pooled_threshold']['bpcer']:.3f}; nested APCER {m['nested_threshold']['apcer']} "
               f"BPCER {m['nested_threshold']['bpcer']:.3f}; EER {m['curve']['eer']:.3f}")
    if "replay" in report:
        r = report["replay"]
        click.echo(f"replay bursts: {r['rejected']}/{r['trials']} rejected ({r['rejection_rate']:.4f}); "
                   f"held-out half {r['held_out_half']['rejected']}/{r['held_out_half']['trials']}; "
                   f"check failures {r['check_failures']}")
    click.echo(f"wrote {json_out}")
