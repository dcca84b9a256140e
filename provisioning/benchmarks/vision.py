"""`facelock bench vision`: per-stage latency of the face pipeline on 640×480 frames.

Stages: detection (BlazeFace short range), landmarks (468-point mesh), alignment, embedding with the
float and each quantized embedder, and 1:N matching against a gallery.  Rounds are interleaved (each
round times every stage once) so the float/quantized ratio holds on a shared, noisy machine.  The frame
is scikit-image's astronaut photo (a public-domain NASA portrait) placed in a 640×480 frame.
"""

from __future__ import annotations

import json
import time

import click
import numpy as np


def test_frame(width: int = 640, height: int = 480) -> np.ndarray:
    import cv2

    try:
        from skimage import data
    except ImportError as exc:
        raise click.ClickException("bench vision needs scikit-image for its test face (pip install -e '.[dev]')") from exc
    astro = data.astronaut()  # 512×512
    frame = np.full((height, width, 3), 90, dtype=np.uint8)
    side = min(height, width)
    face = cv2.resize(astro, (side, side), interpolation=cv2.INTER_AREA)
    x0 = (width - side) // 2
    frame[:, x0:x0 + side] = face[:height]
    return frame


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"median_ms": round(float(np.median(a)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3),
            "min_ms": round(float(a.min()), 3), "n": int(len(a))}


@click.command("vision")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (default: a table and the JSON)")
@click.option("--rounds", default=60, show_default=True, type=click.IntRange(3, 10000))
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0, 1000))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--gallery-size", default=100, show_default=True, type=click.IntRange(1, 100000))
@click.option("--manifest", default=None, type=click.Path(), help="model manifest (default models/manifest.json)")
@click.option("--embedder", default=None,
              help="embedder the pipeline runs (default: the manifest's); an installed research-only one "
                   "(e.g. w600k_mbf, `facelock models install-research`) is timed beside the shipped ones")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="data dir whose models/ holds installed research models (default $FACELOCK_DATA_DIR)")
def command(as_json, rounds, warmup, threads, gallery_size, manifest, embedder, data_dir):
    """Median and p95 ms per pipeline stage, float vs quantized embedder, on 640×480 frames."""
    from firmware.vision import FacePipeline, Gallery
    from firmware.vision.align import align_face
    from firmware.vision.embedder import Embedder
    from firmware.vision.manifest import research_dir
    from firmware.vision.runtime import TFLiteModel

    pipe = FacePipeline.from_manifest(manifest, embedder=embedder or "embedder", num_threads=threads,
                                      overlay=research_dir(data_dir) if data_dir else None)
    m = pipe.manifest
    frame = test_frame()
    dets = pipe.detector(frame)
    if not dets:
        raise click.ClickException("the benchmark frame has no detectable face (model or decoding broken)")
    det = dets[0]
    mesh = pipe.landmarker(frame, det)
    embedders = {name: Embedder(TFLiteModel(m.verified_path(name), threads), spec)
                 for name, spec in m.models.items() if spec.role == "embedder"}
    if pipe.embedder.spec.research_only:  # timed alone (its 512-d output is not compared with the 192-d ones)
        single = Embedder(pipe.embedder.model, pipe.embedder.spec, flip=False)
    aligned, _ = align_face(frame, det.keypoints, mesh.points if mesh else None)
    rng = np.random.default_rng(0)
    gallery = Gallery(pipe.embedder.dim)
    for i in range(gallery_size):
        gallery.enroll(f"user{i:05d}", rng.normal(size=(3, pipe.embedder.dim)))
    probe = pipe.embedder(aligned)
    thr = 0.5
    stages = {
        "detection": lambda: pipe.detector(frame),
        "landmarks": lambda: pipe.landmarker(frame, det),
        "alignment": lambda: align_face(frame, det.keypoints, mesh.points if mesh else None),
        **{f"embedding[{n}]": (lambda e=e: e(aligned)) for n, e in embedders.items()},
        **({f"embedding[{pipe.embedder.spec.name}]": lambda: single(aligned)} if pipe.embedder.spec.research_only
           else {}),
        f"embedding_as_configured[{pipe.embedder.spec.name}, flip={pipe.embedder.flip}]": lambda: pipe.embedder(aligned),
        "matching": lambda: gallery.match(probe, thr, 0.05),
        "full_pipeline": lambda: pipe.process(frame),
    }
    times: dict[str, list[float]] = {k: [] for k in stages}
    for r in range(warmup + rounds):
        for name, fn in stages.items():
            t0 = time.perf_counter()
            fn()
            dt = (time.perf_counter() - t0) * 1e3
            if r >= warmup:
                times[name].append(dt)
    out = {"frame": "640x480 RGB", "threads": threads, "runtime": pipe.detector.model.runtime,
           "rounds": rounds, "gallery_size": gallery_size, "default_embedder": pipe.embedder.spec.name,
           "stages": {k: _stats(v) for k, v in times.items()}}
    ref = m.defaults.get("embedder_reference", "mobilefacenet_float")
    if f"embedding[{ref}]" in times:
        f = np.median(times[f"embedding[{ref}]"])
        out["float_over_quantized_embedding_ratio"] = {
            n: round(float(f / np.median(times[f"embedding[{n}]"])), 3) for n in embedders if n != ref}
        fe = embedders[ref](aligned)
        out["quantized_vs_float_cosine_on_frame"] = {
            n: round(float(np.dot(fe, e(aligned))), 5) for n, e in embedders.items() if n != ref}
    out["model_bytes"] = {n: s.bytes for n, s in m.models.items()}
    if not as_json:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"facelock bench vision ({out['runtime']}, {threads} thread(s), {rounds} rounds)")
        for c in ("stage", "median ms", "p95 ms"):
            t.add_column(c)
        for k, v in out["stages"].items():
            t.add_row(k, f"{v['median_ms']:.2f}", f"{v['p95_ms']:.2f}")
        Console(stderr=True).print(t)
    click.echo(json.dumps(out, indent=2))
