#!/usr/bin/env python3
"""Build Quantscope's bundled sample models, their data and reference outputs.

Everything is derived from the UCI handwritten digits data set as shipped with
scikit-learn (``sklearn.datasets.load_digits``, 1797 8x8 images, CC BY 4.0), so
the script needs no network access.

Outputs (relative to the repository root):

* ``sample_models/data/digits_{test_x,test_y,calib_x}.npy`` and
  ``sample_models/data/digits_test.npz``
* ``sample_models/data/digits_train.npz`` (``x``, ``y``): the training digits that are not
  calibration digits, for quantization-aware training (disjoint from calibration and test)
* ``sample_models/digits_{mlp,cnn,mobilenet,transformer}.onnx``
* ``sample_models/metrics.json`` (onnxruntime top-1 accuracy on the test split)
* ``sample_models/stats.json`` (depthwise folded-range ratios, outlier ratio)
* ``tests/fixtures/reference/<model>.{inputs,outputs}.npz``

Run:  python scripts/make_sample_models.py
      python scripts/make_sample_models.py --train-split   (only digits_train.npz, checking
      that the split reproduces the shipped calibration and test files exactly)
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 20240607
TEST_FRACTION = 0.30
N_CALIB = 512
N_REFERENCE = 64
MAX_ONNX_BYTES = 2 * 1024 * 1024

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "sample_models"
DATA_DIR = MODEL_DIR / "data"
REF_DIR = ROOT / "tests" / "fixtures" / "reference"

# ONNX operators the Quantscope engine executes. Anything else in an exported
# graph is a hard error: the model code must be restructured instead.
SUPPORTED_OPS = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div",
    "Pow", "Sqrt", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Erf",
    "Gelu", "HardSigmoid", "HardSwish", "Softmax", "LogSoftmax",
    "BatchNormalization", "LayerNormalization", "MaxPool", "AveragePool",
    "GlobalAveragePool", "ReduceMean", "ReduceSum", "ReduceMax", "Flatten",
    "Reshape", "Transpose", "Concat", "Split", "Slice", "Squeeze", "Unsqueeze",
    "Shape", "Gather", "Exp", "Identity", "Dropout", "Pad", "Resize", "Cast",
    "Constant",
}


# --------------------------------------------------------------------------
# determinism helpers
# --------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_torch() -> None:
    # One thread: float reductions then happen in a fixed order, so reruns
    # (and reruns on other machines with the same torch build) agree.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    seed_everything(SEED)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez`` (uncompressed, readable by np.load) but byte-stable.

    ``np.savez`` stamps each member with the current time, so the archive
    changes on every run; here each member gets a fixed timestamp.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

def load_data():
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(
        idx, test_size=TEST_FRACTION, stratify=y, random_state=SEED)
    train_idx = np.sort(train_idx)
    test_idx = np.sort(test_idx)
    rng = np.random.default_rng(SEED)
    calib_idx = np.sort(rng.choice(train_idx, size=N_CALIB, replace=False))
    # Training digits left after drawing the calibration digits: the QAT training split.
    qat_idx = np.setdiff1d(train_idx, calib_idx)
    return {
        "qat_x": np.ascontiguousarray(x[qat_idx]),
        "qat_y": np.ascontiguousarray(y[qat_idx]),
        "train_x": np.ascontiguousarray(x[train_idx]),
        "train_y": np.ascontiguousarray(y[train_idx]),
        "test_x": np.ascontiguousarray(x[test_idx]),
        "test_y": np.ascontiguousarray(y[test_idx]),
        "calib_x": np.ascontiguousarray(x[calib_idx]),
    }


def write_data(d) -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    np.save(DATA_DIR / "digits_test_x.npy", d["test_x"])
    np.save(DATA_DIR / "digits_test_y.npy", d["test_y"])
    np.save(DATA_DIR / "digits_calib_x.npy", d["calib_x"])
    save_npz(DATA_DIR / "digits_test.npz", input=d["test_x"], labels=d["test_y"])
    write_train_split(d)


def write_train_split(d) -> None:
    """digits_train.npz: the training digits minus the calibration digits (x, y)."""
    save_npz(DATA_DIR / "digits_train.npz", x=d["qat_x"], y=d["qat_y"])


def train_split_only() -> None:
    """Writes digits_train.npz alone, after checking that the split reproduces the shipped
    calibration and test arrays bit for bit (so the new file is disjoint from them)."""
    d = load_data()
    shipped = {
        "digits_calib_x.npy": d["calib_x"],
        "digits_test_x.npy": d["test_x"],
        "digits_test_y.npy": d["test_y"],
    }
    for name, array in shipped.items():
        if not np.array_equal(np.load(DATA_DIR / name), array):
            sys.exit(f"{name}: the shipped file differs from this split; not writing")
    write_train_split(d)
    print(f"digits_train.npz: {d['qat_x'].shape[0]} digits, "
          f"per class {np.bincount(d['qat_y']).tolist()}")


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shift by up to one pixel in each direction (zero fill)."""
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(3):
        for j in range(3):
            m = (dy == i) & (dx == j)
            if m.any():
                out[m] = padded[m, :, i:i + 8, j:j + 8]
    return out


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------

class DigitsMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 128), nn.ReLU(),
            nn.Linear(128, 64), nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x):
        return self.net(x)


def conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(1, 16),
            *conv_bn_relu(16, 32),
            nn.MaxPool2d(2),
            *conv_bn_relu(32, 64),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)  # exports as GlobalAveragePool
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.fc(torch.flatten(x, 1))


class DWSeparable(nn.Module):
    """Depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN + ReLU6."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False)
        self.dw_bn = nn.BatchNorm2d(cin)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = F.relu6(self.dw_bn(self.dw(x)))
        return F.relu6(self.pw_bn(self.pw(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1, depthwise 3x3, linear project 1x1, Add."""

    def __init__(self, c, expand=2):
        super().__init__()
        h = c * expand
        self.expand = nn.Conv2d(c, h, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(h)
        self.dw = nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False)
        self.dw_bn = nn.BatchNorm2d(h)
        self.project = nn.Conv2d(h, c, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu6(self.expand_bn(self.expand(x)))
        y = F.relu6(self.dw_bn(self.dw(y)))
        y = self.project_bn(self.project(y))
        return x + y


class DigitsMobileNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.block1 = DWSeparable(16, 32)             # 8x8
        self.block2 = DWSeparable(32, 64, stride=2)   # 4x4
        self.block3 = InvertedResidual(64, expand=2)  # 4x4, residual Add
        self.block4 = DWSeparable(64, 96, stride=2)   # 2x2
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(96, 10)

    def forward(self, x):
        x = F.relu6(self.stem_bn(self.stem(x)))
        x = self.block4(self.block3(self.block2(self.block1(x))))
        x = self.pool(x)
        return self.fc(torch.flatten(x, 1))

    def depthwise_layers(self):
        return [
            ("block1.dw", self.block1.dw, self.block1.dw_bn),
            ("block2.dw", self.block2.dw, self.block2.dw_bn),
            ("block3.dw", self.block3.dw, self.block3.dw_bn),
            ("block4.dw", self.block4.dw, self.block4.dw_bn),
        ]


class EncoderBlock(nn.Module):
    """Pre-LN transformer block with hand-written multi-head self-attention."""

    def __init__(self, d, heads, mlp_ratio=2):
        super().__init__()
        self.d, self.h, self.dh = d, heads, d // heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, mlp_ratio * d)
        self.fc2 = nn.Linear(mlp_ratio * d, d)

    def attention(self, x):
        n, t = x.shape[0], x.shape[1]
        qkv = self.qkv(x)                                   # [N,T,3D]
        qkv = qkv.reshape(n, t, 3, self.h, self.dh)         # dynamic Reshape
        qkv = qkv.permute(2, 0, 3, 1, 4)                    # [3,N,H,T,dh]
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.dh))
        attn = torch.softmax(scores, dim=-1)
        out = torch.matmul(attn, v)                         # [N,H,T,dh]
        out = out.transpose(1, 2).reshape(n, t, self.d)     # dynamic Reshape
        return self.proj(out)

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))     # exact (erf) GELU
        return x


