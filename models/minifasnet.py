"""Build step: MiniFASNetV2 (2.7x crop) and MiniFASNetV1SE (4.0x crop) anti-spoofing models -> TFLite.

Source: the authors' PyTorch state dicts in ``../shared/models-src/silent-face-anti-spoofing/`` (Apache-2.0,
minivision-ai/Silent-Face-Anti-Spoofing at b6d5f04, ``resources/anti_spoof_models/``).  The network is
written here from the published facts of that repository (``src/model_lib/MiniFASNet.py``):

- ``Conv_block`` = conv (no bias) -> BatchNorm -> PReLU (per channel); ``Linear_block`` = conv -> BatchNorm;
- ``Depth_Wise`` = 1x1 Conv_block -> 3x3 depthwise Conv_block (stride s, pad 1) -> 1x1 Linear_block, plus the
  input when residual; the SE variant applies, in the *last* block of each residual stage, a squeeze-excite
  (global mean -> 1x1 conv -> BN -> ReLU -> 1x1 conv -> BN -> sigmoid, reduction 4) before the addition;
- stem: 3x3/2 Conv_block, 3x3 depthwise Conv_block; stages conv_23 (/2), conv_3 (4 residual blocks),
  conv_34 (/2), conv_4 (6), conv_45 (/2), conv_5 (2); head: 1x1 Conv_block to 512, 5x5 depthwise
  Linear_block (kernel = ((80+15)//16)^2), flatten, linear 512->128 (no bias), BatchNorm1d, linear 128->3;
- channel widths from the published ``keep_dict`` tables ('1.8M' for V1SE, '1.8M_' for V2);
- input: the crop as BGR float 0..255, not scaled (``src/data_io/functional.py`` to_tensor without /255);
  output: softmax over 3 classes, class 1 = real face.

The weights are loaded into two graphs built from the same table: a PyTorch one (the reference: NCHW, the
authors' layer semantics) and a Keras one (NHWC, explicit symmetric zero padding so stride-2 convolutions
match PyTorch's), converted to float32 TFLite and checked against the PyTorch reference on real crops.
Build-time only (.venv-models: torch + tensorflow-cpu); the device runs the .tflite with LiteRT.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# the crop rule and input size are the device's (one place for the fact): the check below cuts its crops
# exactly as the firmware does at the door (numpy-only module, importable in the build venv)
from firmware.vision.liveness.fasnet import INPUT, crop_box  # noqa: E402

KEEP = {
    "1.8M": [32, 32, 103, 103, 64, 13, 13, 64, 26, 26, 64, 13, 13, 64, 52, 52, 64, 231, 231, 128,
             154, 154, 128, 52, 52, 128, 26, 26, 128, 52, 52, 128, 26, 26, 128, 26, 26, 128, 308, 308,
             128, 26, 26, 128, 26, 26, 128, 512, 512],
    "1.8M_": [32, 32, 103, 103, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 231, 231, 128,
              231, 231, 128, 52, 52, 128, 26, 26, 128, 77, 77, 128, 26, 26, 128, 26, 26, 128, 308, 308,
              128, 26, 26, 128, 26, 26, 128, 512, 512],
}
KERNEL6 = (INPUT + 15) // 16  # 5: the head's depthwise kernel covers the final 5x5 map
SE_REDUCTION = 4


@dataclass(frozen=True)
class Variant:
    name: str  # manifest entry / file stem
    source: str  # .pth file name in models-src
    keep: str
    se: bool
    scale: float  # crop = scale x the detector box (the number in the authors' file name)
    sha256: str  # of the .pth as published


VARIANTS = (
    Variant("minifasnet_v2", "2.7_80x80_MiniFASNetV2.pth", "1.8M_", False, 2.7,
            "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0"),
    Variant("minifasnet_v1se", "4_0_0_80x80_MiniFASNetV1SE.pth", "1.8M", True, 4.0,
            "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990"),
)


def blocks(keep: list[int]) -> list[tuple[str, int, int, int, int, bool, bool]]:
    """The Depth_Wise blocks in order: (torch prefix, c_in, c_mid1, c_mid2, c_out, stride2, residual),
    derived from the keep table exactly as the published constructor indexes it."""
    k = keep
    out = [("conv_23", k[1], k[2], k[3], k[4], True, False)]
    for i, j in enumerate((4, 7, 10, 13)):
        out.append((f"conv_3.model.{i}", k[j], k[j + 1], k[j + 2], k[j + 3], False, True))
    out.append(("conv_34", k[16], k[17], k[18], k[19], True, False))
    for i, j in enumerate((19, 22, 25, 28, 31, 34)):
        out.append((f"conv_4.model.{i}", k[j], k[j + 1], k[j + 2], k[j + 3], False, True))
    out.append(("conv_45", k[37], k[38], k[39], k[40], True, False))
    for i, j in enumerate((40, 43)):
        out.append((f"conv_5.model.{i}", k[j], k[j + 1], k[j + 2], k[j + 3], False, True))
    return out


def se_blocks() -> set[str]:
    """Blocks carrying squeeze-excite in the SE variant: the last block of each residual stage."""
    return {"conv_3.model.3", "conv_4.model.5", "conv_5.model.1"}


def load_state(path: Path, want_sha: str) -> dict[str, np.ndarray]:
    import torch

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != want_sha:
        raise SystemExit(f"[models] {path} sha256 {digest} != pinned {want_sha}")
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    return {(k[7:] if k.startswith("module.") else k): v.detach().cpu().numpy()
            for k, v in sd.items() if not k.endswith("num_batches_tracked")}


# ------------------------------------------------------------------------------------ PyTorch reference
def torch_forward(sd: dict[str, np.ndarray], v: Variant, x_bgr: np.ndarray) -> np.ndarray:
    """Softmax of the authors' network on (N, 80, 80, 3) BGR float crops, in plain torch.nn.functional."""
    import torch
    import torch.nn.functional as F

    class Used(dict):
        """Records which weights the forward pass read: every one of the state dict must be used."""

        seen: set[str] = set()

        def __getitem__(self, k: str):
            self.seen.add(k)
            return super().__getitem__(k)

    t = Used({k: torch.from_numpy(a) for k, a in sd.items()})

    def bn(x, p):
        return F.batch_norm(x, t[p + ".running_mean"], t[p + ".running_var"], t[p + ".weight"], t[p + ".bias"],
                            training=False, eps=1e-5)

    def conv(x, p, stride=1, pad=0, groups=1, prelu=True):
        x = F.conv2d(x, t[p + ".conv.weight"], None, stride, pad, 1, groups)
        x = bn(x, p + ".bn")
        return F.prelu(x, t[p + ".prelu.weight"]) if prelu else x

    x = torch.from_numpy(np.ascontiguousarray(x_bgr.transpose(0, 3, 1, 2), dtype=np.float32))
    keep = KEEP[v.keep]
    with torch.no_grad():
        x = conv(x, "conv1", 2, 1)
        x = conv(x, "conv2_dw", 1, 1, groups=keep[1])
        for p, _cin, _m1, m2, _cout, s2, res in blocks(keep):
            y = conv(x, p + ".conv")
            y = conv(y, p + ".conv_dw", 2 if s2 else 1, 1, groups=m2)
            y = conv(y, p + ".project", prelu=False)
            if v.se and p in se_blocks():
                s = F.adaptive_avg_pool2d(y, 1)
                s = F.relu(bn(F.conv2d(s, t[p + ".se_module.fc1.weight"]), p + ".se_module.bn1"))
                s = torch.sigmoid(bn(F.conv2d(s, t[p + ".se_module.fc2.weight"]), p + ".se_module.bn2"))
                y = y * s
            x = x + y if res else y
        x = conv(x, "conv_6_sep")
        x = conv(x, "conv_6_dw", groups=keep[48], prelu=False)
        x = x.flatten(1)
        x = F.linear(x, t["linear.weight"])
        x = F.batch_norm(x, t["bn.running_mean"], t["bn.running_var"], t["bn.weight"], t["bn.bias"],
                         training=False, eps=1e-5)
        x = F.linear(x, t["prob.weight"])
        unused = sorted(set(sd) - t.seen)
        if unused:
            raise SystemExit(f"[models] {v.source}: weights the network did not use: {unused[:5]}")
        return F.softmax(x, dim=1).numpy()


