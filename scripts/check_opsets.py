#!/usr/bin/env python3
"""Checks Quantscope's opset lifting (src/export/opset/) with onnx.checker and onnxruntime.

Models: every conformance case (tests/fixtures/conformance), the old-opset models this script
builds into tests/fixtures/opsets/models/ (operators whose form changed and that the engine does
not run, so they cannot be conformance cases), and the real models in ../shared/real_models/.
For each model and each target opset (13 and 21; 11 too for the models built here):

  * `examples/convert_opset` lifts it (load -> upgrade_opset -> ONNX writer);
  * the lifted file must pass onnx.checker.check_model(full_check=True) and give the same outputs
    in onnxruntime as the original on the same inputs (max |lifted - original| over max |original|
    per output <= 1e-5; integer outputs equal);
  * a model Quantscope refuses to lift is recorded with its one-line error, and the models built
    here say whether a refusal is expected.

Where `quantscope export --format qdq` works on a model (int8 weights -> opset 13, int4 -> opset
21, min-max calibration on the model's inputs), the QDQ file must pass the checker and run in
onnxruntime; where the export itself fails, its error is recorded.

Writes tests/fixtures/opsets/manifest.json: per model its source opset and IR version, per
target the SHA-256 of the lifted file (tests/export_opsets.rs re-lifts and compares), the
checker result, the maximum relative error and the ops before and after, or the refusal; and
the QDQ outcomes. Exits non-zero when a check fails.

Usage: scripts/check_opsets.py [--convert PATH] [--quantscope PATH]
(build first: cargo build --release --no-default-features --example convert_opset --bin quantscope)
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "real_models"  # as the tests read it: ../shared/real_models
OPSETS = ROOT / "tests/fixtures/opsets"
TARGETS = (13, 21)
# The models built here also go to 11, the first opset of today's Resize (roi input); each only
# to the targets above its own opset.
OPSETS_TARGETS = (11, 13, 21)
TOLERANCE = 1e-5
QDQ_WEIGHTS = {"int8": 13, "int4": 21}


# ---- old-opset models for operators the engine does not run ---------------------------------

class Model:
    """One small graph in an old opset: float inputs fed with seeded normal values."""

    def __init__(self, name, opset, description, refused=False):
        self.name, self.opset, self.description, self.refused = name, opset, description, refused
        self.nodes, self.inputs, self.inits, self.outputs = [], [], [], []

    def input(self, name, shape):
        self.inputs.append(helper.make_tensor_value_info(name, TP.FLOAT, shape))
        return name

    def init(self, name, value):
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, ins, outs, **attrs):
        outs = [outs] if isinstance(outs, str) else outs
        self.nodes.append(helper.make_node(op, ins, outs, name=f"{self.name}_{len(self.nodes)}",
                                           **attrs))
        return outs[0] if len(outs) == 1 else outs

    def output(self, *names, like=None):
        """Graph outputs; `like` names an input whose type and shape they have, for operators
        shape inference does not know (the experimental ones)."""
        for n in names:
            self.outputs.append((n, like))

    def build(self):
        declared = {i.name: i for i in self.inputs}
        outputs = [helper.make_empty_tensor_value_info(o) if like is None else
                   helper.make_value_info(o, declared[like].type) for o, like in self.outputs]
        graph = helper.make_graph(self.nodes, self.name, self.inputs, outputs,
                                  initializer=self.inits)
        opsets = [helper.make_opsetid("", self.opset)]
        ir = max(4, helper.find_min_ir_version_for(opsets))
        model = helper.make_model(graph, opset_imports=opsets, ir_version=ir,
                                  producer_name="quantscope-check-opsets")
        model.doc_string = self.description
        # Declare output types and shapes as exporters do (the checker requires them).
        inferred = {o.name: o for o in onnx.shape_inference.infer_shapes(model).graph.output}
        for out in model.graph.output:
            if not out.type.HasField("tensor_type") and out.name in inferred:
                out.CopyFrom(inferred[out.name])
        return model


def f32(v):
    return np.asarray(v, dtype=np.float32)


def i64(v):
    return np.asarray(v, dtype=np.int64)


def old_opset_models():
    rng = np.random.default_rng(11)

    m = Model("upsample_v9_linear_nchw", 9, "Upsample-9 linear, scales [1,1,2.5,3] (as DeepLab)")
    m.output(m.node("Upsample", [m.input("X", [1, 2, 5, 4]), m.init("S", f32([1, 1, 2.5, 3]))],
                    "Y", mode="linear"))
    yield m

    m = Model("upsample_v9_linear_nhwc", 9, "Upsample-9 linear on NHWC, scales [1,2,3,1]")
    m.output(m.node("Upsample", [m.input("X", [1, 4, 5, 2]), m.init("S", f32([1, 2, 3, 1]))],
                    "Y", mode="linear"))
    yield m

    m = Model("upsample_v9_fractional_scale", 9,
              "Upsample-9 linear, scales [1,1,7.787879,7.787879] (as DeepLab's last layer)")
    m.output(m.node("Upsample", [m.input("X", [1, 3, 5, 5]),
                                 m.init("S", f32([1, 1, 7.787879, 7.787879]))], "Y", mode="linear"))
    yield m

    m = Model("upsample_v7_linear_attr", 7, "Upsample-7 linear, scales [1,1,2,2] as attribute")
    m.output(m.node("Upsample", [m.input("X", [2, 3, 3, 4])], "Y", mode="linear",
                    scales=[1.0, 1.0, 2.0, 2.0]))
    yield m

    m = Model("upsample_v9_computed_scales", 9,
              "Upsample-9 nearest whose scales come from a node (always >= 1, so floor)")
    s = m.node("Identity", [m.init("S0", f32([1, 1, 2, 3]))], "S")
    m.output(m.node("Upsample", [m.input("X", [1, 2, 3, 3]), s], "Y", mode="nearest"))
    yield m

    m = Model("resize_v10_linear_downsample", 10, "Resize-10 linear, scales [1,1,0.5,0.75]")
    m.output(m.node("Resize", [m.input("X", [1, 2, 6, 8]), m.init("S", f32([1, 1, 0.5, 0.75]))],
                    "Y", mode="linear"))
    yield m

    m = Model("resize_v10_linear_computed_scales", 10,
              "Resize-10 linear with scales from a node (no rounding to choose)")
    s = m.node("Identity", [m.init("S0", f32([1, 1, 1.5, 2]))], "S")
    m.output(m.node("Resize", [m.input("X", [1, 2, 4, 4]), s], "Y", mode="linear"))
    yield m

    m = Model("resize_v10_nearest_mixed", 10,
              "Resize-10 nearest enlarging one axis and shrinking another: refused",
              refused=True)
    m.output(m.node("Resize", [m.input("X", [1, 2, 4, 6]), m.init("S", f32([1, 1, 2, 0.5]))],
                    "Y", mode="nearest"))
    yield m

    m = Model("resize_v10_nearest_computed_scales", 10,
              "Resize-10 nearest with scales from a node: the rounding cannot be chosen, refused",
              refused=True)
    s = m.node("Identity", [m.init("S0", f32([1, 1, 2, 2]))], "S")
    m.output(m.node("Resize", [m.input("X", [1, 2, 3, 3]), s], "Y", mode="nearest"))
    yield m

    for rounding, refused in (("floor", False), ("round_prefer_floor", False), ("ceil", True)):
        for tag, scales in (("up", [1, 1, 1.7, 2.3]), ("down", [1, 1, 0.6, 0.7])):
            m = Model(f"resize_v11_tf_half_pixel_{rounding}_{tag}", 11,
                      f"Resize-11 nearest, tf_half_pixel_for_nn (removed at 13), {rounding}, "
                      f"scales {scales}", refused=refused)
            m.output(m.node("Resize", [m.input("X", [1, 2, 5, 7]), m.init("ROI", f32([])),
                                       m.init("S", f32(scales))], "Y", mode="nearest",
                            coordinate_transformation_mode="tf_half_pixel_for_nn",
                            nearest_mode=rounding))
            yield m

    m = Model("resize_v11_linear_align_corners_sizes", 11,
              "Resize-11 linear align_corners to sizes [1,2,7,5] (roi input kept)")
    m.output(m.node("Resize", [m.input("X", [1, 2, 4, 3]), m.init("ROI", f32([])),
                               m.init("S", f32([])), m.init("SIZES", i64([1, 2, 7, 5]))], "Y",
                    mode="linear", coordinate_transformation_mode="align_corners"))
    yield m

    m = Model("topk_v1_k_attr", 9, "TopK-1 k=3 on axis 1 (k becomes an input at 10)")
    m.output(*m.node("TopK", [m.input("X", [2, 6])], ["V", "I"], k=3, axis=1))
    yield m

    m = Model("topk_v10_k_input", 10, "TopK-10 with K input (largest/sorted default at 11)")
    m.output(*m.node("TopK", [m.input("X", [3, 5]), m.init("K", i64([2]))], ["V", "I"], axis=-1))
    yield m

    for op in ("Softmax", "LogSoftmax", "Hardmax"):
        low = op.lower()
        m = Model(f"{low}_v11_axis1_3d", 11, f"{op}-11 axis=1 on [2,3,4]: over the trailing axes")
        m.output(m.node(op, [m.input("X", [2, 3, 4])], "Y", axis=1))
        yield m

    m = Model("softmax_v11_axis0", 11, "Softmax-11 axis=0 on [3,4]: over everything")
    m.output(m.node("Softmax", [m.input("X", [3, 4])], "Y", axis=0))
    yield m

    m = Model("softmax_v11_unknown_rank", 11,
              "Softmax-11 default axis after a Reshape to a computed shape (rank unknown)")
    x = m.input("X", [2, 3, 4])
    r = m.node("Reshape", [x, m.node("Shape", [x], "SH")], "R")
    m.output(m.node("Softmax", [r], "Y"), like="X")
    yield m

    m = Model("logsoftmax_v11_axis_neg2", 11, "LogSoftmax-11 axis=-2 on [2,3,4]")
    m.output(m.node("LogSoftmax", [m.input("X", [2, 3, 4])], "Y", axis=-2))
    yield m

    m = Model("scatter_v9", 9, "Scatter-9 axis=1 (becomes ScatterElements at 11)")
    m.output(m.node("Scatter", [m.input("X", [3, 4]), m.init("IDX", i64([[1, 3], [0, 2], [3, 0]])),
                                m.init("UPD", f32(rng.standard_normal((3, 2))))], "Y", axis=1))
    yield m

    m = Model("imagescaler_v8", 8, "ImageScaler (experimental, removed at 10): 0.5*x + bias[c]")
    m.output(m.node("ImageScaler", [m.input("X", [2, 3, 4, 4])], "Y", scale=0.5,
                    bias=[1.0, -2.0, 3.0]), like="X")
    yield m

    m = Model("experimental_elementwise_v8", 8,
              "Scale, Affine, ScaledTanh, ParametricSoftplus (experimental, removed at 10)")
    x = m.input("X", [2, 3, 4])
    m.output(m.node("Scale", [x], "Y0", scale=-1.5),
             m.node("Affine", [x], "Y1", alpha=0.5, beta=2.0),
             m.node("ScaledTanh", [x], "Y2", alpha=2.0, beta=0.7),
             m.node("ParametricSoftplus", [x], "Y3", alpha=1.5, beta=0.8), like="X")
    yield m

    m = Model("crop_v8", 8, "Crop (experimental, removed at 10): refused", refused=True)
    m.output(m.node("Crop", [m.input("X", [1, 2, 6, 6])], "Y", border=[1, 1, 2, 2]))
    yield m

    m = Model("mvn_v8", 8, "MeanVarianceNormalization-1 across_channels 0 and 1 (axes at 9)")
    x = m.input("X", [2, 3, 4, 4])
    m.output(m.node("MeanVarianceNormalization", [x], "Y0", across_channels=0),
             m.node("MeanVarianceNormalization", [x], "Y1", across_channels=1), like="X")
    yield m

    m = Model("batchnorm_v7_spatial0", 7,
              "BatchNormalization-7 spatial=0 (removed at 9): refused", refused=True)
    x = m.input("X", [2, 3, 2, 2])
    params = [m.init(n, f32(rng.uniform(0.5, 1.5, (3, 2, 2)))) for n in ("S", "B", "M", "V")]
    m.output(m.node("BatchNormalization", [x, *params], "Y", spatial=0))
    yield m

    m = Model("dropout_v7_mask_read", 7,
              "Dropout-7 whose mask (type T, bool from 10) is a graph output: refused",
              refused=True)
    m.output(*m.node("Dropout", [m.input("X", [2, 5])], ["Y", "MASK"], ratio=0.2))
    yield m

    m = Model("dropout_v7_mask_unread", 7, "Dropout-7 with an unread mask output (dropped)")
    y, _ = m.node("Dropout", [m.input("X", [2, 5])], ["D", "MASK"], ratio=0.2)
    m.output(m.node("Relu", [y], "Y"))
    yield m

    m = Model("groupnorm_v18", 18, "GroupNormalization-18, 3 groups of 2 channels: scale/bias "
              "per group, per channel from 21")
    m.output(m.node("GroupNormalization", [m.input("X", [2, 6, 3, 3]),
                                           m.init("SCALE", f32([0.5, 1.5, 2.0])),
                                           m.init("BIAS", f32([0.1, -0.2, 0.3]))], "Y",
                    num_groups=3, epsilon=1e-5), like="X")
    yield m

    m = Model("dft_v17_axis_attr", 17, "DFT-17 on axis 1 of [2,8,2] (axis an input at 20, "
              "default changed to -2)")
    m.output(m.node("DFT", [m.input("X", [2, 8, 2])], "Y", axis=1))
    yield m

    for mode in ("bilinear", "bicubic", "nearest"):
        m = Model(f"gridsample_v16_{mode}", 16, f"GridSample-16 mode {mode} (renamed at 20)")
        grid = f32(rng.uniform(-1, 1, (1, 3, 3, 2)))
        m.output(m.node("GridSample", [m.input("X", [1, 2, 4, 4]), m.init("G", grid)], "Y",
                        mode=mode, align_corners=0))
        yield m

    m = Model("roialign_v10", 10, "RoiAlign-10 (output_half_pixel before 16)")
    m.output(m.node("RoiAlign", [m.input("X", [1, 2, 8, 8]),
                                 m.init("ROIS", f32([[0, 0, 4, 4], [1, 1.5, 6, 7]])),
                                 m.init("BI", i64([0, 0]))], "Y", output_height=2,
                    output_width=3, sampling_ratio=2, spatial_scale=1.0))
    yield m

    m = Model("pad_v2_edge", 7, "Pad-2 edge mode (pads an input at 11)")
    m.output(m.node("Pad", [m.input("X", [1, 2, 3, 3])], "Y", mode="edge",
                    pads=[0, 0, 1, 2, 0, 0, 2, 1]))
    yield m

    m = Model("unchanged_v7_family", 7,
              "Operators whose later versions only add defaults that keep the old behaviour: "
              "Gemm-7, ArgMax-1, Cast-6, LRN-1, InstanceNormalization-6, PRelu-7, AveragePool-7, "
              "MaxPool-1, Concat-4, Transpose-1, Flatten-1")
    x = m.input("X", [2, 3, 4, 4])
    a = m.node("ArgMax", [x], "AM", axis=1, keepdims=0)
    m.output(m.node("Cast", [a], "AMF", to=TP.FLOAT))
    m.output(m.node("LRN", [x], "L", size=3))
    m.output(m.node("InstanceNormalization",
                    [x, m.init("IS", f32([1, 2, 3])), m.init("IB", f32([0, 1, 0]))], "IN"))
    m.output(m.node("PRelu", [x, m.init("SL", f32([[[0.1]], [[0.2]], [[0.3]]]))], "P"))
    m.output(m.node("AveragePool", [x], "AP", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                    count_include_pad=1))
    mp = m.node("MaxPool", [x], "MP", kernel_shape=[2, 2], strides=[2, 2])
    f = m.node("Flatten", [m.node("Transpose", [mp], "T", perm=[0, 2, 3, 1])], "F", axis=1)
    m.output(m.node("Gemm", [f, m.init("W", f32(rng.standard_normal((12, 5)))),
                             m.init("C", f32(rng.standard_normal(5)))], "G", transB=0))
    yield m

    m = Model("maxpool_v8_indices", 8, "MaxPool-8 with its Indices output")
    m.output(*m.node("MaxPool", [m.input("X", [1, 2, 4, 4])], ["Y", "IDX"],
                     kernel_shape=[2, 2], strides=[2, 2]))
    yield m

    m = Model("recurrent_v7", 7, "LSTM-7 and GRU-7 (layout attribute added at 14, default 0)")
    x = m.input("X", [4, 2, 3])
    lstm = m.node("LSTM", [x, m.init("LW", f32(rng.standard_normal((1, 20, 3)) * 0.5)),
                           m.init("LR", f32(rng.standard_normal((1, 20, 5)) * 0.5))],
                  ["LY", "LH", "LC"], hidden_size=5)
    gru = m.node("GRU", [x, m.init("GW", f32(rng.standard_normal((1, 15, 3)) * 0.5)),
                         m.init("GR", f32(rng.standard_normal((1, 15, 5)) * 0.5))],
                 ["GY", "GH"], hidden_size=5, linear_before_reset=1)
    m.output(lstm[0], lstm[1], gru[0])
    yield m

    m = Model("mod_v10_fmod", 10, "Mod-10 fmod=1 on floats")
    m.output(m.node("Mod", [m.input("X", [3, 4]), m.init("D", f32([0.7, -1.3, 2.0, 0.9]))],
                    "Y", fmod=1))
    yield m


def write_old_opset_models():
    """Builds the models into tests/fixtures/opsets/models/; returns {name: Model}."""
    out = OPSETS / "models"
    out.mkdir(parents=True, exist_ok=True)
    built = {}
    for m in old_opset_models():
        onnx.save_model(m.build(), str(out / f"{m.name}.onnx"))
        built[m.name] = m
    return built


# ---- running and comparing -------------------------------------------------------------------

def session(path, optimize=False):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
             "tensor(float16)": np.float16, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def seeded_feeds(path, name):
    """Normal values for every input of the model at `path`, seeded by the model's name."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    feeds = {}
    for i in session(path).get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = rng.standard_normal(shape).astype(ORT_TYPES[i.type])
    return feeds


