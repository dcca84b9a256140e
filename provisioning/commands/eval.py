"""`facelock eval`: verification accuracy of the face pipeline on a labelled pairs CSV.

Every image named by the CSV goes through the device pipeline (decode -> detect -> mesh -> align ->
embed) once; its embedding is cached in memory for the run only (embeddings of real faces are personal
data: nothing is written but the metrics).  Images with no usable face are *failures*: their pairs score
below every cosine, so they count as non-matches and are never dropped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from provisioning.errors import InputFileError

REQUIRED = ("set", "path_a", "path_b", "identity_a", "identity_b", "same")


@dataclass
class Pairs:
    sets: list[str]
    path_a: list[str]
    path_b: list[str]
    same: np.ndarray
    folds: np.ndarray | None
    sha256: str
    identity_a: list[str] = field(default_factory=list)
    identity_b: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.same)

    @property
    def images(self) -> list[str]:
        return sorted(set(self.path_a) | set(self.path_b))


def read_pairs(path: str | Path, limit: int | None = None, sets: tuple[str, ...] = ()) -> Pairs:
    """Parse and validate a pairs CSV (columns set,path_a,path_b,identity_a,identity_b,same[,fold])."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise InputFileError(f"cannot read pairs CSV {p}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(f"pairs CSV {p} is not UTF-8 text") from exc
    reader = csv.DictReader(text.splitlines())
    cols = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise InputFileError(f"pairs CSV {p} lacks column(s) {', '.join(missing)} (has {', '.join(cols) or 'none'})")
    has_fold = "fold" in cols
    s, a, b, y, f, ia, ib = [], [], [], [], [], [], []
    for line, row in enumerate(reader, start=2):
        if sets and row["set"] not in sets:
            continue
        if row["same"] not in ("0", "1"):
            raise InputFileError(f"{p}:{line}: 'same' must be 0 or 1, got {row['same']!r}")
        if not row["path_a"] or not row["path_b"]:
            raise InputFileError(f"{p}:{line}: empty image path")
        s.append(row["set"])
        a.append(row["path_a"])
        b.append(row["path_b"])
        y.append(row["same"] == "1")
        ia.append(row["identity_a"])
        ib.append(row["identity_b"])
        if has_fold:
            try:
                f.append(int(row["fold"]))
            except (TypeError, ValueError) as exc:
                raise InputFileError(f"{p}:{line}: fold must be an integer, got {row['fold']!r}") from exc
        if limit and len(y) >= limit:
            break
    if not y:
        raise InputFileError(f"pairs CSV {p} has no pairs" + (f" in set(s) {', '.join(sets)}" if sets else ""))
    return Pairs(s, a, b, np.array(y, dtype=bool), np.array(f) if has_fold else None,
                 hashlib.sha256(raw).hexdigest(), ia, ib)


@dataclass
class ImageResult:
    embedding: np.ndarray | None
    reason: str
    ms: float
    detector: str = ""
    alignment: str = ""
    compare: np.ndarray | None = None  # embedding of the same aligned crop by the comparison model


@dataclass
class EmbeddingRun:
    results: dict[str, ImageResult] = field(default_factory=dict)


def embed_images(pipe, root: Path, images: list[str], compare=None, progress: bool = True,
                 threads_note: str = "") -> dict[str, ImageResult]:
    """Run the pipeline once per image. ``compare``: a second Embedder run on the same aligned crop."""
    from firmware.vision import VisionError, load_image
    from provisioning.research.face_set import process_still

    out: dict[str, ImageResult] = {}

    def one(rel: str) -> ImageResult:
        path = (root / rel)
        try:
            rgb = load_image(path)
        except VisionError as exc:
            return ImageResult(None, f"unreadable: {type(exc).__name__}", 0.0)
        t0 = time.perf_counter()
        res = process_still(pipe, rgb)  # the labelled (central) face of the photo
        ms = (time.perf_counter() - t0) * 1e3
        prim = res.primary
        r = ImageResult(res.embedding, res.reason.value, ms, prim.detector if prim else "",
                        prim.alignment if prim else "")
        if compare is not None and res.ok:
            r.compare = compare(prim.aligned)
        return r

    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=False) as bar:
            task = bar.add_task("images", total=len(images))
            for rel in images:
                out[rel] = one(rel)
                bar.advance(task)
    else:
        for rel in images:
            out[rel] = one(rel)
    return out


