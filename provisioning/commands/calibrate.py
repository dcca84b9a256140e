"""`facelock calibrate`: match thresholds that hold on faces the calibration never saw.

Every image of the dataset goes through the device pipeline once (embeddings cached under build/,
0600, never a face image); every pair of images of two different people is an impostor comparison
(millions), every pair of one person's images a genuine one.  For each operating point the threshold
is chosen by identity-disjoint cross-validation (provisioning/research/calibration.py): fitted on half
the people, its FAR counted on the other half, the fitting FAR lowered until the held-out FAR keeps
the promise overall and 10x the promise on every set; the worst set governs.  The manifest records,
next to the exact model file (sha256), the threshold, the out-of-sample FAR with its 95 % intervals
(binomial and identity bootstrap), the per-set figures, and a FAR curve from which a config's
``stranger_far``/``gallery_size`` promise takes its threshold.  Thresholds are never typed in by hand.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import click

from provisioning.errors import InputFileError

#: per-comparison FARs of the curve a config's stranger_far/gallery_size promise is resolved on
CURVE = (1e-2, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6)
SET_RATIO = 10.0  # every set of the calibration data is held to 10x the overall promise


def lfw_genuine_frr(pairs_csv: str | None, fs, vectors, thr: float, set_name: str = "lfwa_gray") -> dict | None:
    """Single-image FRR on the standard genuine pairs of one set of a pairs CSV (LFW-a View 2)."""
    if not pairs_csv:
        return None
    import numpy as np

    from provisioning.commands.eval import read_pairs

    try:
        p = read_pairs(pairs_csv, sets=(set_name,))
    except InputFileError:
        return None
    index = {path: i for i, path in enumerate(fs.paths)}
    scores = []
    for a, b, same in zip(p.path_a, p.path_b, p.same, strict=True):
        if not same:
            continue
        ia, ib = index.get(a), index.get(b)
        va = vectors[ia] if ia is not None else None
        vb = vectors[ib] if ib is not None else None
        ok = va is not None and vb is not None and np.isfinite(va).all() and np.isfinite(vb).all()
        scores.append(float(va @ vb) if ok else -2.0)
    s = np.array(scores)
    return {"set": set_name, "genuine_pairs": len(s), "rejected": int((s < thr).sum()),
            "frr": float((s < thr).mean()) if len(s) else None}


def calibrate_embeddings(fs, vectors, pairs_csv: str | None = None, reps: int = 5, seed: int = 0,
                         curve: tuple[float, ...] = CURVE, progress=lambda msg: None) -> dict:
    """The manifest's thresholds entry (minus provenance) for one embedder's embeddings of ``fs``."""
    from firmware.vision.manifest import OPERATING_POINTS
    from provisioning.research.calibration import (
        ScoredSet,
        calibrate_point,
        far_at,
        hard_impostors,
        identity_bootstrap,
        identity_halves,
    )

    space = ScoredSet.from_embeddings(vectors, fs.keys, fs.sets, fs.key_names)
    halves = identity_halves(fs.keys, reps, seed)
    ops = {}
    for name, promise in OPERATING_POINTS.items():
        op = calibrate_point(space, promise, SET_RATIO, halves=halves, bootstrap=True)
        rec = op.record(identity_bootstrap(op.held_out, seed=seed))
        rec["in_sample"] = far_at(space, op.threshold)
        hard = hard_impostors(space, op.threshold, fs.key_names)
        hard.pop("accepted_identity_pairs")  # names of people of the research set: figures only ship
        rec["hard_impostors"] = hard
        lfw = lfw_genuine_frr(pairs_csv, fs, vectors, op.threshold)
        if lfw:
            rec["lfwa_genuine_pairs"] = lfw
        ops[name] = rec
        progress(f"{name}: threshold {op.threshold:.4f} (fit at FAR {op.fit_far:.2g}, governed by {op.governed_by});"
                 f" held-out FAR {op.held_out.far:.2e} over {op.held_out.impostor_pairs:,} pairs"
                 f"{'' if op.holds else ' — DOES NOT HOLD the promise'}")
    points = []
    for promise in curve:
        op = calibrate_point(space, promise, SET_RATIO, halves=halves, bootstrap=False)
        points.append({"far": promise, "set_far": promise * SET_RATIO, "threshold": op.threshold,
                       "fit_far": op.fit_far, "holds": op.holds, "out_of_sample_far": op.held_out.far,
                       "out_of_sample_impostor_pairs": op.held_out.impostor_pairs,
                       "out_of_sample_frr": op.held_out.frr})
    imp, gen = space.pairs_of()
    return {
        "metric": "cosine",
        "operating_points": ops,
        "far_curve": points,
        "protocol": {
            "pairs": "every cross-identity pair of the images (impostor), every same-identity pair (genuine); "
                     "images without a usable face enter no impostor pair and reject every genuine one",
            "cross_validation": f"{reps} random identity-disjoint 2-way splits, fit on one half, FAR counted on "
                                "pairs of the other half's people; fit FAR lowered until the held-out FAR is "
                                "<= the promise (95 % one-sided binomial) and every set's <= set_far",
            "governs": "max(overall threshold, each set's threshold at set_far) where the set has >= 1/set_far "
                       "impostor pairs",
            "images": len(fs), "identities": len(fs.key_names), "impostor_pairs": int(len(imp)),
            "genuine_pairs": int(len(gen)), "failures": int((~space.row_ok).sum()), "seed": seed,
        },
    }


@click.command("calibrate")
@click.option("--root", required=True, type=click.Path(file_okay=False),
              help="dataset folder (images under it, manifest.csv with set,path,identity)")
@click.option("--listing", default=None, type=click.Path(dir_okay=False),
              help="image listing (default ROOT/manifest.csv; a pairs CSV also works)")
@click.option("--pairs", "pairs_csv", default=None, type=click.Path(dir_okay=False),
              help="pairs CSV whose LFW-a genuine pairs give the single-image FRR in the record")
@click.option("--model", "models", multiple=True,
              help="embedder(s) to calibrate (default: every shipped embedder in the manifest; a research-only "
                   "one, e.g. w600k_mbf, must be named and installed: `facelock models install-research`)")
@click.option("--margin", default=0.05, show_default=True, type=click.FloatRange(0, 1),
              help="1:N margin between best and second-best identity stored with the thresholds")
@click.option("--reps", default=5, show_default=True, type=click.IntRange(1, 50),
              help="random identity-disjoint splits for the cross-validation")
@click.option("--manifest", default=None, type=click.Path(), help="model manifest (default models/manifest.json)")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="embedding cache (default build/eval-cache or $FACELOCK_EVAL_CACHE)")
@click.option("--no-cache", is_flag=True, help="embed every image again and keep nothing")
@click.option("--dry-run", is_flag=True, help="print the thresholds, do not write the manifest")
@click.option("--quiet", is_flag=True)
def command(root, listing, pairs_csv, models, margin, reps, manifest, threads, cache_dir, no_cache, dry_run, quiet):
    """Write cross-validated cosine thresholds (out-of-sample FAR 1e-4 'unlock', 1e-5 'strict') into the manifest."""
    from firmware.vision.manifest import Manifest
    from provisioning.commands.eval import build_pipeline
    from provisioning.research.face_set import default_cache_dir, embeddings_for, load_face_set

    m = Manifest.load(manifest)
    names = list(models) or [n for n, s in m.models.items() if s.role == "embedder"]
    fs = load_face_set(root, listing)
    cache = None if no_cache else Path(cache_dir) if cache_dir else default_cache_dir()
    summary = {}
    for name in names:
        spec = m.spec(name)
        if spec.role != "embedder":
            raise InputFileError(f"{name} is a {spec.role}, not an embedder")
        pipe = build_pipeline(m.path, spec.name, threads, True, True, False)
        emb = embeddings_for(fs, pipe, cache=cache, progress=not quiet)[spec.name]
        entry = calibrate_embeddings(fs, emb.vectors, pairs_csv, reps,
                                     progress=lambda msg, n=spec.name: click.echo(f"{n} {msg}", err=True))
        entry["margin"] = margin
        entry["calibration"] = {
            "listing_sha256": fs.sha256, "images_sha256": fs.images_sha256, "images": len(fs), "failures": int((~emb.ok).sum()),
            "flip_augmentation": True, "alignment": "mesh-5pt", "still_face": "central (the labelled person)",
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "model_sha256": spec.sha256,
        }
        summary[spec.name] = entry
        m.set_thresholds(spec.name, entry)  # a research-only model's go to its pinned entry (research.json)
    if not dry_run:
        path = m.save()
        click.echo(f"wrote thresholds to {path}" + (f" and {m.research_path}" if m.research_path else ""), err=True)
    click.echo(json.dumps(summary, indent=2))
