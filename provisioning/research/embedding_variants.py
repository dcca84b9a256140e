"""Cheap variants of the shipped embedding path, each scored by the calibration protocol (issue 12).

    python -m provisioning.research.embedding_variants --root ../shared/faces --json variants.json

Why: the single-image FRR on LFW-a genuine pairs at the default operating point misses its 5 % bar,
and the only stronger embedders at hand may not ship.  This measures what the MobileFaceNet path itself
can still give: mirror test-time augmentation (TTA), template zoom and shift, interpolation, other
5-point definitions, several crops averaged, the float model, quality gating of single images.  Each
variant's embeddings of every image of the set go through exactly what ``facelock calibrate`` does for
the ``unlock`` point (all cross-identity pairs, 5 identity-disjoint 2-way splits, fit FAR lowered until
the held-out FAR holds 1e-4 overall and 1e-3 per set); the figure is the single-image FRR on the 1,500
LFW-a View-2 genuine pairs at that variant's own threshold, with the pairs it gains and loses against
the shipped path and an exact two-sided sign test (McNemar) on them.

Every image is detected, meshed and aligned once, as in calibration (the labelled, central face of
each still); the variants re-warp the frame from that mesh.  Nothing is written except the JSON
report: no crop, no embedding.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: template centre of the 112×112 crop: zooms scale the template about it
CENTRE = np.array([56.0, 56.0])


@dataclass(frozen=True)
class Crop:
    zoom: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    interp: str = "linear"  # or "cubic"
    points: str = "mesh5"  # "mesh5" (shipped), "eye_corners", "nose4"


@dataclass(frozen=True)
class Variant:
    name: str
    crops: tuple[Crop, ...]
    flip: bool = True
    model: str = "mobilefacenet_dynamic"
    gate: tuple[str, ...] = ()  # device quality gates applied to single images (rejects count as failures)


SHIPPED = Variant("shipped: mesh 5 points, mirror TTA", (Crop(),))
VARIANTS = (
    SHIPPED,
    Variant("no mirror TTA", (Crop(),), flip=False),
    Variant("template zoom 0.95", (Crop(zoom=0.95),)),
    Variant("template zoom 1.05", (Crop(zoom=1.05),)),
    Variant("template shift dx -2 px", (Crop(dx=-2),)),
    Variant("eyes from corners only", (Crop(points="eye_corners"),)),
    Variant("3 crops: zoom 0.95 / 1 / 1.05", (Crop(), Crop(zoom=0.95), Crop(zoom=1.05))),
    Variant("float32 model", (Crop(),), model="mobilefacenet_float"),
    Variant("float32 model, 3 crops", (Crop(), Crop(zoom=0.95), Crop(zoom=1.05)), model="mobilefacenet_float"),
    Variant("gate off_pose + blurred", (Crop(),), gate=("off_pose", "blurred")),
)


def five_points(mesh: np.ndarray, kind: str) -> np.ndarray:
    """Template-ordered 5 points of a 468-point mesh: the shipped definition or one of the others tried."""
    from firmware.vision.align import five_points_from_mesh

    p = five_points_from_mesh(mesh)
    m = np.asarray(mesh)[:, :2]
    if kind == "eye_corners":
        p[0], p[1] = m[[33, 133]].mean(0), m[[362, 263]].mean(0)
    elif kind == "nose4":
        p[2] = m[4]
    elif kind != "mesh5":
        raise ValueError(f"unknown point set {kind!r}")
    return p


def crop(rgb: np.ndarray, mesh: np.ndarray, c: Crop) -> np.ndarray:
    """The 112×112 crop of one variant: the similarity fit onto the zoomed / shifted template."""
    import cv2

    from firmware.vision.align import TEMPLATE_112, umeyama_similarity

    dst = CENTRE + c.zoom * (TEMPLATE_112 - CENTRE) + np.array([c.dx, c.dy])
    m = umeyama_similarity(five_points(mesh, c.points), dst)
    flags = cv2.INTER_CUBIC if c.interp == "cubic" else cv2.INTER_LINEAR
    return cv2.warpAffine(rgb, m, (112, 112), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def embed_variant(embedders: dict, rgb: np.ndarray, mesh: np.ndarray, v: Variant,
                  memo: dict | None = None) -> np.ndarray:
    """Mean of the L2-normalised embeddings of the variant's crops (and their mirrors), re-normalised.
    ``memo`` (one per image) keeps each (model, crop, mirror) embedding for the other variants."""
    from firmware.vision.embedder import l2_normalize

    memo = {} if memo is None else memo
    e = embedders[v.model]
    acc = np.zeros(e.dim, np.float64)
    for c in v.crops:
        for mirror in (False, True) if v.flip else (False,):
            key = (v.model, c, mirror)
            if key not in memo:
                a = crop(rgb, mesh, c)
                memo[key] = l2_normalize(e.raw(np.ascontiguousarray(a[:, ::-1]) if mirror else a))
            acc += memo[key]
    return l2_normalize(acc)


def sign_test(gained: int, lost: int) -> float:
    """Exact two-sided p of a paired difference (McNemar on the discordant pairs)."""
    from scipy.stats import binomtest

    n = gained + lost
    return 1.0 if n == 0 else float(binomtest(gained, n).pvalue)


def run(root: str, pairs_csv: str, reps: int = 5, seed: int = 0, progress: bool = True) -> dict:
    from firmware.vision import VisionError, load_image
    from firmware.vision.embedder import Embedder
    from firmware.vision.quality import QualityConfig, assess
    from firmware.vision.runtime import TFLiteModel
    from provisioning.commands.calibrate import SET_RATIO, lfw_genuine_frr
    from provisioning.commands.eval import build_pipeline, read_pairs
    from provisioning.research.calibration import ScoredSet, calibrate_point, identity_halves
    from provisioning.research.face_set import load_face_set, process_still

    fs = load_face_set(root)
    pipe = build_pipeline(None, None, 1, True, True, False)
    m = pipe.manifest
    embedders = {name: Embedder(TFLiteModel(m.verified_path(name), 1), m.spec(name))
                 for name in sorted({v.model for v in VARIANTS})}
    vec = {v.name: np.full((len(fs), 192), np.nan, np.float32) for v in VARIANTS}
    device_gates = QualityConfig()
    t0 = t_last = time.monotonic()
    for i, rel in enumerate(fs.paths):
        try:
            rgb = load_image(fs.root / rel)
        except VisionError:
            continue
        res = process_still(pipe, rgb)
        if not res.ok or res.primary.mesh is None:
            continue
        gate = assess(rgb.shape, [f.detection for f in res.faces], 0, res.primary.aligned, device_gates).reason.value
        memo: dict = {}
        for v in VARIANTS:
            if v.gate and gate in v.gate:
                continue
            vec[v.name][i] = embed_variant(embedders, rgb, res.primary.mesh.points, v, memo)
        if progress and time.monotonic() - t_last > 60:
            t_last = time.monotonic()
            print(f"{i + 1}/{len(fs)} images, {t_last - t0:.0f} s", flush=True)

    halves = identity_halves(fs.keys, reps, seed)
    p = read_pairs(pairs_csv, sets=("lfwa_gray",))
    index = {q: k for k, q in enumerate(fs.paths)}
    genuine = [(index[a], index[b]) for a, b, same in zip(p.path_a, p.path_b, p.same, strict=True) if same]

    def accepted(v: np.ndarray, thr: float) -> np.ndarray:
        return np.array([bool(np.isfinite(v[a]).all() and np.isfinite(v[b]).all() and float(v[a] @ v[b]) >= thr)
                         for a, b in genuine])

    rows, ref = [], None
    for v in VARIANTS:
        space = ScoredSet.from_embeddings(vec[v.name], fs.keys, fs.sets, fs.key_names)
        op = calibrate_point(space, 1e-4, SET_RATIO, halves=halves, bootstrap=False)
        lfw = lfw_genuine_frr(pairs_csv, fs, vec[v.name], op.threshold)
        acc = accepted(vec[v.name], op.threshold)
        ref = acc if ref is None else ref
        gained, lost = int((acc & ~ref).sum()), int((~acc & ref).sum())
        h = op.held_out
        worst = max((a / n for a, n, _, _ in h.per_set.values() if n >= 1 / (1e-4 * SET_RATIO)), default=0.0)
        embeds = len(v.crops) * (2 if v.flip else 1)
        rows.append({"variant": v.name, "model": v.model, "embedder_runs_per_face": embeds,
                     "threshold": op.threshold, "fit_far": op.fit_far, "holds": op.holds,
                     "held_out_far": h.far, "held_out_worst_set_far": worst, "held_out_frr": h.frr,
                     "lfwa_frr": lfw["frr"], "lfwa_rejected": lfw["rejected"], "lfwa_pairs": lfw["genuine_pairs"],
                     "vs_shipped": {"gained": gained, "lost": lost, "p_two_sided": sign_test(gained, lost)}})
    return {"images": len(fs), "operating_point": "unlock (out-of-sample FAR 1e-4 overall, 1e-3 per set)",
            "reps": reps, "seed": seed, "variants": rows}


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="dataset folder with manifest.csv (../shared/faces)")
    ap.add_argument("--pairs", default=None, help="pairs CSV (default ROOT/pairs.csv)")
    ap.add_argument("--json", default=None, help="write the report here")
    a = ap.parse_args(argv)
    rep = run(a.root, a.pairs or str(Path(a.root) / "pairs.csv"))
    for r in rep["variants"]:
        s = r["vs_shipped"]
        print(f"{r['variant']:44s} runs {r['embedder_runs_per_face']:2d}  thr {r['threshold']:.4f}  "
              f"held-out FAR {r['held_out_far']:.2e}  FRR {r['held_out_frr']:.4f}  LFW-a FRR {r['lfwa_frr']:.4f} "
              f"({r['lfwa_rejected']})  +{s['gained']} -{s['lost']} p={s['p_two_sided']:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=2) + "\n")


if __name__ == "__main__":
    main()
