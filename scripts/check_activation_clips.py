#!/usr/bin/env python3
"""Per-channel activation clips in the QDQ export, checked in onnxruntime.

For the sample CNN and a real model (PP-OCR's direction classifier from ../shared/real_models),
`quantscope export --format qdq` writes the model int8 (weights per channel, uint8 min-max
activations) and saves its session; the script picks the input activation of the first
convolution that is not a graph input, finds the channel with the largest maximum (running the
float model in onnxruntime with that tensor as an extra output), writes a session whose config
clips that one channel to half its range (`activation_channel_ranges`), and exports again.

Checks (any failure is printed and makes the exit status non-zero):
  - onnx.checker (full check) passes on the clipped file;
  - the activation's QuantizeLinear and DequantizeLinear carry `axis` (1: a convolution's input)
    and a 1-D scale and zero point with one entry per channel, every entry equal to the plain
    file's scalar except the clipped channel's, whose scale is (hi - lo) / 255;
  - every other quantizer (activations and weights) is unchanged;
  - onnxruntime runs the clipped file with finite outputs.

Fixtures for tests/export_activation_clips.rs:
  tests/fixtures/export/activation_clips.json       per case: model, data, tensor, channel, clip,
                                                    scales before/after, SHA-256 of both files,
                                                    onnxruntime SQNRs; tool versions
  tests/fixtures/export/activation_clips_<case>.npz onnxruntime's outputs of the clipped file
                                                    (output_0, ...) and of the plain one
                                                    (plain_output_0, ...) on the case's data

The Rust test re-exports through the library, checks the bytes hash to the same SHA-256 and
compares Quantscope's fake-quant simulation with these outputs.

Usage: scripts/check_activation_clips.py [--quantscope target/release/quantscope]
(build first: cargo build --release --no-default-features --bin quantscope)
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

from check_export import run_on, weight_quantizers, worst_sqnr

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "cnn": {
        "model": "sample_models/digits_cnn.onnx",
        "data": "sample_models/data/digits_calib_x.npy",
    },
    "ppocr_cls": {
        "model": "../shared/real_models/ppocr-cls/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "data": "tests/fixtures/real_models/feeds/ch_ppocr_mobile_v2.0_cls_infer.npz",
    },
}


def activation_quantizers(proto):
    """Activation name -> (QuantizeLinear node, scale, zero point) of every QuantizeLinear whose
    input is not an initializer."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    out = {}
    for n in proto.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            name = n.input[0].removesuffix("_Clip_Output")
            out[name] = (n, inits[n.input[1]], inits[n.input[2]])
    return out


def first_inner_conv_input(proto):
    """The activation read (through its DequantizeLinear) as input 0 by the first Conv whose
    input is not a graph input."""
    inputs = {i.name for i in proto.graph.input}
    for n in proto.graph.node:
        if n.op_type == "Conv" and n.input[0].endswith("_DequantizeLinear_Output"):
            name = n.input[0].removesuffix("_DequantizeLinear_Output")
            if name not in inputs:
                return name, n
    raise SystemExit("no convolution reads a quantized inner activation")


def channel_ranges(model: Path, data: Path, tensor: str):
    """Each channel's [min, max] (axis 1) of `tensor` in the float model over `data`."""
    proto = onnx.load(model)
    proto.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "with_output.onnx"
        onnx.save(proto, path)
        values = run_on(path, data)[-1]
    axes = tuple(a for a in range(values.ndim) if a != 1)
    return values.min(axis=axes), values.max(axis=axes)


def export(quantscope, model, data, out, extra):
    subprocess.run(
        [quantscope, "export", str(model), "--data", str(data), "--format", "qdq", "--out", str(out),
         *extra],
        check=True, stdout=subprocess.DEVNULL,
    )