# ------------------------------------------------------------------------------------------ Keras graph
def keras_model(sd: dict[str, np.ndarray], v: Variant):
    import tensorflow as tf

    L = tf.keras.layers
    keep = KEEP[v.keep]

    def bn(x, p, name):
        layer = L.BatchNormalization(epsilon=1e-5, name=name)
        y = layer(x)
        layer.set_weights([sd[p + ".weight"], sd[p + ".bias"], sd[p + ".running_mean"], sd[p + ".running_var"]])
        return y

    def conv(x, p, k=1, stride=1, depthwise=False, prelu=True):
        name = p.replace(".", "_")
        w = sd[p + ".conv.weight"]  # (out, in/groups, kh, kw)
        if k > 1 and k != KERNEL6:
            x = L.ZeroPadding2D(1, name=name + "_pad")(x)  # PyTorch's symmetric padding=1
        if depthwise:
            layer = L.DepthwiseConv2D(k, strides=stride, padding="valid", use_bias=False, name=name + "_dw")
            y = layer(x)
            layer.set_weights([w.transpose(2, 3, 0, 1)])  # (kh, kw, C, 1)
        else:
            layer = L.Conv2D(w.shape[0], k, strides=stride, padding="valid", use_bias=False, name=name + "_conv")
            y = layer(x)
            layer.set_weights([w.transpose(2, 3, 1, 0)])  # (kh, kw, in, out)
        y = bn(y, p + ".bn", name + "_bn")
        if prelu:
            layer = L.PReLU(shared_axes=[1, 2], name=name + "_prelu")
            y = layer(y)
            layer.set_weights([sd[p + ".prelu.weight"].reshape(1, 1, -1)])
        return y

    x_in = tf.keras.Input(shape=(INPUT, INPUT, 3), batch_size=1, name="bgr_0_255")
    x = conv(x_in, "conv1", 3, 2)
    x = conv(x, "conv2_dw", 3, 1, depthwise=True)
    for p, _cin, _m1, _m2, _cout, s2, res in blocks(keep):
        y = conv(x, p + ".conv")
        y = conv(y, p + ".conv_dw", 3, 2 if s2 else 1, depthwise=True)
        y = conv(y, p + ".project", prelu=False)
        if v.se and p in se_blocks():
            n = p.replace(".", "_") + "_se"
            s = L.GlobalAveragePooling2D(keepdims=True, name=n + "_pool")(y)
            for fc, bnp, act in (("fc1", "bn1", "relu"), ("fc2", "bn2", "sigmoid")):
                w = sd[f"{p}.se_module.{fc}.weight"]
                layer = L.Conv2D(w.shape[0], 1, use_bias=False, name=f"{n}_{fc}")
                s = layer(s)
                layer.set_weights([w.transpose(2, 3, 1, 0)])
                s = bn(s, f"{p}.se_module.{bnp}", f"{n}_{bnp}")
                s = L.Activation(act, name=f"{n}_{act}")(s)
            y = L.Multiply(name=n + "_scale")([y, s])
        x = L.Add(name=p.replace(".", "_") + "_add")([x, y]) if res else y
    x = conv(x, "conv_6_sep")
    x = conv(x, "conv_6_dw", KERNEL6, 1, depthwise=True, prelu=False)
    x = L.Flatten(name="flatten")(x)
    layer = L.Dense(sd["linear.weight"].shape[0], use_bias=False, name="linear")
    x = layer(x)
    layer.set_weights([sd["linear.weight"].T])
    x = bn(x, "bn", "bn")
    layer = L.Dense(sd["prob.weight"].shape[0], use_bias=False, name="prob")
    x = layer(x)
    layer.set_weights([sd["prob.weight"].T])
    x = L.Softmax(name="softmax")(x)
    return tf.keras.Model(x_in, x, name=v.name)


