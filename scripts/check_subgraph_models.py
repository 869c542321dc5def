#!/usr/bin/env python3
"""Reference outputs and QDQ checks for a real model whose weights live in subgraphs.

Silero VAD (../shared/real_models/silero-vad/silero_vad.onnx) keeps every weight in `Constant`
nodes inside the branches of `If` nodes, nested up to four deep, with LSTMs among them. For it
this script writes tests/fixtures/real_models/silero_vad/:

  * `NNN.inputs.npz` / `NNN.outputs.npz`: the realistic feeds of make_feeds.py (one sample per
    file, read from ../feeds/silero_vad/) and onnxruntime's float outputs on each;
  * `manifest.json`: every Conv weight (and LSTM weight held as a constant) inside a subgraph
    (the path of the subgraph holding it, its name and shape, as onnx reads the file), the
    node count of all graphs without Constant nodes, and for each QDQ export
    (`quantscope export --format qdq --float-activations`, int8 per channel -> opset 16 as is,
    int4 per channel -> lifted to opset 21) the SHA-256 of the file, the onnx.checker verdict,
    the DequantizeLinear nodes per graph (top graph and each subgraph path), and the worst
    output SQNR (each output over all samples) of onnxruntime running it against the float
    model;
  * `NNN.qdq_<weights>.outputs.npz`: onnxruntime's outputs of each QDQ file.

tests/real_subgraphs.rs re-exports through the library and must hash to the checked file, and
its fake-quantized run must reproduce onnxruntime's QDQ outputs. Exits non-zero when a check
fails.

Usage: scripts/check_subgraph_models.py [--quantscope PATH] [--feeds DIR]
(build first: cargo build --release --bin quantscope; the feeds are make_feeds.py's, by default
../shared/real_models/feeds/silero_vad, e.g. --feeds /work/feeds/silero_vad for a copy run
elsewhere)
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
MODEL = ROOT.parent / "shared/real_models/silero-vad/silero_vad.onnx"
OUT = ROOT / "tests/fixtures/real_models/silero_vad"
WEIGHTS = ("int8", "int4")


def subgraphs(graph, path=""):
    """(path, graph) for the graph and every subgraph under it, depth first."""
    yield path, graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from subgraphs(a.g, f"{path}{node.name}/{a.name}/")


def layer_weights(model):
    """Every Conv and LSTM weight held by a subgraph's Constant node or initializer."""
    found = []
    for path, g in subgraphs(model.graph):
        if not path:
            continue
        consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t)
                  for n in g.node if n.op_type == "Constant" and n.attribute[0].name == "value"}
        consts.update({i.name: onnx.numpy_helper.to_array(i) for i in g.initializer})
        for n in g.node:
            if n.op_type not in ("Conv", "LSTM"):
                continue
            positions = (1,) if n.op_type == "Conv" else (1, 2)
            for k in positions:
                if n.input[k] in consts:
                    found.append({"subgraph": path.rstrip("/"), "op": n.op_type, "name": n.input[k],
                                  "shape": list(consts[n.input[k]].shape)})
    return found


def nodes_without_constants(graph):
    """Nodes of the graph and all its subgraphs, Constant nodes (folded on load) left out."""
    return sum(n.op_type != "Constant" for _, g in subgraphs(graph) for n in g.node)


LAYOUT_OPS = {"Unsqueeze", "Squeeze", "Reshape", "Flatten", "Transpose", "Identity", "Slice", "Concat"}
WEIGHT_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (1,), "MatMul": (1,),
                 "LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2)}