def check_case(quantscope, key, case, tmp: Path, out_dir: Path):
    """Exports `case` plain and with one activation channel clipped; returns its fixture entry
    and the problems found."""
    model, data = ROOT / case["model"], ROOT / case["data"]
    plain, clipped = tmp / f"{key}_plain.onnx", tmp / f"{key}_clipped.onnx"
    session_path, clipped_session = tmp / f"{key}.session.json", tmp / f"{key}_clip.session.json"
    export(quantscope, model, data, plain,
           ["--weights", "int8", "--granularity", "channel", "--calib", "minmax",
            "--save-session", str(session_path)])
    before_proto = onnx.load(plain)
    tensor, conv = first_inner_conv_input(before_proto)
    before = activation_quantizers(before_proto)
    _, scale0, zero0 = before[tensor]
    lo_c, hi_c = channel_ranges(model, data, tensor)
    c = int(np.argmax(hi_c))
    clip = [float(np.float32(min(float(lo_c[c]), 0.0) / 2)), float(np.float32(float(hi_c[c]) / 2))]
    session = json.loads(session_path.read_text())
    session["config"]["activation_channel_ranges"] = {tensor: {str(c): clip}}
    clipped_session.write_text(json.dumps(session))
    export(quantscope, model, data, clipped, ["--session", str(clipped_session)])

    problems = []
    proto = onnx.load(clipped)
    onnx.checker.check_model(proto, full_check=True)
    after = activation_quantizers(proto)
    q_node, scale1, zero1 = after[tensor]
    dq_node = next(n for n in proto.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] == q_node.output[0])
    channels = lo_c.size
    for node in (q_node, dq_node):
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        if axis != 1:
            problems.append(f"{node.name}: axis {axis}, expected 1")
    if scale0.shape != () or scale1.shape != (channels,) or zero1.shape != (channels,):
        problems.append(f"scale shapes {scale0.shape} -> {scale1.shape}, zero point {zero1.shape}; "
                        f"expected () -> ({channels},)")
    else:
        changed = np.flatnonzero(scale1 != scale0).tolist()
        if changed != [c]:
            problems.append(f"scales changed in channels {changed}, expected [{c}]")
        if np.flatnonzero(zero1 != zero0).tolist() not in ([], [c]):
            problems.append("zero points changed in other channels")
        expected = (np.float32(clip[1]) - np.float32(min(clip[0], 0.0))) / np.float32(255)
        if not np.isclose(scale1[c], expected, rtol=1e-6, atol=0):
            problems.append(f"scale of channel {c} is {scale1[c]}, expected {expected}")
    for name, (_, s0, z0) in before.items():
        if name == tensor:
            continue
        if name not in after or not (np.array_equal(s0, after[name][1])
                                     and np.array_equal(z0, after[name][2])):
            problems.append(f"the quantizer of activation {name} changed")
    w0, w1 = weight_quantizers(before_proto), weight_quantizers(proto)
    for name, (q0, s0, _) in w0.items():
        if q0.dtype == np.int32:
            continue  # int32 biases: the one behind the clipped input stays float
        if name not in w1 or not (np.array_equal(q0, w1[name][0]) and np.array_equal(s0, w1[name][1])):
            problems.append(f"the quantizer of weight {name} changed")
    # The consumer's bias: int32 behind a DequantizeLinear in the plain file, float in the clipped
    # one (its scale S_w·S_x would differ per input channel).
    after_conv = next(n for n in proto.graph.node if n.name == conv.name)
    inits = {i.name for i in proto.graph.initializer}
    bias_float = len(after_conv.input) > 2 and after_conv.input[2] in inits
    if len(conv.input) > 2 and not bias_float:
        problems.append(f"the bias of {conv.name} is still quantized behind a per-channel input")
    runs = {name: run_on(path, data)
            for name, path in [("float", model), ("plain", plain), ("clipped", clipped)]}
    if not all(np.isfinite(o).all() for o in runs["clipped"]):
        problems.append("onnxruntime's outputs of the clipped model are not finite")
    np.savez(out_dir / f"activation_clips_{key}.npz",
             **{f"output_{i}": o.astype(np.float32) for i, o in enumerate(runs["clipped"])},
             **{f"plain_output_{i}": o.astype(np.float32) for i, o in enumerate(runs["plain"])})
    entry = {
        **case,
        "tensor": tensor,
        "consumer": conv.name,
        "channel": c,
        "channels": int(channels),
        "channel_range": [float(lo_c[c]), float(hi_c[c])],
        "clip": clip,
        "scale_before": float(scale0),
        "scales_after": [float(v) for v in np.atleast_1d(scale1)],
        "zero_points_after": [int(v) for v in np.atleast_1d(zero1)],
        "consumer_bias_float": bool(bias_float),
        "sha256": hashlib.sha256(clipped.read_bytes()).hexdigest(),
        "plain_sha256": hashlib.sha256(plain.read_bytes()).hexdigest(),
        "onnxruntime_sqnr_plain_db": worst_sqnr(runs["float"], runs["plain"]),
        "onnxruntime_sqnr_clipped_db": worst_sqnr(runs["float"], runs["clipped"]),
        "onnxruntime_clipped_vs_plain_db": worst_sqnr(runs["plain"], runs["clipped"]),
    }
    print(f"activation clip {key:<10} {tensor}[{c}] of {channels} (range {lo_c[c]:.4g}..{hi_c[c]:.4g}) "
          f"clipped to {clip[0]:.4g}..{clip[1]:.4g}: scale {float(scale0):.4g} -> "
          f"{float(np.atleast_1d(scale1)[c]):.4g} in that channel only; onnxruntime SQNR vs float "
          f"{entry['onnxruntime_sqnr_plain_db']} -> {entry['onnxruntime_sqnr_clipped_db']} dB")
    return entry, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantscope", default=str(ROOT / "target/release/quantscope"))
    args = parser.parse_args()
    out_dir = ROOT / "tests/fixtures/export"
    cases, failures = {}, 0
    with tempfile.TemporaryDirectory() as tmp:
        for key, case in CASES.items():
            if not (ROOT / case["model"]).exists():
                print(f"{key}: {case['model']} is missing", file=sys.stderr)
                failures += 1
                continue
            cases[key], problems = check_case(args.quantscope, key, case, Path(tmp), out_dir)
            for p in problems:
                print(f"{key}: {p}", file=sys.stderr)
            failures += len(problems)
    fixture = {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "cases": cases}
    (out_dir / "activation_clips.json").write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