def max_relative_error(reference, lifted):
    """Largest |lifted - reference| over max |reference|, across outputs; inf on a mismatch of
    shape, dtype or an integer value."""
    worst = 0.0
    for ref, got in zip(reference, lifted):
        if ref.shape != got.shape or ref.dtype != got.dtype:
            return float("inf")
        if not np.issubdtype(ref.dtype, np.floating):
            if not np.array_equal(ref, got):
                return float("inf")
            continue
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        diff = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst


def first_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def ops_of(proto):
    return sorted({n.op_type for n in proto.graph.node})


def default_opset(proto):
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def lift(convert, src, target, out):
    """Runs convert_opset; returns None on success or its one-line error."""
    done = subprocess.run([convert, str(src), str(target), str(out)], capture_output=True,
                          text=True)
    if done.returncode == 0:
        return None
    return first_line(done.stderr).removeprefix("error: ")


def checker_error(proto):
    """onnx.checker's complaint about `proto` (full check), or None."""
    try:
        onnx.checker.check_model(proto, full_check=True)
        return None
    except Exception as e:  # the checker raises several exception types
        return first_line(str(e))


def check_lift(convert, src, target, feeds, reference, tmp, original_error):
    out = Path(tmp) / f"lifted_{target}.onnx"
    refusal = lift(convert, src, target, out)
    if refusal is not None:
        return {"refused": refusal}, []
    problems = []
    proto = onnx.load(str(out))
    entry = {
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "opset": default_opset(proto),
        "ir_version": proto.ir_version,
        "ops": ops_of(proto),
    }
    error = checker_error(proto)
    entry["checker"] = error is None
    if error is not None:
        entry["checker_error"] = error
        # A file already at the target is only rewritten; its own faults are not the lift's.
        if original_error is None:
            problems.append(f"lifted to {target}: onnx.checker: {error}")
    try:
        got = session(out).run(None, feeds)
        err = max_relative_error(reference, got)
        entry["max_rel_error"] = err
        if not err <= TOLERANCE:
            problems.append(f"lifted to {target}: max relative error {err:.3g} > {TOLERANCE}")
    except Exception as e:
        entry["max_rel_error"] = None
        problems.append(f"lifted to {target}: onnxruntime: {first_line(str(e))}")
    return entry, problems