def pair_scores(pairs: Pairs, results: dict[str, ImageResult]) -> np.ndarray:
    from provisioning.research.metrics import FAILURE_SCORE

    s = np.empty(len(pairs), dtype=np.float64)
    for i, (a, b) in enumerate(zip(pairs.path_a, pairs.path_b, strict=True)):
        ea, eb = results[a].embedding, results[b].embedding
        s[i] = FAILURE_SCORE if ea is None or eb is None else float(np.dot(ea, eb))
    return s


def report(pairs: Pairs, results: dict[str, ImageResult], spec, extra: dict | None = None) -> dict:
    from provisioning.research.metrics import default_folds, summarize

    scores = pair_scores(pairs, results)
    folds = pairs.folds if pairs.folds is not None else default_folds(pairs.same)
    out = summarize(scores, pairs.same, folds)
    images = pairs.images
    failed = sorted(i for i in images if results[i].embedding is None)
    out = {
        "pairs": out.pop("pairs"), "genuine": out.pop("genuine"), "impostor": out.pop("impostor"),
        "images": len(images), "failures": len(failed), "failure_rate": len(failed) / max(len(images), 1),
        **out,
    }
    out["failure_reasons"] = dict(Counter(results[i].reason for i in failed))
    out["failed_images"] = failed
    ms = [r.ms for r in results.values() if r.ms > 0]
    out["median_ms_per_image"] = float(np.median(ms)) if ms else None
    out["detectors_used"] = dict(Counter(r.detector for r in results.values() if r.detector))
    out["alignment_used"] = dict(Counter(r.alignment for r in results.values() if r.alignment))
    out["model"] = {"name": spec.name, "sha256": spec.sha256, "bytes": spec.bytes,
                    "quantization": spec.quantization}
    out["pairs_csv_sha256"] = pairs.sha256
    per_set = {}
    sets = np.array(pairs.sets)
    for name in sorted(set(pairs.sets)):
        m = sets == name
        sub_y = pairs.same[m]
        sub_f = folds[m] if pairs.folds is not None else default_folds(sub_y)
        d = summarize(scores[m], sub_y, sub_f)
        imgs = set(np.array(pairs.path_a)[m]) | set(np.array(pairs.path_b)[m])
        d["images"] = len(imgs)
        d["failures"] = sum(1 for i in imgs if results[i].embedding is None)
        per_set[name] = d
    out["per_set"] = per_set
    cmp = [float(np.dot(r.embedding, r.compare)) for r in results.values()
           if r.compare is not None and r.embedding is not None]
    if cmp:
        c = np.array(cmp)
        out["compare_cosine"] = {"images": len(c), "median": float(np.median(c)), "mean": float(c.mean()),
                                 "p05": float(np.percentile(c, 5)), "min": float(c.min())}
    if extra:
        out.update(extra)
    return out


def face_set_of(pairs: Pairs, root: str | Path):
    """The labelled images of a pairs CSV as a FaceSet (global identity keys: one person in two sets is
    one identity)."""
    from provisioning.research.face_set import FaceSet, identity_key

    seen: dict[str, tuple[str, str]] = {}
    for st, a, b, ia, ib in zip(pairs.sets, pairs.path_a, pairs.path_b, pairs.identity_a, pairs.identity_b,
                                strict=True):
        seen.setdefault(a, (st, ia))
        seen.setdefault(b, (st, ib))
    items = sorted((p, s_, i) for p, (s_, i) in seen.items())
    keys = [identity_key(s_, i) for _, s_, i in items]
    names = sorted(set(keys))
    index = {k: n for n, k in enumerate(names)}
    return FaceSet(Path(root), [p for p, _, _ in items], np.array([s_ for _, s_, _ in items]),
                   np.array([i for _, _, i in items]), np.array([index[k] for k in keys]), names, pairs.sha256)


