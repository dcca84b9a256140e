"""Train FaceLock's single-frame PAD classifier and write models/liveness/pad_lbp_fft.json (+ manifest sha256).

    .venv/bin/python models/liveness/train_pad.py --root ../shared/faces/extras/spoof

Data: ``nuaa_like/<subject>/{live,spoof}`` (bona fide and printed-photo attacks, one webcam session per
subject).  Each image goes through the real face pipeline (BlazeFace, face mesh, 5-point alignment) and
the PAD features of the aligned 112×112 crop are computed (firmware/vision/liveness/pad_features.py).

Model selection and threshold are cross-subject only: the L2 strength is the one with the best
leave-one-subject-out APCER at BPCER 10 %, and the shipped threshold is the out-of-fold score at the target
BPCER, so it was never tuned on a subject's own scores.  The final coefficients are then fitted on all
subjects.  What ships is coefficients, standardisation and threshold (~3 kB of JSON) plus figures: no image
and no per-image feature.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from provisioning.research.liveness_eval import cached_sequence, spoof_samples  # noqa: E402
from provisioning.research.pad_training import fit_pad_model, select_l2  # noqa: E402

MODEL_FILE = "pad_lbp_fft.json"


def update_manifest(directory: Path, name: str, file: str, extra: dict) -> None:
    """Record ``file``'s sha256 under ``files[name]`` in models/liveness/manifest.json (atomic write)."""
    mpath = directory / "manifest.json"
    data = json.loads(mpath.read_text()) if mpath.exists() else {"schema": 1, "files": {}}
    blob = (directory / file).read_bytes()
    data["files"][name] = {"file": file, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob), **extra}
    tmp = mpath.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(mpath)


def load_features(root: Path):
    from firmware.vision.pipeline import FacePipeline

    pipe = FacePipeline.from_manifest()
    samples = [s for s in spoof_samples(root) if s.subject != "silent_face"]
    feats = [cached_sequence(pipe, s.path, "still1") for s in samples]
    keep = [i for i, f in enumerate(feats) if f.valid[0]]
    x = np.stack([feats[i].pad[0] for i in keep]).astype(np.float64)
    y = np.array([samples[i].attack for i in keep], dtype=np.float64)
    subjects = [samples[i].subject for i in keep]
    return x, y, subjects, len(samples) - len(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="folder laid out like extras/spoof")
    ap.add_argument("--target-bpcer", type=float, default=0.10)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    x, y, subjects, dropped = load_features(args.root)
    if len(set(subjects)) < 3 or y.min() == y.max():
        sys.exit("need live and spoof images of at least 3 subjects")
    best, results = select_l2(x, y, subjects, args.target_bpcer)
    for l2, (apcer, bpcer, thr) in results.items():
        print(f"l2={l2:<5} cross-subject APCER {apcer:.3f} at BPCER {bpcer:.3f} (threshold {thr:.3f})")
    apcer, bpcer, thr = results[best]
    model = fit_pad_model(x, y, l2=best, threshold=thr, meta={
        "trained_on": "nuaa_like (all subjects)", "n_live": int((y == 0).sum()), "n_attack": int((y == 1).sum()),
        "subjects": len(set(subjects)), "images_without_face": dropped, "l2": best,
        "threshold_rule": f"leave-one-subject-out out-of-fold score at BPCER {args.target_bpcer}",
        "cross_subject": {"apcer": apcer, "bpcer": bpcer},
        "trainer": "models/liveness/train_pad.py",
    })
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / MODEL_FILE).write_text(json.dumps(model.to_dict(), indent=1) + "\n")
    update_manifest(args.out, "pad", MODEL_FILE, {"kind": "facelock-pad-logreg", "trainer": "train_pad.py"})
    print(f"wrote {args.out / MODEL_FILE}: l2={best}, threshold {thr:.4f}")


if __name__ == "__main__":
    main()