def check_qdq(quantscope, src, data, weights, tmp):
    out = Path(tmp) / f"qdq_{weights}.onnx"
    done = subprocess.run([quantscope, "export", str(src), "--data", str(data), "--format", "qdq",
                           "--weights", weights, "--calib", "minmax", "--out", str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        # The data file's temporary path would make the manifest differ on every run.
        message = first_line(done.stderr).replace(str(data), "DATA.npz")
        return {"export": "failed", "message": message}, []
    problems = []
    proto = onnx.load(str(out))
    entry = {"export": "ok", "opset": default_opset(proto), "ir_version": proto.ir_version,
             "quantize_linear_nodes": sum(n.op_type == "QuantizeLinear" for n in proto.graph.node)}
    try:
        onnx.checker.check_model(proto, full_check=True)
        entry["checker"] = True
    except Exception as e:
        entry["checker"] = False
        problems.append(f"QDQ {weights}: onnx.checker: {first_line(str(e))}")
    try:
        feeds = dict(np.load(data))
        session(out, optimize=True).run(None, feeds)
        entry["runs"] = True
    except Exception as e:
        entry["runs"] = False
        problems.append(f"QDQ {weights}: onnxruntime: {first_line(str(e))}")
    return entry, problems


def check_model(args, key, src, feeds, tmp, targets, expect_refused=None):
    proto = onnx.load(str(src))
    original_error = checker_error(proto)
    entry = {"opset": default_opset(proto), "ir_version": proto.ir_version, "ops": ops_of(proto),
             "checker": original_error is None, "lift": {}, "qdq": {}}
    problems = []
    try:
        reference = session(src).run(None, feeds) if not expect_refused else None
    except ort.capi.onnxruntime_pybind11_state.Fail as e:
        # onnxruntime cannot run the original itself (batchwise LSTM/GRU/RNN, layout 1): no
        # reference to compare a lifted file with; the conformance fixture has its own
        print(f"{key}: skipped, onnxruntime cannot run the original ({str(e).splitlines()[0][:120]})")
        return None, []
    for target in targets:
        lifted, found = check_lift(args.convert, src, target, feeds, reference, tmp,
                                   original_error) \
            if reference is not None else _refusal_only(args.convert, src, target, tmp)
        entry["lift"][str(target)] = lifted
        problems += found
        if expect_refused is not None and ("refused" in lifted) != expect_refused:
            problems.append(f"lift to {target}: expected {'a refusal' if expect_refused else 'success'}"
                            f", got {lifted.get('refused', 'success')}")
    data = Path(tmp) / "data.npz"
    np.savez(data, **feeds)
    for weights in QDQ_WEIGHTS if not expect_refused else ():
        qdq, found = check_qdq(args.quantscope, src, data, weights, tmp)
        entry["qdq"][weights] = qdq
        problems += found
    status = "; ".join(problems) if problems else "ok"
    lifts = ", ".join(f"{t}: " + ("refused" if "refused" in e else f"{e['max_rel_error']:.1e}")
                      for t, e in entry["lift"].items())
    qdqs = ", ".join(f"{w}: {e['export']}" for w, e in entry["qdq"].items())
    print(f"{key:<58} opset {entry['opset']:>2}  lift {lifts}  qdq {qdqs}  {status}")
    return entry, [f"{key}: {p}" for p in problems]


def _refusal_only(convert, src, target, tmp):
    refusal = lift(convert, src, target, Path(tmp) / "refused.onnx")
    if refusal is None:
        return {"refused": None}, [f"lifted to {target} although a refusal was expected"]
    return {"refused": refusal}, []


def real_models(folder):
    """(key, model path, feeds) for each real model, with the first sample of make_feeds.py."""
    if not folder.is_dir():
        print(f"{folder} is absent: real models not checked", file=sys.stderr)
        return []
    sys.path.insert(0, str(folder))
    import make_feeds  # noqa: E402  (the real models' own feed builder)
    feeds_dir = Path(tempfile.mkdtemp(prefix="opset_feeds_"))
    make_feeds.OUT = str(feeds_dir)
    make_feeds.main()
    found = []
    for path in sorted(folder.glob("*/*.onnx")):
        stem = path.stem
        if (feeds_dir / f"{stem}.npz").exists():
            z = np.load(feeds_dir / f"{stem}.npz")
            feeds = {k: z[k][:1] for k in z.files}
        else:
            z = np.load(sorted((feeds_dir / stem).glob("*.npz"))[0])
            feeds = {k: z[k] for k in z.files}
        found.append((f"real/{path.parent.name}/{stem}", path.relative_to(folder), feeds))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convert", default=str(ROOT / "target/release/examples/convert_opset"))
    parser.add_argument("--quantscope", default=str(ROOT / "target/release/quantscope"))
    parser.add_argument("--real-models", type=Path, default=REAL,
                        help="the real models folder (default ../shared/real_models, as the "
                             "tests read it; give it when the checkout is not beside shared/)")
    args = parser.parse_args()
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    built = write_old_opset_models()
    manifest = {"onnx": onnx.__version__, "onnxruntime": ort.__version__,
                "tolerance": TOLERANCE, "models": {}}
    failures = []

    def run(key, path, feeds, expect_refused=None, description=None, recorded_path=None,
            targets=TARGETS):
        with tempfile.TemporaryDirectory() as tmp:
            entry, problems = check_model(args, key, path, feeds, tmp, targets, expect_refused)
        if entry is None:
            return
        rel = recorded_path or os.path.relpath(path, ROOT)
        entry = {"path": rel, **({"description": description} if description else {}), **entry}
        manifest["models"][key] = entry
        failures.extend(problems)

    conformance = ROOT / "tests/fixtures/conformance"
    for case in json.loads((conformance / "manifest.json").read_text()):
        name = case["case"]
        feeds = dict(np.load(conformance / f"{name}.inputs.npz"))
        run(f"conformance/{name}", conformance / f"{name}.onnx", feeds, expect_refused=False)
    for name, m in built.items():
        path = OPSETS / "models" / f"{name}.onnx"
        feeds = seeded_feeds(path, name) if not m.refused else {}
        run(f"opsets/{name}", path, feeds, expect_refused=m.refused, description=m.description,
            targets=[t for t in OPSETS_TARGETS if t > m.opset])
    for key, rel, feeds in real_models(args.real_models):
        run(key, args.real_models / rel, feeds, recorded_path=f"../shared/real_models/{rel}")

    (OPSETS / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    lifted = sum("sha256" in e for m in manifest["models"].values() for e in m["lift"].values())
    refused = sum("refused" in e for m in manifest["models"].values() for e in m["lift"].values())
    print(f"{len(manifest['models'])} models: {lifted} lifted files checked, {refused} refusals")
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
