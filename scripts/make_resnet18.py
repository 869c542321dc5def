#!/usr/bin/env python3
"""Write a ResNet-18-shaped ONNX model and benchmark inputs.

Usage:
    python scripts/make_resnet18.py OUTDIR

Writes
    OUTDIR/resnet18.onnx     torchvision-style ResNet-18 (BasicBlock [2,2,2,2]),
                             random weights from a fixed seed, eval mode, exported
                             at opset 17 with BatchNormalization folded into Conv,
                             input `input` [N,3,224,224] (symbolic N),
                             output `logits` [N,1000]
    OUTDIR/resnet18_b1.npy   float32 standard-normal input [1,3,224,224]
    OUTDIR/resnet18_b8.npy   float32 standard-normal input [8,3,224,224]

The network is defined here (no torchvision needed).  Its BatchNorm running
statistics are calibrated on a few random batches before export so that the
activations stay well scaled through all 18 layers (otherwise a randomly
initialized ResNet's logits are huge and comparisons between engines are
meaningless).  The exported graph is checked to contain only ops the
Quantscope engine supports.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from resnets import resnet18

ALLOWED_OPS = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Pow",
    "Sqrt", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Erf", "Gelu",
    "HardSigmoid", "HardSwish", "Softmax", "LogSoftmax", "BatchNormalization",
    "LayerNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
    "ReduceMean", "ReduceSum", "ReduceMax", "Flatten", "Reshape", "Transpose",
    "Concat", "Split", "Slice", "Squeeze", "Unsqueeze", "Shape", "Gather", "Exp",
    "Identity", "Dropout", "Pad", "Resize", "Cast", "Constant",
}


def build_model(seed=0):
    torch.manual_seed(seed)
    model = resnet18()
    # Give the BatchNorm layers non-trivial affine parameters, then calibrate
    # their running statistics on random data (cumulative average).
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.momentum = None
                m.reset_running_stats()
        model.train()
        for _ in range(3):
            model(torch.randn(8, 3, 224, 224))
    model.eval()
    return model


def export(model, path):
    dummy = torch.randn(1, 3, 224, 224)
    kwargs = dict(
        input_names=["input"],
        output_names=["logits"],
        opset_version=17,
        do_constant_folding=True,  # folds eval-mode BatchNorm into Conv
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but gives a plain, fully
        # constant-folded graph (Conv/Relu/Add/MaxPool/GlobalAveragePool/
        # Flatten/Gemm), which is what we want here.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, **kwargs)
        except TypeError:  # older torch without the dynamo keyword
            torch.onnx.export(model, (dummy,), str(path), **kwargs)


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    outdir = Path(argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / "resnet18.onnx"
    model = build_model()
    export(model, path)

    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = sorted({n.op_type for n in m.graph.node})
    bad = [op for op in ops if op not in ALLOWED_OPS]
    if bad:
        raise SystemExit(f"exported graph uses unsupported ops: {bad}")
    opset = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")]
    print(f"{path}: opset {opset}, ops {ops}, {path.stat().st_size / 1e6:.1f} MB")

    rng = np.random.default_rng(18)
    for batch in (1, 8):
        x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        np.save(outdir / f"resnet18_b{batch}.npy", x)
        with torch.no_grad():
            logits = model(torch.from_numpy(x)).numpy()
        print(f"resnet18_b{batch}.npy: logits std {logits.std():.3f}, "
              f"max |logit| {np.abs(logits).max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
