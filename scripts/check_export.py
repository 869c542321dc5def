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

Per-channel manual clips (tests/fixtures/export/channel_clips.json): the sample CNN and a real
model (PP-OCR's classifier from ../shared/real_models) are exported int8 per channel, then again
from a session whose config clips one channel of the first per-channel weight to half its range;
onnx.checker and onnxruntime run both files, and the check is that the clipped file's scales
and codes differ from the plain one's in that channel only (its scale max|clip|/127). The Rust
test re-exports from the same session and compares the SHA-256.

Usage: scripts/check_export.py [--quantscope target/release/quantscope] [--only channel-clips]
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


# Per-channel clip cases: model, calibration data (and the inputs onnxruntime runs), channel.
CHANNEL_CLIPS = {
    "cnn": {
        "model": "sample_models/digits_cnn.onnx",
        "data": "sample_models/data/digits_calib_x.npy",
        "channel": 1,
    },
    "ppocr_cls": {
        "model": "../shared/real_models/ppocr-cls/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "data": "tests/fixtures/real_models/feeds/ch_ppocr_mobile_v2.0_cls_infer.npz",
        "channel": 1,
    },
}


def weight_quantizers(proto):
    """Weight name -> (codes, scales, zero points) of every initializer behind a DequantizeLinear."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    out = {}
    for n in proto.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            name = n.input[0].removesuffix("_quantized")
            zero = inits[n.input[2]] if len(n.input) > 2 else None
            out[name] = (inits[n.input[0]], inits[n.input[1]], zero)
    return out


def run_on(path: Path, data: Path):
    """onnxruntime's outputs of the model at `path` on `data` (.npy: the first 64 samples of the
    model's one input at once; .npz: arrays by input name, one sample per run, joined)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if data.suffix == ".npy":
        return session.run(None, {names[0]: np.load(data)[:64]})
    with np.load(data) as z:
        arrays = {k: z[k] for k in z.files if k in names}
    n = next(iter(arrays.values())).shape[0]
    runs = [session.run(None, {k: v[i : i + 1] for k, v in arrays.items()}) for i in range(n)]
    return [np.concatenate(parts) for parts in zip(*runs)]


def worst_sqnr(reference, other):
    worst = np.inf
    for f, q in zip(reference, other):
        f, q = f.astype(np.float64), q.astype(np.float64)
        noise = ((f - q) ** 2).sum()
        worst = min(worst, 200.0 if noise == 0 else 10 * np.log10((f**2).sum() / noise))
    return round(float(worst), 3)


def check_channel_clips(quantscope, tmp: Path):
    """Exports each CHANNEL_CLIPS case plain and with one channel clipped (module docstring);
    returns the fixture and the number of failures."""
    cases, failures = {}, 0
    for key, case in CHANNEL_CLIPS.items():
        model, data = ROOT / case["model"], ROOT / case["data"]
        if not model.exists():
            print(f"{key}: {model} is missing", file=sys.stderr)
            failures += 1
            continue
        plain, clipped = tmp / f"{key}_plain.onnx", tmp / f"{key}_clipped.onnx"
        session_path, clipped_session = tmp / f"{key}.session.json", tmp / f"{key}_clip.session.json"
        subprocess.run(
            [quantscope, "export", str(model), "--data", str(data), "--format", "qdq",
             "--weights", "int8", "--granularity", "channel", "--calib", "minmax",
             "--out", str(plain), "--save-session", str(session_path)],
            check=True, stdout=subprocess.DEVNULL,
        )
        before = weight_quantizers(onnx.load(plain))
        c = case["channel"]
        weight = next(w for w, (_, s, _) in before.items() if s.size > c)
        codes0, scales0, zeros0 = before[weight]
        half = float(np.float32(scales0[c] * 127 / 2))
        clip = [-half, half]
        session = json.loads(session_path.read_text())
        session["config"]["weight_channel_ranges"] = {weight: {str(c): clip}}
        clipped_session.write_text(json.dumps(session))
        subprocess.run(
            [quantscope, "export", str(model), "--data", str(data), "--format", "qdq",
             "--session", str(clipped_session), "--out", str(clipped)],
            check=True, stdout=subprocess.DEVNULL,
        )
        proto = onnx.load(clipped)
        onnx.checker.check_model(proto, full_check=True)
        after = weight_quantizers(proto)
        problems = []
        if sorted(after) != sorted(before):
            problems.append("a different set of quantized weights")
        for w in before:
            (q0, s0, z0), (q1, s1, z1) = before[w], after.get(w, before[w])
            changed = sorted(set(np.flatnonzero(s0 != s1).tolist()))
            want = [c] if w == weight else []
            if changed != want:
                problems.append(f"{w}: scales changed in channels {changed}, expected {want}")
            if z0 is not None and not np.array_equal(z0, z1):
                problems.append(f"{w}: zero points changed")
            if w == weight:
                axis = 0 if q0.shape[0] == s0.size else 1
                other = np.delete(np.arange(s0.size), c)
                if not np.array_equal(np.take(q0, other, axis), np.take(q1, other, axis)):
                    problems.append(f"{w}: codes of other channels changed")
            elif not np.array_equal(q0, q1):
                problems.append(f"{w}: codes changed")
        expected = np.float32(half) / np.float32(127)
        if not np.isclose(after[weight][1][c], expected, rtol=1e-6, atol=0):
            problems.append(f"scale of channel {c} is {after[weight][1][c]}, expected {expected}")
        runs = {name: run_on(path, data)
                for name, path in [("float", model), ("plain", plain), ("clipped", clipped)]}
        if not all(np.isfinite(o).all() for o in runs["clipped"]):
            problems.append("onnxruntime's outputs of the clipped model are not finite")
        for p in problems:
            print(f"{key}: {p}", file=sys.stderr)
        failures += len(problems)
        cases[key] = {
            **case,
            "weight": weight,
            "clip": clip,
            "scales_before": [float(v) for v in scales0],
            "scales_after": [float(v) for v in after[weight][1]],
            "sha256": hashlib.sha256(clipped.read_bytes()).hexdigest(),
            "plain_sha256": hashlib.sha256(plain.read_bytes()).hexdigest(),
            "onnxruntime_sqnr_plain_db": worst_sqnr(runs["float"], runs["plain"]),
            "onnxruntime_sqnr_clipped_db": worst_sqnr(runs["float"], runs["clipped"]),
            "onnxruntime_clipped_vs_plain_db": worst_sqnr(runs["plain"], runs["clipped"]),
        }
        print(f"channel clip {key:<10} {weight}[{c}] clipped to ±{half:.5g}: only its scale "
              f"changed ({scales0[c]:.4g} -> {after[weight][1][c]:.4g}); onnxruntime SQNR "
              f"{cases[key]['onnxruntime_sqnr_plain_db']} -> {cases[key]['onnxruntime_sqnr_clipped_db']} dB")
    fixture = {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "cases": cases}
    return fixture, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantscope", default=str(ROOT / "target/release/quantscope"))
    parser.add_argument("--only", choices=["channel-clips"], help="run only this part")
    args = parser.parse_args()
    out_dir = ROOT / "tests/fixtures/export"
    with tempfile.TemporaryDirectory() as tmp:
        fixture, clip_failures = check_channel_clips(args.quantscope, Path(tmp))
    (out_dir / "channel_clips.json").write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    if args.only == "channel-clips":
        return 1 if clip_failures else 0
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
    return 1 if failures + clip_failures else 0


if __name__ == "__main__":
    sys.exit(main())
