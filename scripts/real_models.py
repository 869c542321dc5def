#!/usr/bin/env python3
"""Reference figures for the public models in ../shared/real_models (tests/real_models.rs).

For every model this script
  1. takes the model's realistic inputs: image models read the photos through Quantscope's own
     image preset (`quantscope run --save-inputs`, so both sides see the same numbers); the
     others read feeds built by the folder's make_feeds.py, stored compressed in
     tests/fixtures/real_models/feeds/ (arrays computed from the recordings, not the files);
  2. runs onnxruntime (1 thread) on every sample and stores a sample of each output: 4096
     evenly spaced elements of the flattened output and its sum of squares; runs
     `quantscope run` on the same data and records the largest relative error over every
     element of every output (|ours − theirs| / max(|theirs|, 1)) and the model's op types;
  3. exports the model with `quantscope export --format qdq` (int8 per-channel weights, uint8
     min-max activations, calibrated on the same inputs), checks the file with onnx.checker,
     runs it in onnxruntime and records its worst-output SQNR against float;
  4. quantizes the same model with onnxruntime's own quantize_static on the same data and
     settings (opset lifted to 13 where older, quant_pre_process first) and records its SQNR;
     quantize_static also quantizes the graph's outputs and leaves recurrent layers (LSTM,
     GRU, RNN) in float, while Quantscope by default leaves outputs float and quantizes
     recurrent layers, so every model is also exported with onnxruntime's placement
     (`--quantize-outputs`, plus `--float-ops LSTM,GRU,RNN` where it has recurrent layers),
     checked and run the same way (`ours_like_ort_sqnr_db`): the figure the test compares
     with onnxruntime's.

The manifest (tests/fixtures/real_models/manifest.json) holds, per model, the data flags, the
SHA-256 of our QDQ files (the test re-exports and compares, so the figures belong to the code
under test), the SQNRs and the tool versions.

Usage: scripts/real_models.py [--quantscope target/release/quantscope] [--only NAME ...]
(build first: cargo build --release --no-default-features)
"""

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "real_models"
FIXTURES = ROOT / "tests" / "fixtures" / "real_models"
SAMPLED = 4096
QDQ_FLAGS = ["--format", "qdq", "--weights", "int8", "--granularity", "channel", "--calib", "minmax"]
# quantize_static quantizes the graph's outputs, and has no QDQ form for recurrent layers (it
# leaves them in float); Quantscope by default leaves outputs float and quantizes recurrent
# layers' weights and input sequences. For a like-for-like comparison, every model is exported
# a second time with onnxruntime's placement.
RECURRENT = {"LSTM", "GRU", "RNN"}
LIKE_ORT_FLAGS = ["--quantize-outputs"]
LIKE_ORT_RECURRENT_FLAGS = ["--float-ops", "LSTM,GRU,RNN"]

# name, model file, data: ("images", preset) or ("feed", make_feeds name)
MODELS = [
    ("yunet_s_640", "yunet/yunet_s_640_640.onnx", ("images", "bgr,0..255")),
    ("yunet_n_dynamic", "yunet/yunet_n_dynamic.onnx", ("images", "bgr,0..255,320x320")),
    ("espcn", "superres-espcn/super_resolution.onnx", ("images", "luma,0..1")),
    ("deeplab", "deeplabv3-mnv2-tflite/deeplab_v3_1_default_1.onnx", ("images", "rgb,-1..1,nhwc")),
    ("ppocr_cls", "ppocr-cls/ch_ppocr_mobile_v2.0_cls_infer.onnx", ("feed", "ch_ppocr_mobile_v2.0_cls_infer")),
    ("silero_vad", "silero-vad/silero_vad.onnx", ("feed", "silero_vad")),
    ("gtcrn", "gtcrn/gtcrn_simple.onnx", ("feed", "gtcrn_simple")),
    ("dtln", "dtln/dtln_stage1.onnx", ("feed", "dtln_stage1")),
    ("bert_mlm", "g2p-id/bert_mlm.onnx", ("feed", "bert_mlm")),
]