def vectors_of(fs, results: dict[str, ImageResult], dim: int) -> np.ndarray:
    v = np.full((len(fs), dim), np.nan, np.float32)
    for i, p in enumerate(fs.paths):
        e = results[p].embedding if p in results else None
        if e is not None:
            v[i] = e
    return v


def shipped_far_report(fs, vectors: np.ndarray, spec) -> dict:
    """FAR/FRR at the manifest's shipped thresholds over *all* cross-identity (and same-identity) pairs
    of the images, overall and per set, the same-surname impostors as their own row, and the
    out-of-sample estimate the calibration recorded.  When these images are the calibration images the
    all-pairs figures are in-sample: the ``out_of_sample`` record is the one that says what a stranger
    outside them faces."""
    from provisioning.research.calibration import ScoredSet, far_at, hard_impostors

    space = ScoredSet.from_embeddings(vectors, fs.keys, fs.sets, fs.key_names)
    ops = spec.thresholds.get("operating_points", {})
    out: dict = {"images": len(fs), "identities": len(fs.key_names)}
    for name in ops:
        thr = spec.threshold(name)
        d = far_at(space, thr)
        d["promise"] = {"far": ops[name].get("far"), "set_far": ops[name].get("set_far")}
        d["hard_impostors"] = hard_impostors(space, thr, fs.key_names)
        if "out_of_sample" in ops[name]:
            oos = ops[name]["out_of_sample"]
            d["calibration_out_of_sample"] = {k: oos.get(k) for k in (
                "far", "impostor_pairs", "ci95_binomial", "ci95_identity_bootstrap", "frr")}
        d["same_images_as_calibration"] = spec.thresholds.get("calibration", {}).get("images_sha256") == fs.images_sha256
        out[name] = d
    return out


def attempts_report(fs, still_vectors: np.ndarray, pipe, threshold: float, margin: float, clips: Path | None,
                    fps: float, frames: int, cache: Path | None, progress: bool) -> dict:
    """Attempt-level figures: augmented bursts of every still (all cross-identity attempt/template pairs,
    stranger's chance for 1/10/50 enrolled people) and the live clips through the gated pipeline."""
    from provisioning.research import attempts as at
    from provisioning.research.face_set import embeddings_for

    out: dict = {"threshold": threshold, "margin": margin}
    burst = embeddings_for(fs, pipe, burst=5, cache=cache, progress=progress)[pipe.embedder.spec.name]
    out["bursts"] = at.burst_report(fs, still_vectors, burst.vectors, threshold, frames)
    if clips is not None and clips.is_dir():
        from firmware.vision import FacePipeline
        from firmware.vision.config import VisionConfig

        gated = FacePipeline.from_config(VisionConfig(embedder=pipe.embedder.spec.name))
        cf = at.read_clips(clips, gated, fps, progress)
        out["live_clips"] = at.clip_attempt_report(cf, threshold, margin, frames=frames)
    return out


