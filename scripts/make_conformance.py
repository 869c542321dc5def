#!/usr/bin/env python3
"""Build op-conformance ONNX fixtures with onnxruntime reference outputs.

Usage:
    python scripts/make_conformance.py [OUTDIR]

OUTDIR defaults to tests/fixtures/conformance (relative to the repo root).

For every case this writes
    <case>.onnx           the model (plus <case>.data for the external-data case)
    <case>.inputs.npz     one array per graph input that is not an initializer
    <case>.outputs.npz    one array per graph output, in the dtype ORT returned
and finally manifest.json, a list of
    {"case", "kind": "op"|"loader", "opset", "ir_version", "ops", "inputs",
     "outputs", "description"}

Reference outputs come from onnxruntime's CPUExecutionProvider with all graph
optimizations disabled, so the ops are computed as written (a form onnxruntime
lacks, such as recurrent layout=1, takes its reference from an equivalent model
onnxruntime runs).  Every model passes onnx.checker.check_model(full_check=True).
Inputs are generated from np.random.default_rng(0), consumed in case order, so the
output is deterministic; the later operator families' cases live in
scripts/conformance_ops.py, each family with its own generator.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

RNG = np.random.default_rng(0)
F = TP.FLOAT
I64 = TP.INT64


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def uniform(lo, hi, *shape):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def i64(values):
    return np.asarray(values, dtype=np.int64)


def f32(values):
    return np.asarray(values, dtype=np.float32)


class Case:
    """Incrementally describes one conformance model."""

    def __init__(self, name, opset, description, kind="op", ir_version=None):
        self.name = name
        self.opset = opset
        self.description = description
        self.kind = kind
        self.ir_version = ir_version
        self.nodes = []
        self.inputs = []  # ValueInfoProto
        self.feeds = {}  # name -> ndarray (non-initializer inputs only)
        self.inits = []  # TensorProto
        self.outputs = []  # names
        self.output_shapes = {}  # name -> declared dims, for what inference cannot derive
        self.output_types = {}  # name -> (elem type, dims), for outputs inference cannot type
        self.reference = None  # feeds -> outputs, when onnxruntime cannot run the model itself
        self.inits_as_inputs = False
        self.external_data = False

    # -- graph construction -------------------------------------------------
    def input(self, name, value, shape=None):
        """Graph input fed with `value`; `shape` may override (symbolic dims)."""
        value = np.asarray(value)
        elem = helper.np_dtype_to_tensor_dtype(value.dtype)
        dims = list(value.shape) if shape is None else shape
        self.inputs.append(helper.make_tensor_value_info(name, elem, dims))
        self.feeds[name] = value
        return name

    def init(self, name, value):
        """Initializer stored as raw_data."""
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def init_tensor(self, tensor):
        """Initializer given as a ready TensorProto (e.g. typed fields)."""
        self.inits.append(tensor)
        return tensor.name

    def node(self, op, ins, outs, **attrs):
        if isinstance(outs, str):
            outs = [outs]
        name = f"n{len(self.nodes)}_{op.lower()}"
        self.nodes.append(helper.make_node(op, ins, outs, name=name, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def output(self, *names):
        self.outputs.extend(names)

    # -- model ----------------------------------------------------------------
    def build(self):
        graph_inputs = list(self.inputs)
        if self.inits_as_inputs:
            for t in self.inits:
                graph_inputs.append(
                    helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                )
        graph = helper.make_graph(
            self.nodes,
            self.name,
            graph_inputs,
            [helper.make_empty_tensor_value_info(o) for o in self.outputs],
            initializer=self.inits,
        )
        opsets = [helper.make_opsetid("", self.opset)]
        ir = self.ir_version
        if ir is None:
            ir = max(4, helper.find_min_ir_version_for(opsets))
        model = helper.make_model(
            graph,
            opset_imports=opsets,
            ir_version=ir,
            producer_name="quantscope-conformance",
        )
        # Fill in output types/shapes from ONNX shape inference.
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        for out in inferred.graph.output:
            if out.name in self.output_types:
                out.CopyFrom(helper.make_tensor_value_info(out.name, *self.output_types[out.name]))
                continue
            if not out.type.HasField("tensor_type"):
                raise RuntimeError(f"{self.name}: could not infer type of {out.name}")
            if out.name in self.output_shapes:
                declared = helper.make_tensor_value_info(
                    out.name, out.type.tensor_type.elem_type, self.output_shapes[out.name]
                )
                out.CopyFrom(declared)
            elif not out.type.tensor_type.HasField("shape"):
                raise RuntimeError(f"{self.name}: could not infer shape of {out.name}")
        del model.graph.output[:]
        model.graph.output.extend(inferred.graph.output)
        onnx.checker.check_model(model, full_check=True)
        return model


def ops_of(model):
    seen = []
    for n in model.graph.node:
        if n.op_type not in seen:
            seen.append(n.op_type)
    return seen


def run_ort(path, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    results = sess.run(names, feeds)
    return dict(zip(names, results))


def emit(case: Case, outdir: Path):
    model = case.build()
    path = outdir / f"{case.name}.onnx"
    if case.external_data:
        data_name = f"{case.name}.data"
        if (outdir / data_name).exists():
            (outdir / data_name).unlink()
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=0,
        )
        # Path-based check validates the external-data references; the
        # reloaded model (external data read back in) gets the full check.
        onnx.checker.check_model(str(path))
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    else:
        onnx.save_model(model, str(path))
    if case.reference is not None:
        # onnxruntime lacks this form (e.g. recurrent layout=1): an equivalent model it runs
        # gives the reference
        outputs = case.reference(case.feeds)
    else:
        outputs = run_ort(path, case.feeds)
    for k, v in outputs.items():
        if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
            raise RuntimeError(f"{case.name}: non-finite reference output {k}")
    np.savez(outdir / f"{case.name}.inputs.npz", **case.feeds)
    np.savez(outdir / f"{case.name}.outputs.npz", **outputs)
    return {
        "case": case.name,
        "kind": case.kind,
        "opset": case.opset,
        "ir_version": model.ir_version,
        "ops": ops_of(model),
        "inputs": list(case.feeds.keys()),
        "outputs": list(outputs.keys()),
        "description": case.description,
    }


# ---------------------------------------------------------------------------
# Case definitions.  Each function yields Case objects.
# ---------------------------------------------------------------------------


def conv_cases():
    c = Case("conv_pads_strides_dilations", 11,
             "2D Conv, asymmetric pads [1,0,2,1], strides [2,1], dilations [1,2], with bias")
    x = c.input("X", randn(1, 3, 9, 8))
    w = c.init("W", randn(4, 3, 3, 3))
    b = c.init("B", randn(4))
    c.output(c.node("Conv", [x, w, b], "Y", pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2]))
    yield c

    c = Case("conv_groups2", 13, "2D Conv with group=2 (C=4, M=6), pads 1, no bias")
    x = c.input("X", randn(2, 4, 6, 6))
    w = c.init("W", randn(6, 2, 3, 3))
    c.output(c.node("Conv", [x, w], "Y", group=2, pads=[1, 1, 1, 1]))
    yield c

    c = Case("conv_depthwise", 13, "depthwise 2D Conv (group=C=5, M=5), stride 2, pads 1, bias")
    x = c.input("X", randn(1, 5, 7, 7))
    w = c.init("W", randn(5, 1, 3, 3))
    b = c.init("B", randn(5))
    c.output(c.node("Conv", [x, w, b], "Y", group=5, pads=[1, 1, 1, 1], strides=[2, 2]))
    yield c

    c = Case("conv_depthwise_multiplier", 11, "depthwise Conv with channel multiplier 2 (group=3, M=6)")
    x = c.input("X", randn(1, 3, 5, 5))
    w = c.init("W", randn(6, 1, 3, 3))
    c.output(c.node("Conv", [x, w], "Y", group=3))
    yield c

    for mode, opset in (("SAME_UPPER", 7), ("SAME_LOWER", 11), ("VALID", 13)):
        c = Case(f"conv_autopad_{mode.lower()}", opset,
                 f"2D Conv auto_pad={mode}, kernel [3,4], strides 2, odd/even spatial dims, bias")
        x = c.input("X", randn(1, 2, 7, 8))
        w = c.init("W", randn(3, 2, 3, 4))
        b = c.init("B", randn(3))
        c.output(c.node("Conv", [x, w, b], "Y", auto_pad=mode, strides=[2, 2]))
        yield c

    c = Case("conv_1d", 13, "1D Conv, pads [2,1], stride 2, dilation 2, bias")
    x = c.input("X", randn(2, 3, 11))
    w = c.init("W", randn(4, 3, 3))
    b = c.init("B", randn(4))
    c.output(c.node("Conv", [x, w, b], "Y", pads=[2, 1], strides=[2], dilations=[2]))
    yield c

    c = Case("conv_1x1", 13, "1x1 Conv (pointwise), no bias, no attributes")
    x = c.input("X", randn(2, 6, 4, 5))
    w = c.init("W", randn(3, 6, 1, 1))
    c.output(c.node("Conv", [x, w], "Y"))
    yield c

    c = Case("conv_v21_kernel_shape_attr", 21, "2D Conv at opset 21 with explicit kernel_shape and bias")
    x = c.input("X", randn(1, 3, 6, 6))
    w = c.init("W", randn(2, 3, 2, 2))
    b = c.init("B", randn(2))
    c.output(c.node("Conv", [x, w, b], "Y", kernel_shape=[2, 2], strides=[2, 2]))
    yield c


def conv_transpose_cases():
    c = Case("convtranspose_stride2_pads_outpad", 11,
             "ConvTranspose stride 2, pads [1,1,1,1], output_padding [1,0], bias")
    x = c.input("X", randn(1, 3, 4, 5))
    w = c.init("W", randn(3, 2, 3, 3))
    b = c.init("B", randn(2))
    c.output(c.node("ConvTranspose", [x, w, b], "Y", strides=[2, 2], pads=[1, 1, 1, 1],
                    output_padding=[1, 0]))
    yield c

    c = Case("convtranspose_groups", 13, "ConvTranspose group=2 (C=4, M=6), stride 1, no bias")
    x = c.input("X", randn(1, 4, 3, 3))
    w = c.init("W", randn(4, 3, 3, 3))
    c.output(c.node("ConvTranspose", [x, w], "Y", group=2))
    yield c

    c = Case("convtranspose_output_shape", 13,
             "ConvTranspose stride 2 with output_shape [7,9] (even total padding 2 per axis), bias")
    x = c.input("X", randn(1, 2, 4, 5))
    w = c.init("W", randn(2, 3, 3, 3))
    b = c.init("B", randn(3))
    c.output(c.node("ConvTranspose", [x, w, b], "Y", strides=[2, 2], output_shape=[7, 9]))
    yield c

    c = Case("convtranspose_dilation", 17, "ConvTranspose dilations [2,2], stride 1, no pads")
    x = c.input("X", randn(1, 2, 3, 4))
    w = c.init("W", randn(2, 2, 3, 3))
    c.output(c.node("ConvTranspose", [x, w], "Y", dilations=[2, 2]))
    yield c

    c = Case("convtranspose_1d", 11, "1D ConvTranspose stride 3, pads [1,0], bias")
    x = c.input("X", randn(2, 3, 5))
    w = c.init("W", randn(3, 2, 4))
    b = c.init("B", randn(2))
    c.output(c.node("ConvTranspose", [x, w, b], "Y", strides=[3], pads=[1, 0]))
    yield c


def gemm_cases():
    c = Case("gemm_v7_vector_c", 7, "Gemm opset 7, C vector [N] broadcast, alpha=0.5 beta=2")
    a = c.input("A", randn(3, 4))
    bm = c.init("B", randn(4, 5))
    cc = c.init("C", randn(5))
    c.output(c.node("Gemm", [a, bm, cc], "Y", alpha=0.5, beta=2.0))
    yield c

    c = Case("gemm_v7_transa_transb_scalar_c", 7, "Gemm opset 7, transA=1 transB=1, C scalar [1]")
    a = c.input("A", randn(4, 3))
    bm = c.init("B", randn(5, 4))
    cc = c.init("C", f32([0.75]))
    c.output(c.node("Gemm", [a, bm, cc], "Y", transA=1, transB=1))
    yield c

    c = Case("gemm_v13_transb_matrix_c", 13, "Gemm opset 13, transB=1, C full matrix [M,N], beta=-1")
    a = c.input("A", randn(3, 6))
    bm = c.init("B", randn(4, 6))
    cc = c.init("C", randn(3, 4))
    c.output(c.node("Gemm", [a, bm, cc], "Y", transB=1, beta=-1.0))
    yield c

    c = Case("gemm_v13_column_c", 13, "Gemm opset 13, transA=1, C column [M,1] broadcast, alpha=1.5")
    a = c.input("A", randn(5, 2))
    bm = c.init("B", randn(5, 3))
    cc = c.init("C", randn(2, 1))
    c.output(c.node("Gemm", [a, bm, cc], "Y", transA=1, alpha=1.5))
    yield c

    c = Case("gemm_v13_no_c", 13, "Gemm opset 13 without C (optional since 11), transB=1")
    a = c.input("A", randn(2, 7))
    bm = c.init("B", randn(3, 7))
    c.output(c.node("Gemm", [a, bm], "Y", transB=1))
    yield c

    c = Case("gemm_v13_scalar_c_rank0", 13, "Gemm opset 13, C rank-0 scalar, both operands inputs")
    a = c.input("A", randn(3, 4))
    bm = c.input("B", randn(4, 2))
    cc = c.init("C", np.float32(-0.25))
    c.output(c.node("Gemm", [a, bm, cc], "Y", beta=3.0))
    yield c


def matmul_cases():
    specs = [
        ("matmul_2d", 13, (3, 4), (4, 5), "2D x 2D"),
        ("matmul_batched_3d", 13, (2, 3, 4), (2, 4, 5), "batched 3D x 3D"),
        ("matmul_broadcast_4d_3d", 13, (2, 1, 3, 4), (5, 4, 6), "[2,1,3,4] x [5,4,6] batch broadcast"),
        ("matmul_1d_2d", 9, (4,), (4, 3), "1D x 2D (vector-matrix, result rank 1)"),
        ("matmul_2d_1d", 9, (3, 4), (4,), "2D x 1D (matrix-vector, result rank 1)"),
        ("matmul_3d_2d_weight", 13, (2, 3, 4), (4, 5), "3D input x 2D initializer weight"),
    ]
    for name, opset, sa, sb, desc in specs:
        c = Case(name, opset, f"MatMul {desc}")
        a = c.input("A", randn(*sa))
        if name == "matmul_3d_2d_weight":
            bm = c.init("B", randn(*sb))
        else:
            bm = c.input("B", randn(*sb))
        c.output(c.node("MatMul", [a, bm], "Y"))
        yield c


def binary_cases():
    c = Case("add_broadcast_trailing", 7, "Add [2,3,4] + [4] (rank-mismatched broadcast)")
    a = c.input("A", randn(2, 3, 4))
    b = c.input("B", randn(4))
    c.output(c.node("Add", [a, b], "Y"))
    yield c

    c = Case("add_broadcast_both", 14, "Add [2,1,4] + [1,3,1] (both sides broadcast)")
    a = c.input("A", randn(2, 1, 4))
    b = c.input("B", randn(1, 3, 1))
    c.output(c.node("Add", [a, b], "Y"))
    yield c

    c = Case("sub_scalar", 13, "Sub [3,4] - rank-0 scalar initializer, and scalar - tensor")
    a = c.input("A", randn(3, 4))
    s = c.init("S", np.float32(1.5))
    t = c.node("Sub", [a, s], "T")
    c.output(c.node("Sub", [s, t], "Y"))
    yield c

    c = Case("mul_broadcast", 14, "Mul [2,3,4] * [3,1] (rank-mismatched, middle broadcast)")
    a = c.input("A", randn(2, 3, 4))
    b = c.input("B", randn(3, 1))
    c.output(c.node("Mul", [a, b], "Y"))
    yield c

    c = Case("div_broadcast", 13, "Div [2,3,4] / [1,3,1] with denominators away from zero")
    a = c.input("A", randn(2, 3, 4))
    b = c.input("B", uniform(0.5, 2.0, 1, 3, 1) * np.sign(randn(1, 3, 1)))
    c.output(c.node("Div", [a, b], "Y"))
    yield c

    c = Case("pow_broadcast", 15, "Pow positive base [3,4] ^ exponent [4] broadcast")
    a = c.input("A", uniform(0.2, 3.0, 3, 4))
    b = c.input("B", uniform(-2.0, 2.5, 4))
    c.output(c.node("Pow", [a, b], "Y"))
    yield c

    c = Case("pow_integer_exponent", 12, "Pow signed base with scalar exponents 2 and 3")
    a = c.input("A", randn(2, 5))
    e2 = c.init("E2", np.float32(2.0))
    e3 = c.init("E3", f32([3.0]))
    c.output(c.node("Pow", [a, e2], "Y2"), c.node("Pow", [a, e3], "Y3"))
    yield c


def unary_cases():
    c = Case("sqrt", 13, "Sqrt of positive input")
    c.output(c.node("Sqrt", [c.input("X", uniform(0.01, 4.0, 2, 3, 4))], "Y"))
    yield c

    c = Case("exp", 13, "Exp")
    c.output(c.node("Exp", [c.input("X", uniform(-4.0, 4.0, 2, 3, 4))], "Y"))
    yield c

    c = Case("erf", 13, "Erf")
    c.output(c.node("Erf", [c.input("X", uniform(-3.0, 3.0, 2, 3, 4))], "Y"))
    yield c

    c = Case("relu", 14, "Relu")
    c.output(c.node("Relu", [c.input("X", randn(2, 3, 4))], "Y"))
    yield c

    c = Case("leakyrelu", 16, "LeakyRelu alpha=0.2")
    c.output(c.node("LeakyRelu", [c.input("X", randn(2, 3, 4))], "Y", alpha=0.2))
    yield c

    c = Case("leakyrelu_default", 7, "LeakyRelu default alpha (0.01)")
    c.output(c.node("LeakyRelu", [c.input("X", randn(3, 4))], "Y"))
    yield c

    c = Case("sigmoid", 13, "Sigmoid")
    c.output(c.node("Sigmoid", [c.input("X", uniform(-8, 8, 2, 3, 4))], "Y"))
    yield c

    c = Case("tanh", 13, "Tanh")
    c.output(c.node("Tanh", [c.input("X", uniform(-4, 4, 2, 3, 4))], "Y"))
    yield c

    for approx in ("none", "tanh"):
        c = Case(f"gelu_{approx}", 20, f"Gelu opset 20 approximate=\"{approx}\"")
        c.output(c.node("Gelu", [c.input("X", uniform(-4, 4, 2, 3, 4))], "Y", approximate=approx))
        yield c

    c = Case("hardsigmoid", 7, "HardSigmoid alpha=0.3 beta=0.4")
    c.output(c.node("HardSigmoid", [c.input("X", uniform(-4, 4, 3, 8))], "Y", alpha=0.3, beta=0.4))
    yield c

    c = Case("hardsigmoid_default", 13, "HardSigmoid default alpha=0.2 beta=0.5")
    c.output(c.node("HardSigmoid", [c.input("X", uniform(-4, 4, 3, 8))], "Y"))
    yield c

    c = Case("hardswish", 14, "HardSwish")
    c.output(c.node("HardSwish", [c.input("X", uniform(-5, 5, 3, 8))], "Y"))
    yield c

    c = Case("clip_v6_attrs", 7, "Clip opset 7 (Clip-6) with min/max attributes")
    c.output(c.node("Clip", [c.input("X", randn(3, 5))], "Y", min=-0.5, max=0.7))
    yield c

    c = Case("clip_v11_inputs", 11, "Clip opset 11 with min and max as rank-0 inputs (initializers)")
    x = c.input("X", randn(3, 5))
    lo = c.init("MIN", np.float32(-0.3))
    hi = c.init("MAX", np.float32(0.9))
    c.output(c.node("Clip", [x, lo, hi], "Y"))
    yield c

    c = Case("clip_v13_only_max", 13, "Clip opset 13 with only max (min omitted via empty name)")
    x = c.input("X", randn(3, 5))
    hi = c.init("MAX", np.float32(0.25))
    c.output(c.node("Clip", [x, "", hi], "Y"))
    yield c

    c = Case("clip_v12_none", 12, "Clip opset 12 without min/max (identity)")
    c.output(c.node("Clip", [c.input("X", randn(3, 5))], "Y"))
    yield c

    c = Case("neg_abs_reciprocal", 13, "Neg, Abs, Reciprocal (input away from zero)")
    x = c.input("X", uniform(0.5, 3.0, 2, 6) * np.sign(randn(2, 6)))
    c.output(c.node("Neg", [x], "YNEG"), c.node("Abs", [x], "YABS"), c.node("Reciprocal", [x], "YREC"))
    yield c

    c = Case("min_max_variadic", 13, "Min and Max with 3 broadcasting inputs [2,3], [3], [2,1]")
    a = c.input("A", randn(2, 3))
    b = c.input("B", randn(3))
    d = c.input("C", randn(2, 1))
    c.output(c.node("Min", [a, b, d], "YMIN"), c.node("Max", [a, b, d], "YMAX"))
    yield c

    c = Case("min_max_binary_v8", 8, "Min/Max opset 8 with two broadcasting inputs")
    a = c.input("A", randn(2, 3, 4))
    b = c.input("B", randn(4))
    c.output(c.node("Min", [a, b], "YMIN"), c.node("Max", [a, b], "YMAX"))
    yield c


def softmax_cases():
    for op in ("Softmax", "LogSoftmax"):
        low = op.lower()
        c = Case(f"{low}_v11_axis1_3d", 11,
                 f"{op} opset 11 axis=1 on 3D input: input coerced to 2D [d0, d1*d2]")
        c.output(c.node(op, [c.input("X", randn(2, 3, 4))], "Y", axis=1))
        yield c

        c = Case(f"{low}_v11_default_axis_3d", 11,
                 f"{op} opset 11 default axis (1) on 3D input, 2D coercion")
        c.output(c.node(op, [c.input("X", randn(2, 2, 3))], "Y"))
        yield c

        c = Case(f"{low}_v13_axis_neg1", 13, f"{op} opset 13 axis=-1 on 3D input")
        c.output(c.node(op, [c.input("X", randn(2, 3, 4))], "Y", axis=-1))
        yield c

        c = Case(f"{low}_v13_axis1", 13, f"{op} opset 13 axis=1 on 3D input (single axis)")
        c.output(c.node(op, [c.input("X", randn(2, 3, 4))], "Y", axis=1))
        yield c


def norm_cases():
    c = Case("batchnorm_v9", 9, "BatchNormalization opset 9 inference, epsilon=1e-3")
    x = c.input("X", randn(2, 3, 4, 4))
    c.init("SCALE", uniform(0.5, 1.5, 3))
    c.init("BIAS", randn(3))
    c.init("MEAN", randn(3))
    c.init("VAR", uniform(0.2, 2.0, 3))
    c.output(c.node("BatchNormalization", [x, "SCALE", "BIAS", "MEAN", "VAR"], "Y", epsilon=1e-3))
    yield c

    c = Case("batchnorm_v15", 15, "BatchNormalization opset 15 inference (training_mode=0), 3D input [N,C,L]")
    x = c.input("X", randn(2, 4, 5))
    c.init("SCALE", uniform(0.5, 1.5, 4))
    c.init("BIAS", randn(4))
    c.init("MEAN", randn(4))
    c.init("VAR", uniform(0.2, 2.0, 4))
    c.output(c.node("BatchNormalization", [x, "SCALE", "BIAS", "MEAN", "VAR"], "Y", training_mode=0))
    yield c

    c = Case("layernorm_axis_neg1", 17, "LayerNormalization opset 17 axis=-1 with scale and bias")
    x = c.input("X", randn(2, 3, 8))
    c.init("SCALE", uniform(0.5, 1.5, 8))
    c.init("BIAS", randn(8))
    c.output(c.node("LayerNormalization", [x, "SCALE", "BIAS"], "Y", axis=-1, epsilon=1e-5))
    yield c

    c = Case("layernorm_axis1_nobias", 17, "LayerNormalization opset 17 axis=1 (normalize over [3,4]), no bias")
    x = c.input("X", randn(2, 3, 4))
    c.init("SCALE", uniform(0.5, 1.5, 3, 4))
    c.output(c.node("LayerNormalization", [x, "SCALE"], "Y", axis=1))
    yield c

    c = Case("layernorm_axis1_bias", 17, "LayerNormalization opset 17 axis=1 with bias, epsilon=1e-3")
    x = c.input("X", randn(2, 3, 4))
    c.init("SCALE", uniform(0.5, 1.5, 3, 4))
    c.init("BIAS", randn(3, 4))
    c.output(c.node("LayerNormalization", [x, "SCALE", "BIAS"], "Y", axis=1, epsilon=1e-3))
    yield c


def pool_cases():
    c = Case("maxpool_pads_strides", 12, "MaxPool kernel 3, strides 2, pads [1,1,1,1]")
    c.output(c.node("MaxPool", [c.input("X", randn(1, 2, 7, 7))], "Y",
                    kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    yield c

    c = Case("maxpool_ceil_mode", 12, "MaxPool kernel 3, strides 2, ceil_mode=1 on 8x8 (extra partial window)")
    c.output(c.node("MaxPool", [c.input("X", randn(1, 2, 8, 8))], "Y",
                    kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1))
    yield c

    c = Case("maxpool_dilations", 12, "MaxPool kernel 2, dilations [2,2], strides 1")
    c.output(c.node("MaxPool", [c.input("X", randn(1, 2, 6, 6))], "Y",
                    kernel_shape=[2, 2], dilations=[2, 2]))
    yield c

    c = Case("maxpool_same_upper", 8, "MaxPool auto_pad=SAME_UPPER kernel 3 strides 2 on 6x7")
    c.output(c.node("MaxPool", [c.input("X", randn(1, 2, 6, 7))], "Y",
                    kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"))
    yield c

    c = Case("maxpool_1d", 12, "MaxPool 1D kernel 2 stride 2")
    c.output(c.node("MaxPool", [c.input("X", randn(2, 3, 9))], "Y", kernel_shape=[2], strides=[2]))
    yield c

    for cip in (0, 1):
        c = Case(f"averagepool_pads_cip{cip}", 11,
                 f"AveragePool kernel 3 strides 2 pads 1, count_include_pad={cip}")
        c.output(c.node("AveragePool", [c.input("X", randn(1, 2, 7, 7))], "Y",
                        kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=cip))
        yield c

    c = Case("averagepool_ceil_mode", 19,
             "AveragePool kernel 3 strides 2 ceil_mode=1, no pads, count_include_pad=0 on 8x8")
    c.output(c.node("AveragePool", [c.input("X", randn(1, 2, 8, 8))], "Y",
                    kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1))
    yield c

    c = Case("averagepool_v7_nopad", 7, "AveragePool opset 7 kernel [2,2] stride 2")
    c.output(c.node("AveragePool", [c.input("X", randn(1, 3, 6, 6))], "Y",
                    kernel_shape=[2, 2], strides=[2, 2]))
    yield c

    c = Case("globalaveragepool", 13, "GlobalAveragePool on [2,3,5,4]")
    c.output(c.node("GlobalAveragePool", [c.input("X", randn(2, 3, 5, 4))], "Y"))
    yield c


def reduce_cases():
    # axes as attribute
    for op, opset in (("ReduceMean", 13), ("ReduceMax", 13), ("ReduceSum", 11)):
        low = op.lower()
        for keep in (0, 1):
            c = Case(f"{low}_attr_axes_keep{keep}", opset,
                     f"{op} opset {opset} axes attribute [1,-1], keepdims={keep}")
            c.output(c.node(op, [c.input("X", randn(2, 3, 4))], "Y", axes=[1, -1], keepdims=keep))
            yield c
        c = Case(f"{low}_attr_all_axes", opset, f"{op} opset {opset} no axes (reduce all), keepdims default 1")
        c.output(c.node(op, [c.input("X", randn(2, 3, 4))], "Y"))
        yield c
    # axes as input
    for op, opset in (("ReduceMean", 18), ("ReduceMax", 18), ("ReduceSum", 13)):
        low = op.lower()
        for keep in (0, 1):
            c = Case(f"{low}_input_axes_keep{keep}", opset,
                     f"{op} opset {opset} axes input [0,2], keepdims={keep}")
            x = c.input("X", randn(2, 3, 4))
            ax = c.init("AXES", i64([0, 2]))
            c.output(c.node(op, [x, ax], "Y", keepdims=keep))
            yield c
        c = Case(f"{low}_input_all_axes_keep0", opset,
                 f"{op} opset {opset} axes input omitted (reduce all), keepdims=0 -> rank-0 output")
        c.output(c.node(op, [c.input("X", randn(2, 3, 4))], "Y", keepdims=0))
        yield c


def shape_op_cases():
    for axis, opset in ((0, 9), (1, 9), (2, 11), (-1, 13)):
        tag = f"neg{-axis}" if axis < 0 else str(axis)
        c = Case(f"flatten_axis{tag}", opset, f"Flatten axis={axis} on [2,3,4,5]")
        c.output(c.node("Flatten", [c.input("X", randn(2, 3, 4, 5))], "Y", axis=axis))
        yield c

    c = Case("reshape_zero_neg1", 14, "Reshape with shape [0,-1,2] (0 copies input dim, allowzero default 0)")
    x = c.input("X", randn(2, 3, 4))
    s = c.init("SHAPE", i64([0, -1, 2]))
    c.output(c.node("Reshape", [x, s], "Y"))
    yield c

    c = Case("reshape_v7_basic", 7, "Reshape opset 7 to [4,-1]")
    x = c.input("X", randn(2, 3, 4))
    s = c.init("SHAPE", i64([4, -1]))
    c.output(c.node("Reshape", [x, s], "Y"))
    yield c

    c = Case("transpose_perm", 13, "Transpose perm [2,0,3,1]")
    c.output(c.node("Transpose", [c.input("X", randn(2, 3, 4, 5))], "Y", perm=[2, 0, 3, 1]))
    yield c

    c = Case("transpose_default", 7, "Transpose without perm (reverses dims)")
    c.output(c.node("Transpose", [c.input("X", randn(2, 3, 4))], "Y"))
    yield c

    c = Case("concat_neg_axis", 13, "Concat of 3 inputs along axis=-2")
    a = c.input("A", randn(2, 1, 4))
    b = c.input("B", randn(2, 3, 4))
    d = c.init("C", randn(2, 2, 4))
    c.output(c.node("Concat", [a, b, d], "Y", axis=-2))
    yield c

    c = Case("concat_v7_axis0", 7, "Concat opset 7 axis=0")
    a = c.input("A", randn(1, 3))
    b = c.input("B", randn(2, 3))
    c.output(c.node("Concat", [a, b], "Y", axis=0))
    yield c

    c = Case("split_v11_attr_uneven", 11, "Split opset 11 split attribute [2,3,1] on axis 1")
    x = c.input("X", randn(2, 6, 3))
    c.output(*c.node("Split", [x], ["Y0", "Y1", "Y2"], axis=1, split=[2, 3, 1]))
    yield c

    c = Case("split_v11_equal", 11, "Split opset 11 equal parts (no split), default axis 0")
    x = c.input("X", randn(4, 3))
    c.output(*c.node("Split", [x], ["Y0", "Y1"]))
    yield c

    c = Case("split_v13_input", 13, "Split opset 13 split input [1,4] on axis -1")
    x = c.input("X", randn(2, 3, 5))
    s = c.init("SPLIT", i64([1, 4]))
    c.output(*c.node("Split", [x, s], ["Y0", "Y1"], axis=-1))
    yield c

    c = Case("split_v18_num_outputs_uneven", 18,
             "Split opset 18 num_outputs=3 on axis of size 7 -> chunks 3,3,1")
    x = c.input("X", randn(2, 7))
    c.output(*c.node("Split", [x], ["Y0", "Y1", "Y2"], axis=1, num_outputs=3))
    yield c

    c = Case("slice_v10_negative", 10, "Slice opset 10 negative starts/ends with axes [1,2]")
    x = c.input("X", randn(3, 6, 5))
    st = c.init("STARTS", i64([-4, 1]))
    en = c.init("ENDS", i64([-1, 1000]))
    ax = c.init("AXES", i64([1, 2]))
    c.output(c.node("Slice", [x, st, en, ax], "Y"))
    yield c

    c = Case("slice_v13_step_neg1", 13, "Slice opset 13 step -1 reversing axis 0 fully (ends INT64_MIN)")
    x = c.input("X", randn(5, 3))
    st = c.init("STARTS", i64([-1]))
    en = c.init("ENDS", i64([np.iinfo(np.int64).min]))
    ax = c.init("AXES", i64([0]))
    sp = c.init("STEPS", i64([-1]))
    c.output(c.node("Slice", [x, st, en, ax, sp], "Y"))
    yield c

    c = Case("slice_v13_steps_2_neg2", 13, "Slice opset 13 step 2 on axis -1 and step -2 on axis 1")
    x = c.input("X", randn(2, 7, 8))
    st = c.init("STARTS", i64([1, 6]))
    en = c.init("ENDS", i64([8, 0]))
    ax = c.init("AXES", i64([-1, 1]))
    sp = c.init("STEPS", i64([2, -2]))
    c.output(c.node("Slice", [x, st, en, ax, sp], "Y"))
    yield c

    c = Case("slice_v11_omitted_axes", 11, "Slice opset 11 without axes/steps inputs (axes 0..k-1), clamped ends")
    x = c.input("X", randn(4, 5, 3))
    st = c.init("STARTS", i64([1, 0]))
    en = c.init("ENDS", i64([3, np.iinfo(np.int64).max]))
    c.output(c.node("Slice", [x, st, en], "Y"))
    yield c

    c = Case("slice_v7_attrs", 7, "Slice opset 7 with starts/ends/axes attributes (negative start)")
    x = c.input("X", randn(4, 6))
    c.output(c.node("Slice", [x], "Y", starts=[1, -3], ends=[3, 100], axes=[0, 1]))
    yield c

    c = Case("slice_v7_attrs_no_axes", 7, "Slice opset 7 attributes without axes")
    x = c.input("X", randn(4, 6, 2))
    c.output(c.node("Slice", [x], "Y", starts=[0, 2], ends=[-1, 5]))
    yield c

    c = Case("squeeze_unsqueeze_v11_attrs", 11, "Squeeze axes=[1,-1] and Unsqueeze axes=[0,-1] attributes (opset 11)")
    x = c.input("X", randn(3, 1, 4, 1))
    s = c.node("Squeeze", [x], "S", axes=[1, -1])
    c.output(s, c.node("Unsqueeze", [s], "Y", axes=[0, -1]))
    yield c

    c = Case("squeeze_unsqueeze_v13_inputs", 13, "Squeeze/Unsqueeze opset 13 with axes inputs")
    x = c.input("X", randn(1, 3, 1, 4))
    sa = c.init("SQ_AXES", i64([0, 2]))
    ua = c.init("UNSQ_AXES", i64([1, 3]))
    s = c.node("Squeeze", [x, sa], "S")
    c.output(s, c.node("Unsqueeze", [s, ua], "Y"))
    yield c

    c = Case("squeeze_v13_no_axes", 13, "Squeeze opset 13 without axes (drops all size-1 dims)")
    c.output(c.node("Squeeze", [c.input("X", randn(1, 3, 1, 2, 1))], "Y"))
    yield c

    c = Case("shape_v15_start_end", 15, "Shape opset 15: full, start=1 end=-1, start=-2")
    x = c.input("X", randn(2, 3, 4, 5))
    c.output(c.node("Shape", [x], "YFULL"),
             c.node("Shape", [x], "YMID", start=1, end=-1),
             c.node("Shape", [x], "YTAIL", start=-2))
    yield c

    c = Case("gather_axis0", 13, "Gather axis 0 with 2D int64 indices (graph input), incl. negative")
    x = c.input("X", randn(5, 3))
    ind = c.input("IDX", i64([[0, -1], [2, -3]]))
    c.output(c.node("Gather", [x, ind], "Y", axis=0))
    yield c

    c = Case("gather_axis1_neg", 11, "Gather axis 1 with negative indices initializer")
    x = c.input("X", randn(2, 5, 3))
    ind = c.init("IDX", i64([-1, 0, -2]))
    c.output(c.node("Gather", [x, ind], "Y", axis=1))
    yield c

    c = Case("gather_scalar_index", 13, "Gather axis 1 with rank-0 index (drops the axis)")
    x = c.input("X", randn(2, 4, 3))
    ind = c.init("IDX", np.int64(2))
    c.output(c.node("Gather", [x, ind], "Y", axis=1))
    yield c

    c = Case("identity", 16, "Identity")
    c.output(c.node("Identity", [c.input("X", randn(2, 3))], "Y"))
    yield c

    c = Case("dropout_v12_inference", 12, "Dropout opset 12 with ratio input, no training_mode (inference = identity)")
    x = c.input("X", randn(3, 4))
    r = c.init("RATIO", np.float32(0.3))
    c.output(c.node("Dropout", [x, r], "Y"))
    yield c

    c = Case("dropout_v13_ratio_training_false", 13, "Dropout opset 13 ratio input and training_mode=false input; Y only")
    x = c.input("X", randn(3, 4))
    r = c.init("RATIO", np.float32(0.5))
    t = c.init("TRAINING", np.bool_(False))
    c.output(c.node("Dropout", [x, r, t], "Y"))
    yield c

    c = Case("dropout_v7", 7, "Dropout opset 7 ratio attribute (inference = identity)")
    c.output(c.node("Dropout", [c.input("X", randn(3, 4))], "Y", ratio=0.25))
    yield c

    c = Case("pad_v11_constant_value", 11, "Pad opset 11 constant mode with pads input and constant_value 1.5")
    x = c.input("X", randn(1, 2, 3, 3))
    p = c.init("PADS", i64([0, 0, 1, 2, 0, 0, 2, 0]))
    v = c.init("VALUE", np.float32(1.5))
    c.output(c.node("Pad", [x, p, v], "Y", mode="constant"))
    yield c

    c = Case("pad_v13_constant_default", 13, "Pad opset 13 constant mode without value (zero)")
    x = c.input("X", randn(2, 3))
    p = c.init("PADS", i64([1, 0, 0, 2]))
    c.output(c.node("Pad", [x, p], "Y"))
    yield c

    c = Case("pad_v13_reflect", 13, "Pad opset 13 reflect mode on spatial dims")
    x = c.input("X", randn(1, 2, 4, 5))
    p = c.init("PADS", i64([0, 0, 2, 1, 0, 0, 1, 3]))
    c.output(c.node("Pad", [x, p], "Y", mode="reflect"))
    yield c

    c = Case("pad_v18_edge", 18, "Pad opset 18 edge mode")
    x = c.input("X", randn(1, 2, 3, 4))
    p = c.init("PADS", i64([0, 0, 2, 1, 0, 0, 1, 2]))
    c.output(c.node("Pad", [x, p], "Y", mode="edge"))
    yield c

    c = Case("pad_v2_attrs", 7, "Pad opset 7 (Pad-2) pads/value attributes, constant mode")
    x = c.input("X", randn(2, 3))
    c.output(c.node("Pad", [x], "Y", pads=[0, 1, 2, 1], value=-2.0))
    yield c

    c = Case("pad_v2_reflect", 7, "Pad opset 7 (Pad-2) reflect mode via attributes")
    x = c.input("X", randn(1, 1, 4, 4))
    c.output(c.node("Pad", [x], "Y", pads=[0, 0, 1, 2, 0, 0, 2, 1], mode="reflect"))
    yield c


def resize_cases():
    c = Case("resize_nearest_scales", 13, "Resize opset 13 nearest, scales [1,1,2,2], default modes (half_pixel, round_prefer_floor)")
    x = c.input("X", randn(1, 2, 3, 4))
    s = c.init("SCALES", f32([1, 1, 2, 2]))
    c.output(c.node("Resize", [x, "", s], "Y", mode="nearest"))
    yield c

    c = Case("resize_nearest_sizes", 13, "Resize opset 13 nearest with sizes [1,2,7,5] from [1,2,4,3]")
    x = c.input("X", randn(1, 2, 4, 3))
    sz = c.init("SIZES", i64([1, 2, 7, 5]))
    c.output(c.node("Resize", [x, "", "", sz], "Y", mode="nearest"))
    yield c

    c = Case("resize_nearest_asymmetric_floor", 13,
             "Resize nearest coordinate_transformation_mode=asymmetric nearest_mode=floor, scales [1,1,1.5,2.5]")
    x = c.input("X", randn(1, 1, 4, 3))
    s = c.init("SCALES", f32([1, 1, 1.5, 2.5]))
    c.output(c.node("Resize", [x, "", s], "Y", mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    yield c

    c = Case("resize_nearest_halfpixel_rpf", 13,
             "Resize nearest half_pixel + round_prefer_floor, scales [1,1,0.5,1.5] (down and up)")
    x = c.input("X", randn(1, 2, 6, 4))
    s = c.init("SCALES", f32([1, 1, 0.5, 1.5]))
    c.output(c.node("Resize", [x, "", s], "Y", mode="nearest",
                    coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_floor"))
    yield c

    c = Case("resize_nearest_v19_scales", 19, "Resize opset 19 nearest, integer upsample scales [1,1,3,2]")
    x = c.input("X", randn(1, 1, 2, 3))
    s = c.init("SCALES", f32([1, 1, 3, 2]))
    c.output(c.node("Resize", [x, "", s], "Y", mode="nearest"))
    yield c


def cast_cases():
    c = Case("cast_float_to_int64", 13, "Cast float -> int64 (truncation toward zero)")
    x = c.input("X", uniform(-20, 20, 3, 4))
    c.output(c.node("Cast", [x], "Y", to=TP.INT64))
    yield c

    c = Case("cast_int64_to_float", 13, "Cast int64 input -> float")
    x = c.input("X", RNG.integers(-1000, 1000, size=(3, 4)).astype(np.int64))
    c.output(c.node("Cast", [x], "Y", to=TP.FLOAT))
    yield c

    c = Case("cast_float16_roundtrip", 13, "Cast float -> float16 -> float (rounding to half precision)")
    x = c.input("X", randn(3, 5) * 10)
    h = c.node("Cast", [x], "H", to=TP.FLOAT16)
    c.output(c.node("Cast", [h], "Y", to=TP.FLOAT))
    yield c

    c = Case("cast_v9_float_to_int64", 9, "Cast opset 9 float -> int64")
    x = c.input("X", uniform(-5, 5, 6))
    c.output(c.node("Cast", [x], "Y", to=TP.INT64))
    yield c


def extra_cases():
    c = Case("expand", 13, "Expand [3,1] to shape [2,3,4]")
    x = c.input("X", randn(3, 1))
    s = c.init("SHAPE", i64([2, 3, 4]))
    c.output(c.node("Expand", [x, s], "Y"))
    yield c

    c = Case("expand_v8_smaller_shape", 8, "Expand [2,1,4] with shape [3,1] (result [2,3,4])")
    x = c.input("X", randn(2, 1, 4))
    s = c.init("SHAPE", i64([3, 1]))
    c.output(c.node("Expand", [x, s], "Y"))
    yield c

    c = Case("where_less", 16, "Where with condition from Less(A, B) computed in graph, broadcast Y input")
    a = c.input("A", randn(2, 3, 4))
    b = c.input("B", randn(3, 4))
    cond = c.node("Less", [a, b], "COND")
    c.output(c.node("Where", [cond, a, b], "Y"))
    yield c

    c = Case("where_equal", 13, "Equal(A, B) (bool output) and Where on it")
    a_val = RNG.integers(-2, 3, size=(3, 4)).astype(np.float32)
    b_val = RNG.integers(-2, 3, size=(3, 4)).astype(np.float32)
    a = c.input("A", a_val)
    b = c.input("B", b_val)
    cond = c.node("Equal", [a, b], "EQ")
    z = c.init("Z", np.float32(-7.0))
    c.output(cond, c.node("Where", [cond, z, a], "Y"))
    yield c

    c = Case("equal_broadcast", 11, "Equal with broadcasting [2,3] vs [3] -> bool")
    a = c.input("A", RNG.integers(0, 3, size=(2, 3)).astype(np.float32))
    b = c.input("B", f32([0, 1, 2]))
    c.output(c.node("Equal", [a, b], "Y"))
    yield c

    c = Case("constantofshape", 13, "Shape(X) -> ConstantOfShape(value=1.5) -> Add X")
    x = c.input("X", randn(2, 3))
    s = c.node("Shape", [x], "S")
    k = c.node("ConstantOfShape", [s], "K", value=numpy_helper.from_array(f32([1.5]), "value"))
    c.output(c.node("Add", [x, k], "Y"))
    yield c

    c = Case("constantofshape_default", 9, "ConstantOfShape from a shape initializer, default value (float zeros)")
    x = c.input("X", randn(2, 4))
    s = c.init("SHAPE", i64([2, 4]))
    k = c.node("ConstantOfShape", [s], "K")
    c.output(c.node("Sub", [x, k], "Y"))
    yield c

    c = Case("range_float", 11, "Range float start=-1 limit=2 delta=0.5 (scalar initializers)")
    st = c.init("START", np.float32(-1.0))
    li = c.init("LIMIT", np.float32(2.0))
    de = c.init("DELTA", np.float32(0.5))
    x = c.input("X", randn(6))
    r = c.node("Range", [st, li, de], "R")
    c.output(c.node("Add", [x, r], "Y"))
    yield c

    c = Case("range_int64_from_shape", 13, "Range int64 0..dim from Shape->Gather, negative delta variant")
    x = c.input("X", randn(2, 5))
    s = c.node("Shape", [x], "S")
    one = c.init("ONE", np.int64(1))
    zero = c.init("ZERO", np.int64(0))
    n = c.node("Gather", [s, one], "N", axis=0)
    c.output(c.node("Range", [zero, n, one], "Y"),
             c.node("Range", [n, zero, c.init("MTWO", np.int64(-2))], "YREV"))
    yield c


def loader_cases():
    c = Case("loader_float16_initializers", 13,
             "float16 initializers (raw_data) cast to float inside the graph", kind="loader")
    x = c.input("X", randn(2, 4))
    w = c.init("W16", randn(4, 3).astype(np.float16))
    b = c.init("B16", randn(3).astype(np.float16))
    wf = c.node("Cast", [w], "WF", to=TP.FLOAT)
    bf = c.node("Cast", [b], "BF", to=TP.FLOAT)
    m = c.node("MatMul", [x, wf], "M")
    c.output(c.node("Add", [m, bf], "Y"))
    yield c

    c = Case("loader_float64_initializers", 13,
             "float64 (double) initializers cast to float inside the graph", kind="loader")
    x = c.input("X", randn(2, 3))
    w = c.init("W64", RNG.standard_normal((2, 3)))
    wf = c.node("Cast", [w], "WF", to=TP.FLOAT)
    c.output(c.node("Mul", [x, wf], "Y"))
    yield c

    c = Case("loader_int8_uint8_initializers", 13,
             "int8 and uint8 initializers cast to float (like a dequantized weight)", kind="loader")
    x = c.input("X", randn(2, 4))
    q = c.init("Q8", RNG.integers(-128, 128, size=(2, 4)).astype(np.int8))
    u = c.init("U8", RNG.integers(0, 256, size=(4,)).astype(np.uint8))
    qf = c.node("Cast", [q], "QF", to=TP.FLOAT)
    uf = c.node("Cast", [u], "UF", to=TP.FLOAT)
    m = c.node("Mul", [x, qf], "M")
    c.output(c.node("Add", [m, uf], "Y"))
    yield c

    c = Case("loader_int32_initializer", 13, "int32 initializer cast to float", kind="loader")
    x = c.input("X", randn(3, 2))
    k = c.init("K32", RNG.integers(-100000, 100000, size=(3, 2)).astype(np.int32))
    kf = c.node("Cast", [k], "KF", to=TP.FLOAT)
    c.output(c.node("Add", [x, kf], "Y"))
    yield c

    c = Case("loader_constant_nodes", 13,
             "Constant nodes: value (tensor), value_float, value_ints (used as Reshape shape)", kind="loader")
    x = c.input("X", randn(2, 3, 2))
    t = c.node("Constant", [], "CT", value=numpy_helper.from_array(randn(3, 2), "CT_value"))
    f = c.node("Constant", [], "CF", value_float=0.5)
    s = c.node("Constant", [], "CS", value_ints=[2, 6])
    a = c.node("Add", [x, t], "A")
    m = c.node("Mul", [a, f], "M")
    c.output(c.node("Reshape", [m, s], "Y"))
    yield c

    c = Case("loader_ir3_initializers_as_inputs", 8,
             "IR version 3, opset 8: initializers W and B are also listed as graph inputs "
             "(inputs.npz holds only X; the initializer values are the defaults)",
             kind="loader", ir_version=3)
    c.inits_as_inputs = True
    x = c.input("X", randn(2, 3))
    w = c.init("W", randn(3, 4))
    b = c.init("B", randn(4))
    c.output(c.node("Gemm", [x, w, b], "Y"))
    yield c

    c = Case("loader_typed_fields", 13,
             "initializers in typed fields instead of raw_data: float_data (W), int64_data (SHAPE), "
             "and a float16 tensor stored as bit patterns in int32_data (H)", kind="loader")
    x = c.input("X", randn(2, 3))
    w_val = randn(3, 4)
    c.init_tensor(helper.make_tensor("W", TP.FLOAT, [3, 4], w_val.flatten().tolist(), raw=False))
    c.init_tensor(helper.make_tensor("SHAPE", TP.INT64, [2], [4, 2], raw=False))
    h_val = randn(4).astype(np.float16)
    c.init_tensor(helper.make_tensor("H", TP.FLOAT16, [4], h_val.tolist(), raw=False))
    m = c.node("MatMul", [x, "W"], "M")
    hf = c.node("Cast", ["H"], "HF", to=TP.FLOAT)
    a = c.node("Add", [m, hf], "A")
    c.output(c.node("Reshape", [a, "SHAPE"], "Y"))
    yield c

    c = Case("loader_external_data", 13,
             "all initializers (float W, B and int64 Gather indices IDX) stored in the external "
             "file loader_external_data.data (all_tensors_to_one_file, size_threshold=0)", kind="loader")
    c.external_data = True
    x = c.input("X", randn(2, 4))
    w = c.init("W", randn(4, 3))
    b = c.init("B", randn(3))
    idx = c.init("IDX", i64([2, 0]))
    m = c.node("MatMul", [x, w], "M")
    a = c.node("Add", [m, b], "A")
    c.output(c.node("Gather", [a, idx], "Y", axis=1))
    yield c


def dynamic_cases():
    c = Case("dynamic_batch_flatten_matmul", 13,
             "symbolic batch dim N: Shape->Gather->Unsqueeze->Concat->Reshape flattens per sample, "
             "then MatMul with weight [48,5] (run with N=3)")
    x = c.input("X", randn(3, 3, 4, 4), shape=["N", 3, 4, 4])
    c.init("ZERO", np.int64(0))
    c.init("UAX", i64([0]))
    c.init("MINUS1", i64([-1]))
    c.init("W", randn(48, 5))
    s = c.node("Shape", [x], "S")
    n = c.node("Gather", [s, "ZERO"], "NB", axis=0)
    nu = c.node("Unsqueeze", [n, "UAX"], "NU")
    shp = c.node("Concat", [nu, "MINUS1"], "NEWSHAPE", axis=0)
    r = c.node("Reshape", [x, shp], "R")
    c.output(c.node("MatMul", [r, "W"], "Y"))
    c.output_shapes["Y"] = ["N", 5]
    yield c


def old_opset_cases():
    """Old-opset forms of operators whose inputs, attributes or meaning changed later; the
    opset lifting check (scripts/check_opsets.py) lifts every conformance model. These cases
    draw from their own generator, so adding them left the inputs of the cases above as they
    were."""
    rng = np.random.default_rng(2024)

    def rn(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    c = Case("upsample_v7_nearest_attr_scales", 8,
             "Upsample-7: scales [1,1,2,3] as an attribute, nearest (becomes Resize, floor)")
    x = c.input("X", rn(1, 2, 3, 4))
    c.output(c.node("Upsample", [x], "Y", mode="nearest", scales=[1.0, 1.0, 2.0, 3.0]))
    yield c

    c = Case("upsample_v9_nearest_scales_input", 9,
             "Upsample-9: scales [1,1,2,2.5] as an initializer input, nearest")
    x = c.input("X", rn(2, 2, 3, 4))
    c.init("S", f32([1, 1, 2, 2.5]))
    c.output(c.node("Upsample", [x, "S"], "Y", mode="nearest"))
    yield c

    c = Case("resize_v10_nearest_upsample", 10,
             "Resize-10 nearest, scales [1,1,1.5,2.5]: asymmetric coordinates, truncation")
    x = c.input("X", rn(1, 2, 4, 3))
    c.init("S", f32([1, 1, 1.5, 2.5]))
    c.output(c.node("Resize", [x, "S"], "Y", mode="nearest"))
    yield c

    c = Case("resize_v10_nearest_downsample", 10,
             "Resize-10 nearest, scales [1,1,0.6,0.5]: asymmetric coordinates, ceiling when "
             "shrinking")
    x = c.input("X", rn(1, 2, 5, 8))
    c.init("S", f32([1, 1, 0.6, 0.5]))
    c.output(c.node("Resize", [x, "S"], "Y", mode="nearest"))
    yield c

    c = Case("split_v7_attr_uneven", 7, "Split-2: split=[1,3] attribute on axis 1")
    x = c.input("X", rn(2, 4, 3))
    c.output(*c.node("Split", [x], ["Y0", "Y1"], axis=1, split=[1, 3]))
    yield c

    c = Case("split_v8_equal_no_attr", 8,
             "Split-2 without split: 3 equal parts on axis 2 (num_outputs from opset 18)")
    x = c.input("X", rn(2, 2, 6))
    c.output(*c.node("Split", [x], ["Y0", "Y1", "Y2"], axis=2))
    yield c

    c = Case("squeeze_unsqueeze_v7_attrs", 7,
             "Squeeze-1 axes=[1] then Unsqueeze-1 axes=[0,3] (attributes)")
    x = c.input("X", rn(3, 1, 4))
    s = c.node("Squeeze", [x], "S", axes=[1])
    c.output(c.node("Unsqueeze", [s], "Y", axes=[0, 3]))
    yield c

    c = Case("reduce_v11_attr_family", 11,
             "ReduceProd, ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp, ReduceSumSquare "
             "with axes attributes (inputs from opset 18)")
    x = c.input("X", rng.uniform(0.5, 1.5, (2, 3, 4)).astype(np.float32))
    for k, op in enumerate(("ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
                            "ReduceLogSumExp", "ReduceSumSquare")):
        c.output(c.node(op, [x], f"Y{k}", axes=[k % 3], keepdims=k % 2))
    yield c

    c = Case("reducesum_v11_attr_negative_axes", 11,
             "ReduceSum-11 axes=[-1,0] keepdims=0 (axes input from opset 13)")
    x = c.input("X", rn(2, 3, 4))
    c.output(c.node("ReduceSum", [x], "Y", axes=[-1, 0], keepdims=0))
    yield c

    c = Case("dropout_v10_ratio_attr", 10, "Dropout-10 ratio=0.3 attribute (input from 12)")
    x = c.input("X", rn(2, 5))
    c.output(c.node("Dropout", [x], "Y", ratio=0.3))
    yield c

    c = Case("pad_v2_constant_value", 9, "Pad-2 constant mode with value=1.5 (inputs from 11)")
    x = c.input("X", rn(1, 2, 3, 3))
    c.output(c.node("Pad", [x], "Y", mode="constant", pads=[0, 0, 1, 2, 0, 1, 0, 1], value=1.5))
    yield c

    c = Case("clip_v6_min_only", 7, "Clip-6 with only min=-0.5 (max stays unbounded)")
    x = c.input("X", rn(3, 4))
    c.output(c.node("Clip", [x], "Y", min=-0.5))
    yield c

    c = Case("clip_v6_max_only", 8, "Clip-6 with only max=0.25")
    x = c.input("X", rn(3, 4))
    c.output(c.node("Clip", [x], "Y", max=0.25))
    yield c

    c = Case("batchnorm_v7_spatial", 7,
             "BatchNormalization-7 with spatial=1 (attribute removed at opset 9)")
    x = c.input("X", rn(2, 3, 2, 2))
    c.init("SCALE", rng.uniform(0.5, 1.5, 3).astype(np.float32))
    c.init("BIAS", rn(3))
    c.init("MEAN", rn(3))
    c.init("VAR", rng.uniform(0.2, 2.0, 3).astype(np.float32))
    c.output(c.node("BatchNormalization", [x, "SCALE", "BIAS", "MEAN", "VAR"], "Y",
                    epsilon=1e-4, spatial=1))
    yield c

    c = Case("softmax_v7_axis1_4d", 7,
             "Softmax-1 axis=1 on a 4D input: one softmax over the trailing three axes together")
    x = c.input("X", rn(2, 3, 2, 2))
    c.output(c.node("Softmax", [x], "Y", axis=1))
    yield c

    c = Case("logsoftmax_v9_axis2_4d", 9,
             "LogSoftmax-1 axis=2 on a 4D input (coerced to 2D [d0*d1, d2*d3])")
    x = c.input("X", rn(2, 2, 3, 2))
    c.output(c.node("LogSoftmax", [x], "Y", axis=2))
    yield c

    c = Case("softmax_v12_axis_last_via_reshape", 12,
             "Softmax-11 axis=2 after a Reshape to rank 3: the axis is the last, no rewrite")
    x = c.input("X", rn(2, 12))
    c.init("SHAPE", i64([2, 3, 4]))
    r = c.node("Reshape", [x, "SHAPE"], "R")
    c.output(c.node("Softmax", [r], "Y", axis=2))
    yield c


# ---------------------------------------------------------------------------
# Control flow: If, Loop, Scan with subgraphs.  These cases draw from their own
# generator so that adding them leaves every earlier case byte-identical.
# ---------------------------------------------------------------------------

CF_RNG = np.random.default_rng(10)


def cf_randn(*shape):
    return CF_RNG.standard_normal(shape).astype(np.float32)


def vi(name, elem=F, shape=None):
    """A subgraph input/output declaration (shape may stay unknown)."""
    return helper.make_tensor_value_info(name, elem, shape)


def subgraph(name, nodes, inputs, outputs, inits=()):
    return helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))


def const_node(name, out, value):
    """A Constant node holding `value` (how exporters often store branch weights)."""
    return helper.make_node("Constant", [], [out], name=name,
                            value=numpy_helper.from_array(np.asarray(value), out + "_value"))


def if_cases_with_weights():
    """If on an int64 `sr` as Silero does: each branch a Conv with its own weights (a Constant
    node in one, a branch initializer in the other) reading the outer input X and an outer
    initializer B."""
    w_then = cf_randn(4, 2, 3)
    w_else = cf_randn(4, 2, 5)
    bias = cf_randn(4)
    x_val = cf_randn(2, 2, 16)
    for sr, tag in ((16000, "then"), (8000, "else")):
        c = Case(f"if_conv_weights_in_branches_{tag}", 16,
                 f"If(sr == 16000) choosing a Conv whose weights live in the branch (Constant node / "
                 f"branch initializer), reading outer X and outer bias; sr={sr} takes {tag}_branch")
        x = c.input("X", x_val)
        srn = c.input("sr", np.int64(sr))
        b = c.init("B", bias)
        k = c.init("SR16K", np.int64(16000))
        cond = c.node("Equal", [srn, k], "IS16K")
        then_g = subgraph("then_g", [
            const_node("then_w", "W_then", w_then),
            helper.make_node("Conv", [x, "W_then", b], ["then_conv"], name="then_conv_node", pads=[1, 1]),
            helper.make_node("Relu", ["then_conv"], ["then_out"], name="then_relu"),
        ], [], [vi("then_out")])
        else_g = subgraph("else_g", [
            helper.make_node("Conv", [x, "W_else", b], ["else_out"], name="else_conv_node", pads=[2, 2]),
        ], [], [vi("else_out")], inits=[numpy_helper.from_array(w_else, "W_else")])
        y = c.node("If", [cond], "Y", then_branch=then_g, else_branch=else_g)
        c.output(c.node("Sigmoid", [y], "P"))
        yield c


def if_nested_case():
    c = Case("if_nested_outer_scope", 13,
             "If inside an If branch: the inner branches read a top-level input, a top-level "
             "initializer and a value computed in the outer branch; two outputs per If")
    x = c.input("X", cf_randn(3, 4))
    flag = c.input("FLAG", np.array(True))
    w = c.init("W", cf_randn(4, 4))
    inner_then = subgraph("inner_then", [
        helper.make_node("MatMul", ["MID", w], ["it_mm"], name="inner_then_matmul"),
        helper.make_node("Add", ["it_mm", x], ["it_out"], name="inner_then_add"),
    ], [], [vi("it_out")])
    inner_else = subgraph("inner_else", [
        helper.make_node("Sub", [x, "MID"], ["ie_out"], name="inner_else_sub"),
    ], [], [vi("ie_out")])
    outer_then = subgraph("outer_then", [
        helper.make_node("Tanh", [x], ["MID"], name="outer_then_tanh"),
        helper.make_node("ReduceSum", ["MID"], ["mid_sum"], name="outer_then_sum", keepdims=0),
        helper.make_node("Greater", ["mid_sum", "ZERO_F"], ["inner_cond"], name="outer_then_gt"),
        helper.make_node("If", ["inner_cond"], ["inner_out"], name="inner_if",
                         then_branch=inner_then, else_branch=inner_else),
        helper.make_node("Mul", ["inner_out", "MID"], ["ot_second"], name="outer_then_mul"),
    ], [], [vi("inner_out"), vi("ot_second")],
        inits=[numpy_helper.from_array(np.float32(0.0), "ZERO_F")])
    outer_else = subgraph("outer_else", [
        helper.make_node("Neg", [x], ["oe_a"], name="outer_else_neg"),
        helper.make_node("Identity", [x], ["oe_b"], name="outer_else_id"),
    ], [], [vi("oe_a"), vi("oe_b")])
    y1, y2 = c.node("If", [flag], ["Y1", "Y2"], then_branch=outer_then, else_branch=outer_else)
    c.output(y1, y2)
    yield c


def loop_cases():
    c = Case("loop_trip_count_carried_scan", 13,
             "Loop M=4: a loop-carried vector updated with an outer weight and the iteration "
             "number, plus a scan output per iteration and an outer-scope input read in the body")
    x = c.input("X", cf_randn(1, 3))
    m = c.init("M", np.int64(4))
    cond = c.init("COND", np.array(True))
    w = c.init("W", cf_randn(3, 3) * 0.5)
    body = subgraph("loop_body", [
        helper.make_node("Cast", ["i"], ["i_f"], name="body_cast", to=F),
        helper.make_node("MatMul", ["v_in", w], ["v_mm"], name="body_matmul"),
        helper.make_node("Add", ["v_mm", "i_f"], ["v_add"], name="body_add"),
        helper.make_node("Add", ["v_add", x], ["v_out"], name="body_add_x"),
        helper.make_node("ReduceSum", ["v_out"], ["s_out"], name="body_sum", keepdims=1),
        helper.make_node("Identity", ["c_in"], ["c_out"], name="body_cond"),
    ], [vi("i", I64, []), vi("c_in", TP.BOOL, []), vi("v_in", F, [1, 3])],
        [vi("c_out", TP.BOOL, []), vi("v_out", F, [1, 3]), vi("s_out", F, [1, 1])])
    v, s = c.node("Loop", [m, cond, x], ["V", "S"], body=body)
    c.output_shapes[s] = [4, 1, 1]
    c.output_shapes[v] = [1, 3]
    c.output(v, s)
    yield c

    c = Case("loop_condition_stops", 11,
             "Loop without a trip count: runs while the body's condition (sum below a limit) "
             "holds; the carried value doubles each time")
    x = c.input("X", np.abs(cf_randn(2, 2)) + 0.1)
    cond = c.input("GO", np.array(True))
    limit = c.init("LIMIT", np.float32(50.0))
    body = subgraph("grow_body", [
        helper.make_node("Add", ["acc_in", "acc_in"], ["acc_out"], name="grow_double"),
        helper.make_node("ReduceSum", ["acc_out"], ["total"], name="grow_sum", keepdims=0),
        helper.make_node("Less", ["total", limit], ["c_out"], name="grow_less"),
    ], [vi("it", I64, []), vi("c_in", TP.BOOL, []), vi("acc_in", F, [2, 2])],
        [vi("c_out", TP.BOOL, []), vi("acc_out", F, [2, 2])])
    c.output_shapes["ACC"] = [2, 2]
    c.output(c.node("Loop", ["", cond, x], "ACC", body=body))
    yield c

    c = Case("loop_with_nested_if", 13,
             "Loop M=3 whose body holds an If (iteration < 2); the then-branch reads a "
             "weight stored inside it and the loop-carried value")
    x = c.input("X", cf_randn(2, 3))
    m = c.init("M", np.int64(3))
    two = c.init("TWO", np.int64(2))
    then_g = subgraph("parity_then", [
        helper.make_node("Mul", ["h_in", "SCALE"], ["pt_out"], name="parity_then_mul"),
    ], [], [vi("pt_out")], inits=[numpy_helper.from_array(cf_randn(3), "SCALE")])
    else_g = subgraph("parity_else", [
        helper.make_node("Relu", ["h_in"], ["pe_relu"], name="parity_else_relu"),
        helper.make_node("Add", ["pe_relu", x], ["pe_out"], name="parity_else_add"),
    ], [], [vi("pe_out")])
    body = subgraph("parity_body", [
        helper.make_node("Less", ["i", two], ["even"], name="body_early"),
        helper.make_node("If", ["even"], ["h_out"], name="body_if", then_branch=then_g, else_branch=else_g),
        helper.make_node("Identity", ["c_in"], ["c_out"], name="body_cond_id"),
    ], [vi("i", I64, []), vi("c_in", TP.BOOL, []), vi("h_in", F, [2, 3])],
        [vi("c_out", TP.BOOL, []), vi("h_out", F, [2, 3])])
    c.output_shapes["H"] = [2, 3]
    c.output(c.node("Loop", [m, "", x], "H", body=body))
    yield c


def scan_cases():
    c = Case("scan_axes_directions", 11,
             "Scan over two inputs (axis 0 forward, axis 1 reversed) with a running state, an "
             "outer-scope weight, and two scan outputs (axis 0 reversed, axis 1 forward)")
    init = c.input("S0", cf_randn(2))
    a = c.input("A", cf_randn(5, 2))
    b = c.input("B", cf_randn(2, 5))
    w = c.init("W", cf_randn(2))
    body = subgraph("scan_body", [
        helper.make_node("Add", ["s_in", "a_t"], ["s_add"], name="scan_add"),
        helper.make_node("Mul", ["b_t", w], ["bw"], name="scan_mul"),
        helper.make_node("Add", ["s_add", "bw"], ["s_out"], name="scan_add2"),
        helper.make_node("Tanh", ["s_out"], ["y_t"], name="scan_tanh"),
        helper.make_node("Neg", ["s_out"], ["z_t"], name="scan_neg"),
    ], [vi("s_in", F, [2]), vi("a_t", F, [2]), vi("b_t", F, [2])],
        [vi("s_out", F, [2]), vi("y_t", F, [2]), vi("z_t", F, [2])])
    s, y, z = c.node("Scan", [init, a, b], ["S", "Y", "Z"], body=body, num_scan_inputs=2,
                     scan_input_axes=[0, 1], scan_input_directions=[0, 1],
                     scan_output_axes=[0, 1], scan_output_directions=[1, 0])
    c.output_shapes[y] = [5, 2]
    c.output_shapes[z] = [2, 5]
    c.output_shapes[s] = [2]
    c.output(s, y, z)
    yield c

    c = Case("scan_cumsum_v9", 9, "Scan opset 9: cumulative sum over axis 0 of a [4, 3] input")
    init = c.input("S0", np.zeros(3, np.float32))
    a = c.input("A", cf_randn(4, 3))
    body = subgraph("cumsum_body", [
        helper.make_node("Add", ["acc", "row"], ["acc_out"], name="cumsum_add"),
        helper.make_node("Identity", ["acc_out"], ["row_out"], name="cumsum_id"),
    ], [vi("acc", F, [3]), vi("row", F, [3])], [vi("acc_out", F, [3]), vi("row_out", F, [3])])
    s, y = c.node("Scan", [init, a], ["S", "Y"], body=body, num_scan_inputs=1)
    c.output_shapes[y] = [4, 3]
    c.output_shapes[s] = [3]
    c.output(s, y)
    yield c


def control_flow_cases():
    yield from if_cases_with_weights()
    yield from if_nested_case()
    yield from loop_cases()
    yield from scan_cases()


ALL = [
    conv_cases, conv_transpose_cases, gemm_cases, matmul_cases, binary_cases,
    unary_cases, softmax_cases, norm_cases, pool_cases, reduce_cases,
    shape_op_cases, resize_cases, cast_cases, extra_cases, loader_cases,
    dynamic_cases, old_opset_cases, control_flow_cases,
]


def main(argv):
    repo = Path(__file__).resolve().parent.parent
    outdir = Path(argv[1]) if len(argv) > 1 else repo / "tests" / "fixtures" / "conformance"
    outdir.mkdir(parents=True, exist_ok=True)
    manifest = []
    names = set()
    # The cases of the later operator families live in their own module (imported here, not
    # at the top: it imports this module's Case).
    from conformance_ops import OP_CASES

    for gen in ALL + OP_CASES:
        for case in gen():
            if case.name in names:
                raise RuntimeError(f"duplicate case name {case.name}")
            names.add(case.name)
            try:
                manifest.append(emit(case, outdir))
            except Exception as exc:  # make failures point at the case
                raise RuntimeError(f"case {case.name} failed: {exc}") from exc
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(f.stat().st_size for f in outdir.iterdir() if f.is_file())
    n_loader = sum(1 for m in manifest if m["kind"] == "loader")
    print(f"wrote {len(manifest)} cases ({n_loader} loader) to {outdir}, {total / 1024:.1f} KiB")


if __name__ == "__main__":
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    main(sys.argv)