def make_feeds(out: Path):
    """Runs the shared make_feeds.py with its output redirected to `out`."""
    spec = importlib.util.spec_from_file_location("make_feeds", SHARED / "make_feeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.OUT = str(out)
    module.main()


def store_feed(raw: Path, name: str) -> Path:
    """Copies feed `name` (an .npz or a folder of them) compressed into the fixtures."""
    dest_root = FIXTURES / "feeds"
    dest_root.mkdir(parents=True, exist_ok=True)
    if (raw / f"{name}.npz").exists():
        dest = dest_root / f"{name}.npz"
        with np.load(raw / f"{name}.npz") as z:
            np.savez_compressed(dest, **{k: z[k] for k in z.files})
        return dest
    dest = dest_root / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    for f in sorted((raw / name).glob("*.npz")):
        with np.load(f) as z:
            np.savez_compressed(dest / f.name, **{k: z[k] for k in z.files})
    return dest


def samples_of(path: Path):
    """Per-sample feeds (dicts name -> array with the sample axis kept) of an .npz or folder."""
    if path.is_dir():
        out = []
        for f in sorted(path.glob("*.npz")):
            with np.load(f) as z:
                out.append({k: z[k] for k in z.files})
        return out
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k not in ("labels", "y")}
    n = next(iter(arrays.values())).shape[0]
    return [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(n)]


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_all(path, samples):
    """Outputs by name, the samples concatenated on axis 0 where they have one."""
    s = session(path)
    names = [o.name for o in s.get_outputs()]
    inputs = {i.name for i in s.get_inputs()}
    runs = [s.run(None, {k: v for k, v in feed.items() if k in inputs}) for feed in samples]
    joined = {}
    for i, name in enumerate(names):
        parts = [np.asarray(r[i]) for r in runs]
        joined[name] = np.concatenate([p.reshape((1,) + p.shape) if p.ndim == 0 else p for p in parts])
    return joined


def sqnr(float_out, quant_out):
    worst = None
    per_output = {}
    for name, f in float_out.items():
        if not np.issubdtype(f.dtype, np.floating):
            continue
        f = f.astype(np.float64)
        q = quant_out[name].astype(np.float64)
        noise = float(((f - q) ** 2).sum())
        signal = float((f**2).sum())
        value = 200.0 if noise == 0 else 10 * np.log10(max(signal, 1e-30) / noise)
        per_output[name] = round(float(value), 3)
        worst = value if worst is None else min(worst, value)
    return (None if worst is None else round(float(worst), 3)), per_output


def sampled(outputs):
    refs, meta = {}, {}
    for name, a in outputs.items():
        flat = a.astype(np.float64).ravel()
        n = flat.size
        k = min(n, SAMPLED)
        idx = (np.arange(k, dtype=np.int64) * n) // max(k, 1)
        key = f"o{len(meta)}"
        refs[key + "_index"] = idx
        refs[key + "_value"] = flat[idx].astype(np.float32)
        meta[name] = {"key": key, "shape": list(a.shape), "sum_squares": float((flat**2).sum())}
    return refs, meta


def op_types(model: Path):
    """Every op type of the model, subgraphs (If/Loop/Scan bodies) included, sorted."""
    found = set()

    def walk(graph):
        for node in graph.node:
            found.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(onnx.load(str(model), load_external_data=False).graph)
    return sorted(found)


def float_max_rel_error(float_out, ours_path: Path):
    """The largest |ours − theirs| / max(|theirs|, 1) over every element of every float output."""
    ours = np.load(ours_path)
    worst = 0.0
    for name, theirs in float_out.items():
        if not np.issubdtype(theirs.dtype, np.floating):
            continue
        mine = ours[name]
        if mine.size != theirs.size:
            raise RuntimeError(f"output {name}: {mine.shape} from quantscope run, {theirs.shape} from onnxruntime")
        t = theirs.astype(np.float64).ravel()
        m = mine.astype(np.float64).ravel()
        worst = max(worst, float((np.abs(m - t) / np.maximum(np.abs(t), 1.0)).max(initial=0.0)))
    return worst


def lift_to_13(path: Path, out: Path) -> Path:
    model = onnx.load(path)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    if opset >= 13:
        return path
    onnx.save(onnx.version_converter.convert_version(model, 13), out)
    return out


def ort_quantize(path: Path, samples, tmp: Path):
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, feeds, names):
            self.it = iter([{k: v for k, v in f.items() if k in names} for f in feeds])

        def get_next(self):
            return next(self.it, None)

    lifted = lift_to_13(path, tmp / "lifted.onnx")
    pre = tmp / "pre.onnx"
    quant_pre_process(str(lifted), str(pre), skip_symbolic_shape=True)
    names = {i.name for i in session(pre).get_inputs()}
    out = tmp / "ort_qdq.onnx"
    quantize_static(str(pre), str(out), Reader(samples, names), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quantscope", default=str(ROOT / "target/release/quantscope"))
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"{SHARED} is missing", file=sys.stderr)
        return 1
    FIXTURES.mkdir(parents=True, exist_ok=True)
    manifest_path = FIXTURES / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    manifest["onnxruntime"] = ort.__version__
    manifest["onnx"] = onnx.__version__
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        raw = tmp / "raw_feeds"
        make_feeds(raw)
        for name, file, (kind, what) in MODELS:
            if args.only and name not in args.only:
                continue
            print(f"== {name}", flush=True)
            try:
                manifest["models"][name] = reference(name, SHARED / file, file, kind, what, raw, tmp, args)
            except subprocess.CalledProcessError as e:
                print(f"   failed: {e.stderr.decode(errors='replace').strip() if e.stderr else e}", flush=True)
                manifest["models"].pop(name, None)
            manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print_table(manifest)
    return 0