def folded_layout_nodes(graph, outer=frozenset()):
    """Layout nodes Quantscope folds into weights on load (load::onnx::weight_layouts): in every
    graph, the nodes of chains of layout ops whose inputs are all constants (of this graph or an
    enclosing one) and that end at a weight input of a quantizable layer."""
    consts = set(outer) | {i.name for i in graph.initializer} \
        | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    count = sum(folded_layout_nodes(a.g, consts) for n in graph.node for a in n.attribute
                if a.type == onnx.AttributeProto.GRAPH)
    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}

    def foldable(name):
        if name in consts:
            return True
        n = producer.get(name)
        return (n is not None and n.op_type in LAYOUT_OPS and name not in outputs
                and all(foldable(i) for i in n.input if i))

    folded, stack = set(), [n.input[k] for n in graph.node
                            for k in WEIGHT_INPUTS.get(n.op_type, ()) if k < len(n.input)]
    while stack:
        name = stack.pop()
        if not name or name in consts or name in folded or not foldable(name):
            continue
        folded.add(name)
        stack.extend(producer[name].input)
    return count + len(folded)


def dequantize_nodes(model):
    counts = {}
    for path, g in subgraphs(model.graph):
        k = sum(n.op_type == "DequantizeLinear" for n in g.node)
        if k:
            counts[path.rstrip("/") or "(top)"] = k
    return counts


def sqnr_db(ref, got):
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    noise = np.sum((ref - got) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref ** 2) / noise))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quantscope", default=str(ROOT / "target/release/quantscope"))
    parser.add_argument("--feeds", default=str(MODEL.parent.parent / "feeds/silero_vad"),
                        help="make_feeds.py's silero_vad folder (it writes beside itself)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    model = onnx.load(MODEL)
    float_session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    names = [o.name for o in float_session.get_outputs()]
    feeds = sorted(Path(args.feeds).glob("*.npz"))
    if not feeds:
        sys.exit(f"no feeds in {args.feeds}: run ../shared/real_models/make_feeds.py")
    references = []
    for k, path in enumerate(feeds):
        inputs = dict(np.load(path))
        outputs = dict(zip(names, float_session.run(None, inputs)))
        np.savez(OUT / f"{k:03}.inputs.npz", **inputs)
        np.savez(OUT / f"{k:03}.outputs.npz", **outputs)
        references.append((inputs, outputs))

    manifest = {"model": "../shared/real_models/silero-vad/silero_vad.onnx",
                "onnxruntime": ort.__version__, "onnx": onnx.__version__,
                "samples": len(feeds), "layer_weights": layer_weights(model),
                "nodes_without_constants": nodes_without_constants(model.graph),
                "layout_nodes_folded": folded_layout_nodes(model.graph), "qdq": {}}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for weights in WEIGHTS:
            out = Path(tmp) / f"silero_vad.{weights}.onnx"
            done = subprocess.run([args.quantscope, "export", str(MODEL), "--data", str(feeds[0]),
                                   "--format", "qdq", "--float-activations", "--weights", weights,
                                   "--out", str(out)], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{weights}: export failed: {done.stderr.strip()}")
                failed = True
                continue
            qdq = onnx.load(out)
            record = {"sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
                      "opset": qdq.opset_import[0].version,
                      "dequantize_linear": dequantize_nodes(qdq)}
            try:
                onnx.checker.check_model(qdq, full_check=True)
                record["checker"] = True
            except Exception as e:  # noqa: BLE001 - recorded as the verdict
                record["checker"] = str(e).splitlines()[0]
                failed = True
            session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            pairs = {n: ([], []) for n in names}
            for k, (inputs, outputs) in enumerate(references):
                got = dict(zip(names, session.run(None, inputs)))
                np.savez(OUT / f"{k:03}.qdq_{weights}.outputs.npz", **got)
                for n in names:
                    pairs[n][0].append(outputs[n].ravel())
                    pairs[n][1].append(got[n].ravel())
            # Per output over all samples (one sample's speech probability is a single value).
            worst = min(sqnr_db(np.concatenate(r), np.concatenate(g)) for r, g in pairs.values())
            record["worst_output_sqnr_db"] = round(worst, 2)
            manifest["qdq"][weights] = record
            print(f"{weights}: checker {record['checker']}, opset {record['opset']}, "
                  f"worst output SQNR {worst:.2f} dB, DequantizeLinear {record['dequantize_linear']}")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