def plot_roc(pairs: Pairs, results: dict[str, ImageResult], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InputFileError("--plot needs matplotlib (pip install matplotlib)") from exc
    from provisioning.research.metrics import roc_curve

    scores = pair_scores(pairs, results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    sets = np.array(pairs.sets)
    groups = [("all", np.ones(len(pairs), dtype=bool))] + [(n, sets == n) for n in sorted(set(pairs.sets))]
    low = 1.0
    for name, m in groups:
        g, i = scores[m & pairs.same], scores[m & ~pairs.same]
        if not len(g) or not len(i):
            continue
        far, tar, _ = roc_curve(g, i)
        low = min(low, float(tar[np.searchsorted(far, 1e-4, side="right") - 1]) if (far <= 1e-4).any() else 0.0)
        lw = 2.5 if name == "all" else 1.2
        ax1.plot(np.maximum(far, 1e-5), tar, label=f"{name} ({m.sum()})", lw=lw)
        frr = 1 - tar
        ax2.plot(np.maximum(far, 1e-5), np.maximum(frr, 1e-5), lw=lw, label=name)
    ax1.set_xscale("log")
    ax1.set_xlim(1e-4, 1)
    ax1.set_ylim(max(0.0, low - 0.02), 1.002)
    ax1.set_xlabel("false accept rate")
    ax1.set_ylabel("true accept rate")
    ax1.set_title("ROC")
    ax1.axvline(1e-3, color="grey", ls=":")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7, loc="lower right")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlim(1e-4, 1)
    ax2.set_ylim(1e-4, 1)
    ax2.set_xlabel("false accept rate")
    ax2.set_ylabel("false reject rate")
    ax2.set_title("DET")
    ax2.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_pipeline(manifest: str | None, model: str | None, threads: int, flip: bool | None, landmarks: bool,
                   gates: bool):
    from firmware.vision import FacePipeline, QualityConfig

    quality = QualityConfig() if gates else QualityConfig.permissive()
    return FacePipeline.from_manifest(manifest, embedder=model or "embedder", num_threads=threads,
                                      quality=quality, use_landmarks=landmarks, flip=flip)


def run(pairs_csv: str, root: str, manifest: str | None = None, model: str | None = None, threads: int = 1,
        flip: bool | None = None, landmarks: bool = True, gates: bool = False, compare: str | None = None,
        limit: int | None = None, sets: tuple[str, ...] = (), progress: bool = True):
    """Evaluate; returns (report dict, pairs, per-image results)."""
    from firmware.vision.embedder import Embedder
    from firmware.vision.runtime import TFLiteModel

    rootp = Path(root)
    if not rootp.is_dir():
        raise InputFileError(f"--root {rootp} is not a directory")
    pairs = read_pairs(pairs_csv, limit, sets)
    pipe = build_pipeline(manifest, model, threads, flip, landmarks, gates)
    cmp_embedder = None
    if compare:
        m = pipe.manifest
        cmp_embedder = Embedder(TFLiteModel(m.verified_path(compare), threads), m.spec(compare),
                                flip=pipe.embedder.flip)
    t0 = time.perf_counter()
    results = embed_images(pipe, rootp, pairs.images, cmp_embedder, progress)
    extra = {"pipeline": {"detector": pipe.detector.spec.name,
                          "fallback_detector": pipe.fallback_detector.spec.name if pipe.fallback_detector else None,
                          "landmarks": bool(pipe.landmarker), "flip_augmentation": pipe.embedder.flip,
                          "quality_gates": "device" if gates else "off (detection failures only)",
                          "threads": threads},
             "wall_seconds": round(time.perf_counter() - t0, 1)}
    if compare:
        extra["compare_model"] = compare
    return report(pairs, results, pipe.embedder.spec, extra), pairs, results


@click.command("eval")
@click.option("--pairs", "pairs_csv", required=True, type=click.Path(dir_okay=False),
              help="CSV with set,path_a,path_b,identity_a,identity_b,same[,fold]")
@click.option("--root", required=True, type=click.Path(file_okay=False), help="directory the CSV's paths are relative to")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="write the JSON report here (default stdout)")
@click.option("--plot", type=click.Path(dir_okay=False), help="write a ROC/DET plot PNG here")
@click.option("--model", default=None, help="embedder name in the manifest (default: the manifest's default)")
@click.option("--manifest", default=None, type=click.Path(), help="model manifest (default models/manifest.json)")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--flip/--no-flip", default=None, help="mirror test-time augmentation (default: as calibrated, on)")
@click.option("--landmarks/--no-landmarks", default=True, show_default=True,
              help="align on the 468-point mesh (else BlazeFace's 4 keypoints)")
@click.option("--gates/--no-gates", default=False, show_default=True,
              help="apply the device's quality gates (rejections count as failures)")
@click.option("--compare", default=None, help="also embed each aligned crop with this model and report cosine")
@click.option("--set", "sets", multiple=True, help="only pairs of this set (repeatable)")
@click.option("--limit", type=click.IntRange(1), default=None, help="only the first N pairs")
@click.option("--all-pairs/--no-all-pairs", "all_pairs", default=True, show_default=True,
              help="far_at_shipped: FAR at the manifest's thresholds over every cross-identity pair")
@click.option("--attempts", is_flag=True,
              help="attempt-level figures: bursts of the stills and the live clips (--clips)")
@click.option("--clips", type=click.Path(file_okay=False), default=None,
              help="folder of live clips (default ROOT/extras/liveness_video/live when present)")
