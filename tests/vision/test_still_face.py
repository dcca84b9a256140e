"""A labelled still photo is scored on the face its label refers to: the central one (issue 12).

Still-photo sets follow LFW's convention (each photo centred on the labelled person) and are scored
with the quality gates off, so in a photo of two people the device's "largest face" rule can embed the
other person.  ``process_still`` picks the central face instead; the device (``FacePipeline.process``)
keeps the largest.  Real models, real faces: scikit-image's astronaut and matplotlib's Grace Hopper.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from firmware.vision import FacePipeline
from firmware.vision.detector import Detection
from firmware.vision.pipeline import FaceResult
from firmware.vision.quality import QualityConfig, QualityReport, Reason
from provisioning import demofaces as df
from provisioning.research.face_set import central_face, process_still


def _face(box, aligned=True) -> FaceResult:
    det = Detection(np.array(box, np.float32), 0.9, np.zeros((6, 2), np.float32))
    return FaceResult(det, QualityReport(Reason.OK, {}), aligned=np.zeros((112, 112, 3), np.uint8) if aligned else None)


def test_central_face_is_the_one_nearest_the_frame_centre_with_a_crop():
    faces = [_face([0, 0, 200, 200]), _face([90, 90, 150, 150]), _face([95, 95, 145, 145], aligned=False)]
    assert central_face((240, 240, 3), faces) == 1  # the crop-less (unconfirmed) face is never chosen
    assert central_face((240, 240, 3), faces[:1]) == 0
    assert central_face((400, 400, 3), [_face([150, 150, 250, 250]), _face([150, 150, 250, 250])]) == 0  # tie


@pytest.fixture(scope="module")
def two_people():
    """Grace Hopper small at the centre of the frame, the astronaut larger at its right edge."""
    frame = np.full((480, 800, 3), 60, np.uint8)
    frame[168:311, 335:465] = cv2.resize(df.grace_hopper()[0:330, 100:400], (130, 143))
    frame[0:345, 500:800] = cv2.resize(df.astronaut()[30:260, 130:330], (300, 345))
    return frame


def test_still_embeds_the_central_person_and_the_device_the_largest(manifest, two_people):
    pipe = FacePipeline.from_manifest(manifest, quality=QualityConfig.permissive())
    grace = pipe.process(df.near("grace_hopper")).embedding
    astro = pipe.process(df.near("astronaut")).embedding
    dev = pipe.process(two_people)
    still = process_still(pipe, two_people)
    assert dev.ok and still.ok and len(dev.faces) == len(still.faces) == 2
    assert float(dev.embedding @ astro) > 0.9 > 0.4 > float(dev.embedding @ grace)  # device: the largest face
    assert float(still.embedding @ grace) > 0.9 > 0.4 > float(still.embedding @ astro)
    assert still.primary.embedding is still.embedding and still.faces[1].embedding is None
    # with the device's gates on, a photo of two people is refused either way: nothing is re-chosen
    gated = process_still(FacePipeline.from_manifest(manifest), two_people)
    assert gated.reason is Reason.MULTIPLE_FACES and gated.embedding is None


def test_the_variant_sweep_reproduces_the_shipped_embedding(pipeline, manifest):
    """provisioning/research/embedding_variants.py's 'shipped' row is exactly the device's embedding."""
    from firmware.vision.embedder import Embedder
    from firmware.vision.runtime import TFLiteModel
    from provisioning.research import embedding_variants as ev

    frame = df.near("astronaut")
    res = pipeline.process(frame)
    mesh = res.primary.mesh.points
    assert np.array_equal(ev.crop(frame, mesh, ev.Crop()), res.primary.aligned)
    name = pipeline.embedder.spec.name
    emb = {name: Embedder(TFLiteModel(manifest.verified_path(name), 1), manifest.spec(name))}
    v = ev.embed_variant(emb, frame, mesh, ev.SHIPPED)
    assert np.allclose(v, res.embedding, atol=1e-6)
    zoomed = ev.embed_variant(emb, frame, mesh, ev.Variant("z", (ev.Crop(zoom=1.05),)))
    assert 0.9 < float(zoomed @ v) < 0.9999  # another crop: the same person, not the same vector
    with pytest.raises(ValueError):
        ev.five_points(mesh, "nose7")
    assert ev.sign_test(0, 0) == 1.0 and ev.sign_test(10, 0) < 0.01
