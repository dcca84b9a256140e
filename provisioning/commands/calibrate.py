"""`facelock calibrate`: choose each embedder's cosine thresholds from the ROC of a labelled pairs CSV.

Runs the same pipeline as `facelock eval`, takes the threshold at the target false-accept rates
(default 1e-3 for unlocking, 1e-4 for the strict option) over all pairs, and writes them into the model
manifest next to the exact model file (sha256) they were measured with.  Thresholds are never typed in
by hand; a rebuilt model (new sha256) drops them until it is calibrated again.
"""

from __future__ import annotations

import datetime as _dt
import json

import click

from provisioning.errors import InputFileError


def thresholds_from(rep_scores, labels, far: float, strict_far: float) -> dict:
    from provisioning.research.metrics import tar_at_far

    gen, imp = rep_scores[labels], rep_scores[~labels]
    if len(imp) == 0 or len(gen) == 0:
        raise InputFileError("calibration needs both genuine and impostor pairs")
    ops = {}
    for name, target in (("unlock", far), ("strict", strict_far)):
        tar, thr = tar_at_far(gen, imp, target)
        ops[name] = {"far": target, "threshold": thr, "tar": round(tar, 6),  # exact: rounding could admit one more impostor
                     "impostors_above": int((imp >= thr).sum()), "impostor_pairs": int(len(imp))}
    return ops


@click.command("calibrate")
@click.option("--pairs", "pairs_csv", required=True, type=click.Path(dir_okay=False))
@click.option("--root", required=True, type=click.Path(file_okay=False))
@click.option("--model", "models", multiple=True,
              help="embedder(s) to calibrate (default: every embedder in the manifest)")
@click.option("--far", default=1e-3, show_default=True, type=click.FloatRange(1e-6, 0.5),
              help="target false-accept rate of the 'unlock' operating point")
@click.option("--strict-far", default=1e-4, show_default=True, type=click.FloatRange(1e-7, 0.5),
              help="target false-accept rate of the 'strict' operating point")
@click.option("--margin", default=0.05, show_default=True, type=click.FloatRange(0, 1),
              help="1:N margin between best and second-best identity stored with the thresholds")
@click.option("--manifest", default=None, type=click.Path(), help="model manifest (default models/manifest.json)")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--flip/--no-flip", default=None, help="mirror test-time augmentation (default: on)")
@click.option("--dry-run", is_flag=True, help="print the thresholds, do not write the manifest")
@click.option("--quiet", is_flag=True)
def command(pairs_csv, root, models, far, strict_far, margin, manifest, threads, flip, dry_run, quiet):
    """Write ROC-calibrated cosine thresholds (FAR 1e-3 'unlock', 1e-4 'strict') into the model manifest."""
    from firmware.vision.manifest import Manifest
    from provisioning.commands.eval import pair_scores, run

    m = Manifest.load(manifest)
    names = list(models) or [n for n, s in m.models.items() if s.role == "embedder"]
    summary = {}
    for name in names:
        spec = m.spec(name)
        if spec.role != "embedder":
            raise InputFileError(f"{name} is a {spec.role}, not an embedder")
        use_flip = True if flip is None else flip  # calibrate the default: mirror augmentation on
        rep, pairs, results = run(pairs_csv, root, m.path, spec.name, threads, use_flip, True, False, None,
                                  None, (), progress=not quiet)
        scores = pair_scores(pairs, results)
        ops = thresholds_from(scores, pairs.same, far, strict_far)
        entry = {
            "metric": "cosine",
            "margin": margin,
            "operating_points": ops,
            "calibration": {
                "pairs_csv_sha256": pairs.sha256, "pairs": len(pairs), "genuine": int(pairs.same.sum()),
                "impostor": int((~pairs.same).sum()), "images": rep["images"], "failures": rep["failures"],
                "flip_augmentation": use_flip, "alignment": "mesh-5pt",
                "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "model_sha256": spec.sha256,
            },
            "eval": {k: rep[k] for k in ("accuracy", "tar_at_far_1e-2", "tar_at_far_1e-3", "eer", "auc")},
        }
        summary[spec.name] = entry
        m.data["models"][spec.name]["thresholds"] = entry
        click.echo(f"{spec.name}: unlock threshold {ops['unlock']['threshold']:.4f} (TAR {ops['unlock']['tar']:.4f} "
                   f"@ FAR {far:g}), strict {ops['strict']['threshold']:.4f} (TAR {ops['strict']['tar']:.4f} "
                   f"@ FAR {strict_far:g})", err=True)
    if not dry_run:
        path = m.save()
        click.echo(f"wrote thresholds to {path}", err=True)
    click.echo(json.dumps(summary, indent=2))
