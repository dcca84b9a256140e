"""Face pipeline: TFLite detector (BlazeFace), 468-point mesh, alignment, quality gates, embedder, matcher.

Public API::

    from firmware.vision import FacePipeline, Gallery, load_image, Reason
    pipe = FacePipeline.from_manifest(num_threads=2)       # sha256-checked models/manifest.json
    res = pipe.process(rgb_uint8)                           # FrameResult: .ok .reason .embedding .primary
    gallery = Gallery(); gallery.enroll("alice", [e1, e2, e3])
    gallery.match(res.embedding, pipe.threshold("unlock"), margin=0.05)

Heavy imports (TFLite runtime, OpenCV, Pillow) happen when a pipeline is built or an image decoded.
"""

from firmware.vision.errors import (  # noqa: F401
    EmbedderMismatchError,
    GalleryError,
    ImageDecodeError,
    ImageTooLargeError,
    InvalidImageError,
    ModelError,
    ModelIntegrityError,
    ModelLoadError,
    ModelManifestError,
    ModelMissingError,
    NotCalibratedError,
    ResearchModelNotInstalledError,
    RuntimeUnavailableError,
    VisionError,
)
from firmware.vision.image import decode_image, load_image, validate_rgb  # noqa: F401
from firmware.vision.manifest import Manifest, ModelSpec  # noqa: F401
from firmware.vision.matcher import Gallery, MatchResult, template_from  # noqa: F401
from firmware.vision.pipeline import FacePipeline, FaceResult, FrameResult  # noqa: F401
from firmware.vision.quality import QualityConfig, QualityReport, Reason  # noqa: F401