class DigitsTransformer(nn.Module):
    def __init__(self, d=32, heads=2, depth=2):
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(torch.zeros(1, 8, d))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList([EncoderBlock(d, heads) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def residual_stream(self, x):
        """Returns the residual stream after each block (for the outlier stats)."""
        n = x.shape[0]
        h = self.embed(x.reshape(n, 8, 8)) + self.pos
        streams = []
        for blk in self.blocks:
            h = blk(h)
            streams.append(h)
        return streams

    def forward(self, x):
        n = x.size(0)
        h = self.embed(x.reshape(n, 8, 8)) + self.pos       # rows as tokens
        for blk in self.blocks:
            h = blk(h)
        h = self.ln_f(h).mean(dim=1)
        return self.head(h)


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------

def param_groups(model: nn.Module, weight_decay: float):
    """Weight decay on conv/linear weights only, never on norm params/biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim <= 1 or name.endswith("pos"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def train(model, d, *, epochs, lr, weight_decay=0.0, batch=64, aug=False, label=""):
    x = torch.from_numpy(d["train_x"])
    y = torch.from_numpy(d["train_y"])
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    steps = epochs * math.ceil(len(y) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for i in range(0, len(y), batch):
            idx = perm[i:i + batch]
            xb, yb = x[idx], y[idx]
            if aug:
                xb = augment(xb, gen)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if (ep + 1) % 10 == 0 or ep == epochs - 1:
            acc = torch_accuracy(model, d)
            print(f"  [{label}] epoch {ep + 1:3d} loss {total / len(y):.4f} "
                  f"test acc {acc[0]}/{acc[1]}")
    model.eval()
    return model


@torch.no_grad()
def torch_logits(model, x: np.ndarray) -> np.ndarray:
    model.eval()
    return model(torch.from_numpy(x)).numpy()


def torch_accuracy(model, d):
    was_training = model.training
    logits = torch_logits(model, d["test_x"])
    model.train(was_training)
    correct = int((logits.argmax(1) == d["test_y"]).sum())
    return correct, len(d["test_y"])


# --------------------------------------------------------------------------
# export and checks
# --------------------------------------------------------------------------

def export(model, path: Path, *, opset, keep_initializers_as_inputs=False,
           preserve_bn=False):
    model.eval()
    dummy = torch.zeros(2, 1, 8, 8)
    kwargs = {}
    if preserve_bn:
        # The legacy exporter fuses BatchNormalization into the preceding Conv
        # in EVAL mode; PRESERVE (with the model in eval mode) skips that pass
        # and still exports BN in inference mode (running statistics).
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (dummy,), str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
            keep_initializers_as_inputs=keep_initializers_as_inputs,
            do_constant_folding=True,
            **kwargs,
        )
    # Strip the producer version so the file does not change when only the
    # torch patch version does; keep the producer name.
    m = onnx.load(str(path))
    m.producer_version = ""
    m.doc_string = ""
    onnx.save(m, str(path))


def check_model(name: str, path: Path, *, opset, want_ops=(), want_dynamic_reshape=False):
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    size = path.stat().st_size
    if size >= MAX_ONNX_BYTES:
        sys.exit(f"{name}: {size} bytes, exceeds the 2 MB limit")
    got_opset = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")]
    if got_opset != [opset]:
        sys.exit(f"{name}: opset {got_opset}, expected {opset}")
    ops = sorted({n.op_type for n in m.graph.node})
    bad = [o for o in ops if o not in SUPPORTED_OPS]
    print(f"  [{name}] ops: {', '.join(ops)}")
    if bad or any(n.domain not in ("", "ai.onnx") for n in m.graph.node):
        sys.exit(f"{name}: unsupported ops {bad} -- restructure the model")
    for op in want_ops:
        if op not in ops:
            sys.exit(f"{name}: expected op {op} missing")
    # exactly one real input and one output
    inits = {i.name for i in m.graph.initializer}
    real_inputs = [i for i in m.graph.input if i.name not in inits]
    if [i.name for i in real_inputs] != ["input"] or [o.name for o in m.graph.output] != ["logits"]:
        sys.exit(f"{name}: bad inputs/outputs {[i.name for i in real_inputs]} "
                 f"{[o.name for o in m.graph.output]}")
    dims = real_inputs[0].type.tensor_type.shape.dim
    if not (dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 8, 8]):
        sys.exit(f"{name}: input shape is not [N,1,8,8] with symbolic N")
    if real_inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        sys.exit(f"{name}: input is not float32")
    if want_dynamic_reshape and not has_dynamic_reshape(m):
        sys.exit(f"{name}: no Shape->Gather->Unsqueeze->Concat->Reshape subgraph")
    return m, ops


def has_dynamic_reshape(m: onnx.ModelProto) -> bool:
    producer = {}
    for n in m.graph.node:
        for o in n.output:
            producer[o] = n

    def reaches(tensor, chain):
        """Walks back from `tensor` through ops in `chain` (last first)."""
        node = producer.get(tensor)
        if node is None or node.op_type != chain[0]:
            return False
        if len(chain) == 1:
            return True
        return any(reaches(i, chain[1:]) for i in node.input)

    for n in m.graph.node:
        if n.op_type == "Reshape" and len(n.input) > 1:
            if reaches(n.input[1], ["Concat", "Unsqueeze", "Gather", "Shape"]):
                return True
    return False


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BN running statistics not counted)."""
    return int(sum(p.numel() for p in model.parameters()))


def ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3  # the MLP's initializer-inputs warning is intended
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": x})[0].astype(np.float32)


# --------------------------------------------------------------------------
# statistics for the README
# --------------------------------------------------------------------------

@torch.no_grad()
def depthwise_range_ratios(model: DigitsMobileNet):
    """Per-output-channel range of each depthwise conv after folding its BN.

    Folded weight w'_c = w_c * gamma_c / sqrt(var_c + eps). The range of a
    channel is max|w'_c|; the ratio is max over channels / min over channels.
    """
    out = {}
    for name, conv, bn in model.depthwise_layers():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        folded = conv.weight * scale.reshape(-1, 1, 1, 1)
        rng = folded.abs().reshape(folded.shape[0], -1).amax(1)
        raw = conv.weight.abs().reshape(conv.weight.shape[0], -1).amax(1)
        out[name] = {
            "channels": int(folded.shape[0]),
            "near_zero_var_channels": int((bn.running_var < 1e-4).sum()),
            "folded_max_abs_range": float(rng.max()),
            "folded_min_abs_range": float(rng.min()),
            "folded_range_ratio": float(rng.max() / rng.min()),
            "unfolded_range_ratio": float(raw.max() / raw.min()),
        }
    return out


@torch.no_grad()
def depthwise_weight_quant_accuracy(model: DigitsMobileNet, d, bits: int, per_channel: bool):
    """Top-1 after folding BN into the depthwise convs and rounding only those
    folded weights to symmetric `bits`-bit integers (per tensor or per output
    channel); everything else stays float. A PyTorch reference for the app."""
    m = copy.deepcopy(model).eval()
    qmax = 2 ** (bits - 1) - 1
    for _, conv, bn in m.depthwise_layers():
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).reshape(-1, 1, 1, 1)
        folded = conv.weight * scale
        if per_channel:
            r = folded.abs().reshape(folded.shape[0], -1).amax(1).reshape(-1, 1, 1, 1)
        else:
            r = folded.abs().max()
        step = r / qmax
        q = torch.clamp(torch.round(folded / step), -qmax, qmax) * step
        conv.weight.copy_(q / scale)
    return torch_accuracy(m, d)[0]


@torch.no_grad()
def residual_outlier_stats(model: DigitsTransformer, x: np.ndarray):
    """max |activation| / std of the residual stream after each block."""
    model.eval()
    out = {}
    for i, h in enumerate(model.residual_stream(torch.from_numpy(x))):
        flat = h.reshape(-1, h.shape[-1])
        per_dim = flat.abs().amax(0)
        out[f"block{i}"] = {
            "max_abs": float(flat.abs().max()),
            "std": float(flat.std()),
            "max_abs_over_std": float(flat.abs().max() / flat.std()),
            "outlier_dim": int(per_dim.argmax()),
        }
    return out


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main() -> None:
    setup_torch()
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    REF_DIR.mkdir(parents=True, exist_ok=True)

    d = load_data()
    write_data(d)
    print(f"data: train {d['train_x'].shape}, test {d['test_x'].shape}, "
          f"calib {d['calib_x'].shape}")

    specs = [
        dict(name="digits_mlp", make=DigitsMLP, opset=11,
             train=dict(epochs=40, lr=3e-3, weight_decay=1e-4),
             export=dict(keep_initializers_as_inputs=True),
             want_ops=("Gemm",)),
        dict(name="digits_cnn", make=DigitsCNN, opset=13,
             train=dict(epochs=30, lr=3e-3, weight_decay=1e-4, aug=True),
             export=dict(preserve_bn=True),
             want_ops=("BatchNormalization", "Conv", "MaxPool", "GlobalAveragePool")),
        dict(name="digits_mobilenet", make=DigitsMobileNet, opset=17,
             # A high peak learning rate and no weight decay: some ReLU6
             # channels feeding the depthwise convs die during training (the
             # classic MobileNet pathology), their depthwise outputs have ~zero
             # running variance, and folding BN blows those kernels up by up to
             # gamma/sqrt(eps). Nothing is forced; see stats.json.
             train=dict(epochs=40, lr=5e-2, weight_decay=0.0, aug=True),
             export=dict(preserve_bn=True),
             want_ops=("BatchNormalization", "Clip", "Add", "GlobalAveragePool")),
        dict(name="digits_transformer", make=DigitsTransformer, opset=17,
             train=dict(epochs=60, lr=3e-3, weight_decay=1e-2),
             export=dict(),
             want_ops=("LayerNormalization", "Erf", "Softmax", "MatMul", "ReduceMean"),
             dynamic_reshape=True),
    ]

    metrics, stats = {}, {}
    for spec in specs:
        name = spec["name"]
        print(f"\n== {name}")
        seed_everything(SEED)
        model = spec["make"]()
        train(model, d, label=name, **spec["train"])
        t_correct, total = torch_accuracy(model, d)

        path = MODEL_DIR / f"{name}.onnx"
        export(model, path, opset=spec["opset"], **spec["export"])
        _, ops = check_model(name, path, opset=spec["opset"], want_ops=spec["want_ops"],
                             want_dynamic_reshape=spec.get("dynamic_reshape", False))

        logits = ort_logits(path, d["test_x"])
        correct = int((logits.argmax(1) == d["test_y"]).sum())
        diff = float(np.abs(logits - torch_logits(model, d["test_x"])).max())
        print(f"  [{name}] onnxruntime {correct}/{total} = {correct / total:.4f}; "
              f"torch {t_correct}/{total}; max |logit diff| {diff:.2e}")
        if correct != t_correct or diff > 1e-3:
            sys.exit(f"{name}: onnxruntime and torch disagree")

        ref_x = d["test_x"][:N_REFERENCE]
        save_npz(REF_DIR / f"{name}.inputs.npz", input=ref_x)
        save_npz(REF_DIR / f"{name}.outputs.npz", logits=ort_logits(path, ref_x))

        metrics[name] = {
            "correct": correct,
            "total": total,
            "accuracy": round(correct / total, 6),
            "opset": spec["opset"],
            "params": count_params(model),
            "file_bytes": path.stat().st_size,
        }
        s = {"ops": ops, "torch_correct": t_correct, "max_abs_logit_diff_vs_torch": diff}
        if isinstance(model, DigitsMobileNet):
            s["depthwise"] = depthwise_range_ratios(model)
            s["depthwise_weight_quant_correct"] = {
                f"int{b}_{g}": depthwise_weight_quant_accuracy(model, d, b, g == "per_channel")
                for b in (8, 4) for g in ("per_tensor", "per_channel")}
            print(f"  [{name}] folded depthwise weights only, correct/{total}: "
                  f"{s['depthwise_weight_quant_correct']}")
            for layer, r in s["depthwise"].items():
                print(f"  [{name}] {layer}: folded per-channel range ratio "
                      f"{r['folded_range_ratio']:.1f} (unfolded {r['unfolded_range_ratio']:.1f}, "
                      f"{r['channels']} channels, {r['near_zero_var_channels']} with ~zero var)")
        if isinstance(model, DigitsTransformer):
            s["residual_stream"] = residual_outlier_stats(model, d["test_x"])
            for blk, r in s["residual_stream"].items():
                print(f"  [{name}] residual stream after {blk}: max|a| {r['max_abs']:.2f}, "
                      f"std {r['std']:.3f}, max|a|/std {r['max_abs_over_std']:.1f} "
                      f"(dim {r['outlier_dim']})")
        stats[name] = s

    (MODEL_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (MODEL_DIR / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print("\nmetrics:")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    if sys.argv[1:] == ["--train-split"]:
        train_split_only()
    else:
        main()