@click.option("--fps", default=15.0, show_default=True, type=click.FloatRange(1, 60),
              help="frame rate the clips are read at (the device camera's)")
@click.option("--frames", default=3, show_default=True, type=click.IntRange(1, 5),
              help="usable frames fused per attempt (the lock's frames_per_attempt)")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="embedding cache for --attempts bursts (default build/eval-cache)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--biokey", is_flag=True,
              help="also the fuzzy extractor: enroll from image a, regenerate the key from image b")
@click.option("--biokey-holdout/--no-biokey-holdout", "holdout", default=True, show_default=True,
              help="with --biokey: choose t on one identity-disjoint half (LFW folds 0-2 + half the other "
                   "identities), report the rates on the other half")
def command(pairs_csv, root, json_out, plot, model, manifest, threads, flip, landmarks, gates, compare, sets,
            limit, all_pairs, attempts, clips, fps, frames, cache_dir, quiet, biokey, holdout):
    """Verification accuracy (10-fold), TAR@FAR, EER, AUC and failures on a pairs CSV."""
    from firmware.vision.manifest import Manifest

    rep, pairs, results = run(pairs_csv, root, manifest, model, threads, flip, landmarks, gates, compare,
                              limit, tuple(sets), progress=not quiet)
    spec = Manifest.load(manifest).spec(model or "embedder")
    if all_pairs or attempts:
        fs = face_set_of(pairs, root)
        vectors = vectors_of(fs, results, spec.output_size)
        if all_pairs:
            rep["far_at_shipped"] = shipped_far_report(fs, vectors, spec)
        if attempts:
            from provisioning.research.face_set import default_cache_dir

            pipe = build_pipeline(manifest, model, threads, flip, landmarks, False)
            clip_dir = Path(clips) if clips else Path(root) / "extras" / "liveness_video" / "live"
            rep["attempts"] = attempts_report(fs, vectors, pipe, pipe.threshold(), pipe.margin(),
                                              clip_dir if clip_dir.is_dir() else None, fps, frames,
                                              Path(cache_dir) if cache_dir else default_cache_dir(), not quiet)
    if biokey:  # issue 5: keys from faces (provisioning/research/biokey_eval.py)
        from provisioning.research.biokey_eval import evaluate_biokey, pairs_from_embeddings

        embeddings = {path: r.embedding for path, r in results.items()}
        bk_pairs = pairs_from_embeddings(pairs.path_a, pairs.path_b, pairs.same, embeddings)
        rep.update(evaluate_biokey(bk_pairs, sets=pairs.sets))
        if holdout:  # t chosen on one identity-disjoint half, the bar judged on the other
            from provisioning.research.biokey_eval import holdout_check, split_halves

            try:
                halves = split_halves(pairs.sets, pairs.identity_a, pairs.identity_b, pairs.folds)
                # fixed seed for the tuning draws: the same embeddings choose the same t on every run
                rep["biokey_holdout"] = holdout_check(bk_pairs, halves, sets=pairs.sets, seed=0)
            except ValueError as exc:  # e.g. --limit left one half empty: report why, keep the rest
                rep["biokey_holdout"] = {"skipped": str(exc)}
                click.echo(f"biokey hold-out check skipped: {exc}", err=True)
    text = json.dumps(rep, indent=2)
    if json_out:
        Path(json_out).write_text(text + "\n")
    else:
        click.echo(text)
    if plot:
        plot_roc(pairs, results, Path(plot), f"{rep['model']['name']}: accuracy {rep['accuracy']:.4f}, "
                 f"TAR@FAR1e-3 {rep['tar_at_far_1e-3']:.4f}, failures {rep['failures']}/{rep['images']}")
    summary = (f"accuracy {rep['accuracy']:.4f}  tar@far1e-3 {rep.get('tar_at_far_1e-3', float('nan')):.4f}  "
               f"eer {rep.get('eer', float('nan')):.4f}  failures {rep['failures']}/{rep['images']}")
    fas = rep.get("far_at_shipped", {}).get("unlock")
    if fas:
        summary += f"  far@unlock {fas['far']:.2e} over {fas['impostor_pairs']:,} pairs"
    click.echo(summary, err=True)