def print_table(manifest):
    """README's real-model table, from the manifest."""
    print("| model | inputs | samples | outputs | op types | float vs onnxruntime (max rel. error) "
          "| our QDQ worst-output SQNR | ours, onnxruntime's placement | onnxruntime `quantize_static` |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, _, _ in MODELS:
        e = manifest["models"].get(name)
        if e is None:
            continue
        data = e["data"]
        inputs = (f"images --preset {data[3]}" if "--preset" in data
                  else f"feed {Path(data[1]).name}")
        theirs = (f"{e['ort_sqnr_db']:.1f} dB" if e.get("ort_sqnr_db") is not None
                  else "fails: " + e.get("ort_error", "").strip())
        like = f"{e['ours_like_ort_sqnr_db']:.1f} dB"
        print(f"| `{e['model']}` | {inputs} | {e['samples']} | {len(e['outputs'])} "
              f"| {len(e.get('op_types', []))} | {e.get('float_max_rel_error', float('nan')):.1e} "
              f"| {e['ours_sqnr_db']:.1f} dB | {like} | {theirs} |")


def resolved(data_flags):
    """The data flags with their paths made absolute (the manifest keeps them relative)."""
    return [str(SHARED / "images") if f == "../shared/real_models/images"
            else str(ROOT / f) if f.startswith("tests/") else f for f in data_flags]


def reference(name, model, file, kind, what, raw, tmp, args):
    """The manifest entry of one model (its reference outputs written beside)."""
    work = tmp / name
    work.mkdir()
    if kind == "images":
        data_flags = ["--data", "../shared/real_models/images", "--preset", what]
        saved = work / "inputs.npz"
        subprocess.run([args.quantscope, "run", str(model), "--data", str(SHARED / "images"),
                        "--preset", what, "--save-inputs", str(saved)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples = samples_of(saved)
    else:
        feed = store_feed(raw, what)
        data_flags = ["--data", str(feed.relative_to(ROOT))]
        samples = samples_of(feed)
    float_out = run_all(model, samples)
    refs, meta = sampled(float_out)
    np.savez_compressed(FIXTURES / f"{name}.reference.npz", **refs)
    entry = {"model": file, "data": data_flags, "samples": len(samples), "outputs": meta}
    entry["op_types"] = op_types(model)
    ours_float = work / "ours_float.npz"
    subprocess.run([args.quantscope, "run", str(model)]
                   + resolved(data_flags)
                   + ["--out", str(ours_float)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    entry["float_max_rel_error"] = float(f"{float_max_rel_error(float_out, ours_float):.3g}")

    ours = work / "ours_qdq.onnx"
    subprocess.run([args.quantscope, "export", str(model)]
                   + resolved(data_flags)
                   + QDQ_FLAGS + ["--out", str(ours)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    entry["qdq_flags"] = QDQ_FLAGS
    entry["ours_sha256"] = hashlib.sha256(ours.read_bytes()).hexdigest()
    onnx.checker.check_model(onnx.load(ours), full_check=True)
    entry["ours_sqnr_db"], entry["ours_sqnr_per_output"] = sqnr(float_out, run_all(ours, samples))
    like_ort_flags = LIKE_ORT_FLAGS + (LIKE_ORT_RECURRENT_FLAGS
                                       if RECURRENT & set(entry["op_types"]) else [])
    like = work / "ours_like_ort.onnx"
    subprocess.run([args.quantscope, "export", str(model)]
                   + resolved(data_flags)
                   + QDQ_FLAGS + like_ort_flags + ["--out", str(like)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    onnx.checker.check_model(onnx.load(like), full_check=True)
    entry["like_ort_flags"] = like_ort_flags
    entry["ours_like_ort_sha256"] = hashlib.sha256(like.read_bytes()).hexdigest()
    entry["ours_like_ort_sqnr_db"], _ = sqnr(float_out, run_all(like, samples))
    try:
        theirs = ort_quantize(model, samples, work)
        quantizers = sum(n.op_type == "DequantizeLinear" for n in onnx.load(theirs).graph.node)
        if quantizers == 0:
            raise RuntimeError("quantize_static left every tensor in float (no DequantizeLinear "
                               "in the top graph)")
        entry["ort_sqnr_db"], entry["ort_sqnr_per_output"] = sqnr(float_out, run_all(theirs, samples))
    except Exception as e:  # recorded: the test then only needs ours to run
        entry["ort_sqnr_db"] = None
        entry["ort_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    print(f"   ours {entry['ours_sqnr_db']} dB"
          f" (onnxruntime's placement: {entry.get('ours_like_ort_sqnr_db')} dB),"
          f" onnxruntime {entry.get('ort_sqnr_db')} dB"
          f"{'  (' + entry['ort_error'] + ')' if 'ort_error' in entry else ''}", flush=True)
    return entry


if __name__ == "__main__":
    sys.exit(main())
