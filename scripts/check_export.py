#!/usr/bin/env python3
"""Exports every sample model as QDQ ONNX with `quantscope export` (per-tensor and per-channel,
8 and 4 bits), checks each with onnx.checker, runs it in onnxruntime on the held-out digits and
stores what onnxruntime computed as fixtures for tests/export.rs:

  tests/fixtures/export/<model>_<config>.npz   argmax (all 540 samples), logits (first 64)
  tests/fixtures/export/baked_<model>_<scheme>.npz  the same for baked k-means/ternary models
  tests/fixtures/export/manifest.json          per export: flags, SHA-256 of the exported file,
                                               opset, onnxruntime's accuracy; tool versions

The Rust test re-exports each model through the library and checks the bytes hash to the same
SHA-256, so the fixtures always belong to the exporter under test; it then compares
Quantscope's fake-quant simulation with these outputs.

Usage: scripts/check_export.py [--quantscope target/release/quantscope]
(build first: cargo build --release --no-default-features)
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["mlp", "cnn", "mobilenet", "transformer"]
CONFIGS = {
    "w8a8_tensor": {"weights": "int8", "granularity": "tensor", "act_bits": 8},
    "w8a8_channel": {"weights": "int8", "granularity": "channel", "act_bits": 8},
    "w4a4_tensor": {"weights": "int4", "granularity": "tensor", "act_bits": 4},
    "w4a4_channel": {"weights": "int4", "granularity": "channel", "act_bits": 4},
}
HEAD = 64
# Baked models (de-quantized weights, float activations) for the schemes QDQ cannot express.
BAKED = {
    "kmeans4": {"weights": "kmeans4", "granularity": "channel"},
    "ternary": {"weights": "ternary", "granularity": "channel"},
}


def export_and_run(cmd, path, x, y, fixture):
    """Runs the export command, checks the model, runs it in onnxruntime on `x` and saves the
    fixture; returns the model and onnxruntime's top-1 accuracy."""
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    argmax = logits.argmax(axis=1).astype(np.int64)
    np.savez(fixture, argmax=argmax, logits=logits[:HEAD].astype(np.float32))
    return proto, float((argmax == y).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantscope", default=str(ROOT / "target/release/quantscope"))
    args = parser.parse_args()
    out_dir = ROOT / "tests/fixtures/export"
    out_dir.mkdir(parents=True, exist_ok=True)
    data = ROOT / "sample_models/data"
    x = np.load(data / "digits_test_x.npy")
    y = np.load(data / "digits_test_y.npy")
    manifest = {
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "calibration": "sample_models/data/digits_calib_x.npy",
        "evaluation": "sample_models/data/digits_test_x.npy",
        "logits_rows": HEAD,
        "exports": {},
        "baked": {},
    }
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            for name, flags in CONFIGS.items():
                key = f"{model}_{name}"
                path = Path(tmp) / f"{key}.onnx"
                cmd = [
                    args.quantscope, "export", str(ROOT / f"sample_models/digits_{model}.onnx"),
                    "--data", str(data / "digits_calib_x.npy"), "--format", "qdq",
                    "--weights", flags["weights"], "--granularity", flags["granularity"],
                    "--act-bits", str(flags["act_bits"]), "--calib", "minmax", "--out", str(path),
                ]
                proto, accuracy = export_and_run(cmd, path, x, y, out_dir / f"{key}.npz")
                ops = sorted({n.op_type for n in proto.graph.node})
                manifest["exports"][key] = {
                    "model": f"sample_models/digits_{model}.onnx",
                    **flags,
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                    "onnxruntime_accuracy": accuracy,
                    "quantize_linear_nodes": sum(n.op_type == "QuantizeLinear" for n in proto.graph.node),
                    "dequantize_linear_nodes": sum(n.op_type == "DequantizeLinear" for n in proto.graph.node),
                }
                print(f"{key:<28} opset {manifest['exports'][key]['opset']:>2}  "
                      f"onnxruntime top-1 {100 * accuracy:6.2f} %  ops {', '.join(ops)}")
                if "QuantizeLinear" not in ops or "DequantizeLinear" not in ops:
                    print(f"  {key}: no QDQ nodes", file=sys.stderr)
                    failures += 1
        for model in MODELS:
            for name, flags in BAKED.items():
                key = f"baked_{model}_{name}"
                path = Path(tmp) / f"{key}.onnx"
                cmd = [
                    args.quantscope, "export", str(ROOT / f"sample_models/digits_{model}.onnx"),
                    "--data", str(data / "digits_calib_x.npy"), "--format", "baked",
                    "--weights", flags["weights"], "--granularity", flags["granularity"],
                    "--float-activations", "--out", str(path),
                ]
                _, accuracy = export_and_run(cmd, path, x, y, out_dir / f"{key}.npz")
                manifest["baked"][key] = {
                    "model": f"sample_models/digits_{model}.onnx",
                    **flags,
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "onnxruntime_accuracy": accuracy,
                }
                print(f"{key:<28} baked     onnxruntime top-1 {100 * accuracy:6.2f} %")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