# ------------------------------------------------------------------------------------ verification crops
def verification_crops(v: Variant) -> np.ndarray:
    """(N, 80, 80, 3) BGR crops of scikit-image's bundled photos (the astronaut's face at several boxes,
    plus non-faces), cut with the authors' rule as the device cuts it (``firmware.vision.liveness.fasnet
    .crop_box``): the check data ships with a registry package."""
    from skimage import data, transform

    def resize(img: np.ndarray) -> np.ndarray:
        return transform.resize(img, (INPUT, INPUT), preserve_range=True, anti_aliasing=True)

    rng = np.random.default_rng(0)
    out = []
    astro = data.astronaut()[:, :, ::-1]  # RGB -> BGR
    for _ in range(24):
        bw = rng.uniform(80, 110)
        x, y = 205 - bw / 2 + rng.uniform(-8, 8), 105 - bw * 0.55 + rng.uniform(-8, 8)
        x0, y0, x1, y1 = crop_box((x, y, bw, bw * 1.15), astro.shape[1], astro.shape[0], v.scale)
        out.append(resize(astro[y0:y1, x0:x1]))
    for img in (data.chelsea(), data.coffee(), data.rocket(), data.coins()):
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img
        out.append(resize(img[:, :, ::-1]))
    return np.stack(out).astype(np.float32)


def build(src_dir: Path, out_dir: Path, convert, run_tflite, op_counts, log) -> dict[str, dict]:
    """Convert both variants; returns manifest entries (without sha256/bytes, which the caller adds)."""
    entries = {}
    for v in VARIANTS:
        sd = load_state(src_dir / v.source, v.sha256)
        x = verification_crops(v)
        ref = torch_forward(sd, v, x)
        km = keras_model(sd, v)
        mine = km.predict(x, batch_size=1, verbose=0)
        kdiff = float(np.abs(ref - mine).max())
        path = out_dir / f"{v.name}.tflite"
        path.write_bytes(convert(km, "float"))
        lite = run_tflite(path, x)
        diff = float(np.abs(ref - lite).max())
        agree = float((ref.argmax(1) == lite.argmax(1)).mean())
        log(f"{v.name}: keras vs torch max |diff| {kdiff:.2e}; tflite vs torch max |diff| {diff:.2e}, "
            f"argmax agreement {agree:.3f} on {len(x)} crops; real-class range {ref[:, 1].min():.3f}..{ref[:, 1].max():.3f}")
        if diff > 1e-4 or agree < 1.0:
            raise SystemExit(f"[models] {v.name}: the TFLite model does not reproduce the PyTorch reference")
        entries[v.name] = {
            "role": "pad", "file": path.name, "quantization": "float32",
            "input": {"size": [INPUT, INPUT], "color": "BGR", "layout": "NHWC",
                      "normalization": {"mean": 0.0, "std": 1.0},
                      "resize": f"crop {v.scale}x the detector box about its centre, kept inside the frame, "
                                "resized to 80x80 (bilinear)"},
            "output": {"size": 3, "softmax": True, "real_class": 1},
            "extra": {"crop_scale": v.scale},
            "source": {"repository": "minivision-ai/Silent-Face-Anti-Spoofing",
                       "commit": "b6d5f04ad78778917853b25c778acef6d5626d15",
                       "path": f"resources/anti_spoof_models/{v.source}", "sha256": v.sha256,
                       "license": "Apache-2.0"},
            "license": "Apache-2.0",
            "build": {"rebuilt": "PyTorch state dict -> Keras (NHWC, explicit symmetric padding) -> TFLite float32",
                      "max_abs_diff_vs_pytorch": diff, "argmax_agreement": agree,
                      "verification_crops": int(len(x)), "ops": op_counts(path)},
        }
    return entries
