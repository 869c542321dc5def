#!/usr/bin/env python3
"""Where the time goes, per operator type: Quantscope against onnxruntime, one thread each.

Usage:
    python scripts/profile_ops.py [--only NAME ...] [--skip-large] [--runs N] [--top K]
                                  [--perf] [--markdown FILE] [--json FILE]

For every workload of scripts/bench_vs_ort.py that Quantscope runs (same models, same inputs):

  * onnxruntime, intra_op_num_threads=1, `enable_profiling`: each kernel's time in the N runs
    after warm-up, summed by op type (of onnxruntime's optimized graph: its fused kernels, e.g.
    a Conv carrying its activation or an NCHWc Conv, count as Conv; ReorderInput/Output are the
    layout changes NCHWc needs).
  * Quantscope, RAYON_NUM_THREADS=1, `quantscope bench --per-node`: each
    node's median time (the gap between consecutive tensors the run's hook sees, so it includes
    the output's allocation), summed by op type of the original graph.  The hooked run is not
    the plain run (it stays on the calling thread); the sum over nodes is printed beside the
    plain median so the difference is visible.
  * Convolutions by kind, both sides, with their arithmetic rate: depthwise, pointwise (1x1),
    small-channel (input channels x kernel taps per group <= 32, e.g. a stem conv on RGB),
    grouped, and dense kxk.  Shapes come from the tensors onnxruntime computes when every node
    output is made a graph output (original graph, optimizations off); onnxruntime's own conv
    kernels are classified from the shapes its profile records.
  * With --perf: `perf record -e cpu-clock` of the plain 1-thread Quantscope run (needs perf;
    software clock, so it works without hardware counters), the top source lines with their
    enclosing Rust function, and the top symbols.

Output: per model a Markdown section (stdout, and --markdown FILE), the numbers as JSON (--json).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_ort as bench  # noqa: E402  (same workloads, contenders and thread settings)

REPO = bench.REPO
PER_NODE_LINE = re.compile(r"^\s*([0-9.]+)\s+([0-9.]+)%\s+(.*) \(([A-Za-z0-9_]+)\)$")


# ---------------------------------------------------------------------------
# Shapes of the original graph, and convolution kinds
# ---------------------------------------------------------------------------


def node_names(model: onnx.ModelProto):
    """The names Quantscope gives the nodes (unnamed ones become '<op>_<index>', duplicates get
    '_<index>'), in graph order, as its loader does."""
    explicit = {n.name for n in model.graph.node if n.name}
    used, out = set(), []
    for index, n in enumerate(model.graph.node):
        if not n.name:
            cand = f"{n.op_type}_{index}"
            cand = f"{cand}_{index}" if cand in explicit else cand
        else:
            cand = f"{n.name}_{index}" if n.name in used else n.name
        stem, k = cand, 1
        while cand in used:
            cand, k = f"{stem}_{k}", k + 1
        used.add(cand)
        out.append(cand)
    return out


def all_shapes(model_path: Path, feeds: dict):
    """Shape of every tensor of the original graph on these feeds (onnxruntime, no rewriting)."""
    import onnxruntime as ort

    m = onnx.load(str(model_path))
    known = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in known:
                m.graph.output.append(onnx.ValueInfoProto(name=o))
                known.add(o)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    shapes = {n: tuple(v.shape) for n, v in zip(names, sess.run(None, feeds))}
    for init in m.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    for k, v in feeds.items():
        shapes[k] = tuple(v.shape)
    return m, shapes


def conv_kind(x, w, group):
    """Kind of a convolution from its input [N, C, ...] and weight [M, C/g, k...] shapes."""
    cin_g, taps = w[1], int(np.prod(w[2:])) if len(w) > 2 else 1
    if group > 1 and cin_g == 1 and group == x[1]:
        return "depthwise"
    if group > 1:
        return "grouped"
    if taps == 1:
        return "pointwise 1x1"
    if cin_g * taps <= 32:
        return "small-channel"
    return "dense kxk"


def conv_flops(w, y):
    """Multiply-adds x2 of a convolution with weight `w` and output `y`."""
    return 2.0 * float(np.prod(y)) * float(np.prod(w[1:]))


def original_convs(m: onnx.ModelProto, shapes: dict):
    """Quantscope node name -> (kind, flops) for every Conv of the original graph."""
    out = {}
    for name, n in zip(node_names(m), m.graph.node):
        if n.op_type != "Conv" or len(n.input) < 2:
            continue
        x, w, y = (shapes.get(t) for t in (n.input[0], n.input[1], n.output[0]))
        if not (x and w and y):
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        out[name] = (conv_kind(x, w, group), conv_flops(w, y))
    return out


# ---------------------------------------------------------------------------
# onnxruntime profile
# ---------------------------------------------------------------------------


def ort_profile(w: bench.Workload, runs: int, tmp: Path):
    sess = bench.ort_session(w.model, 1, profile_prefix=str(tmp / f"ort_{w.name}"))
    for _ in range(bench.ORT_WARMUP):
        sess.run(None, w.feeds)
    walls, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        sess.run(None, w.feeds)
        walls.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    events = json.loads(Path(sess.end_profiling()).read_text())
    model_runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    timed = model_runs[bench.ORT_WARMUP:]
    start = timed[0]["ts"] if timed else 0
    # Per kernel: its median over the timed runs (as Quantscope's per-node figures are), so a
    # run the shared machine preempted does not inflate the sums.
    per_node = collections.defaultdict(list)
    info = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < start:
            continue
        per_node[e["name"]].append(e["dur"] / 1e3)
        info[e["name"]] = e.get("args", {})
    by_op = collections.Counter()
    convs = collections.defaultdict(lambda: [0, 0.0, 0.0])  # kind -> [count, flops, ms]
    for name, durs in per_node.items():
        args = info[name]
        op = args.get("op_name", "?")
        ms = float(np.median(durs))
        by_op[op] += ms
        if op in ("Conv", "FusedConv", "NchwcConv"):
            shapes = [next(iter(s.values())) for s in args.get("input_type_shape", [])]
            out = [next(iter(s.values())) for s in args.get("output_type_shape", [])]
            if len(shapes) >= 2 and out:
                x, wt, y = shapes[0], shapes[1], out[0]
                c = convs[conv_kind(x, wt, x[1] // wt[1] if wt[1] else 1)]
                c[0] += 1
                c[1] += conv_flops(wt, y)
                c[2] += ms
    for f in glob.glob(str(tmp / f"ort_{w.name}*.json")):
        os.remove(f)
    return {"wall_ms": float(np.median(walls)), "cpu_ms": float(np.median(cpu)),
            "by_op": dict(by_op),
            "convs": {k: {"count": v[0], "gflop": v[1] / 1e9, "ms": v[2]}
                      for k, v in convs.items()}}


# ---------------------------------------------------------------------------
# Quantscope per node, and perf
# ---------------------------------------------------------------------------


def qs_cpu_per_run(w: bench.Workload, args, feed: Path):
    """CPU milliseconds of one plain 1-thread run: rusage of `bench --iters N` minus that of
    `bench --iters 1` (same loading and warm-ups), over N - 1; and the plain median."""
    one = bench.qs_bench(args.quantscope, w.model, feed, 1, 1)
    many = bench.qs_bench(args.quantscope, w.model, feed, args.runs, 1)
    per_run = (many["process_cpu_ms"] - one["process_cpu_ms"]) / max(args.runs - 1, 1)
    return per_run, float(many["median_ms"])


def qs_profile(w: bench.Workload, args, feed: Path, conv_info: dict):
    res = bench.qs_bench(args.quantscope, w.model, feed, args.runs, 1, per_node=True)
    cpu_ms, wall_ms = qs_cpu_per_run(w, args, feed)
    by_op = collections.Counter()
    convs = collections.defaultdict(lambda: [0, 0.0, 0.0])
    nodes = []
    for line in res["per_node_stderr"].splitlines():
        mt = PER_NODE_LINE.match(line)
        if not mt:
            continue
        ms, name, op = float(mt.group(1)), mt.group(3), mt.group(4)
        by_op[op] += ms
        nodes.append((ms, name, op))
        if op == "Conv" and name in conv_info:
            kind, flops = conv_info[name]
            c = convs[kind]
            c[0] += 1
            c[1] += flops
            c[2] += ms
    nodes.sort(reverse=True)
    return {"wall_ms": wall_ms, "cpu_ms": cpu_ms, "nodes_sum_ms": sum(by_op.values()),
            "by_op": dict(by_op), "top_nodes": nodes[:args.top],
            "convs": {k: {"count": v[0], "gflop": v[1] / 1e9, "ms": v[2]}
                      for k, v in convs.items()}}


def short_path(path: str):
    """A source path as a reader wants it: repo-relative, `crate-x.y/...`, or `core/...`."""
    if path.startswith(str(REPO) + "/"):
        return path[len(str(REPO)) + 1:]
    for marker in ("/registry/src/", "/library/"):
        if marker in path:
            rest = path.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker == "/registry/src/" else rest
    return path.rsplit("/", 1)[-1]


def enclosing_fn(srcline: str):
    """'/…/src/engine/ops/conv.rs:1214' -> 'src/engine/ops/conv.rs:1214 in direct_plane'."""
    m = re.match(r"(.+\.rs):(\d+)$", srcline)
    if not m:
        return short_path(srcline)
    path, line = Path(m.group(1)), int(m.group(2))
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return f"{short_path(m.group(1))}:{line}"
    name = ""
    if 0 < line <= len(lines):
        for ln in reversed(lines[:line]):
            f = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:unsafe\s+)?fn\s+(\w+)", ln)
            if f:
                name = f" in {f.group(1)}"
                break
    return f"{short_path(m.group(1))}:{line}{name}"


def perf_report(data: Path, sort: str, top: int):
    out = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", sort,
                          "--full-source-path", "--stdio"], capture_output=True, text=True, timeout=900).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(.*\S)", line)
        if m and not line.startswith("#"):
            rows.append((float(m.group(1)), m.group(2)))
        if len(rows) >= top:
            break
    return rows


def qs_perf(w: bench.Workload, args, feed: Path, tmp: Path, run_ms: float):
    """perf of the plain run: enough iterations for ~3 s of samples, so that model loading and
    the two warm-up runs (also sampled) stay a small share."""
    data = tmp / "perf.data"
    iters = max(args.runs, int(3000 / max(run_ms, 0.01)))
    cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1000", "-o", str(data),
           str(args.quantscope), "bench", str(w.model), "--data", str(feed), "--iters",
           str(iters)]
    subprocess.run(cmd, env=dict(os.environ, **bench.QS_ENV[1]), capture_output=True,
                   check=True, timeout=1800)
    out = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort",
                          "sym,srcline", "--full-source-path", "--stdio"],
                         capture_output=True, text=True, timeout=1800).stdout
    data.unlink()
    where = collections.Counter()
    for line in out.splitlines():
        m = PERF_ROW.match(line)
        if m:
            where[perf_category(m.group(2), m.group(3), (m.group(4) or "").strip())] += float(
                m.group(1))
    return {"where": where.most_common(args.top)}


PERF_ROW = re.compile(r"\s*([0-9.]+)%\s+\[(.)\]\s+(.+?)(?:\s{2,}(\S.*))?$")


def perf_category(kind: str, sym: str, srcline: str):
    """Where a perf sample goes: the GEMM library, a Quantscope kernel function, the OS."""
    if kind == "k":
        return "OS kernel (page faults, freeing memory, scheduling)"
    if sym.startswith("gemm_common::pack_operands"):
        return "gemm crate packing"
    if sym.startswith(("gemm_f32::", "gemm_common::")):
        return "gemm crate micro-kernel and driver"
    if re.match(r"_*(memset|memmove|memcpy|malloc|free|_int_)", sym) or "malloc.c" in srcline:
        return "libc memset/memcpy/malloc"
    if sym.startswith("libm::"):
        return "libm (erf, exp)"
    if str(REPO / "src") in srcline:
        return enclosing_fn(srcline).split(":")[0] + " " + enclosing_fn(srcline).split(" in ")[-1]
    m = re.match(r"quantscope::engine::ops::(\w+)::(\w+)", sym)
    if m:
        return f"src/engine/ops/{m.group(1)}.rs {m.group(2)}"
    if sym.startswith("quantscope::"):
        return sym.split("::{{")[0]
    return "other (inlined iterator/rayon glue, std)"


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def scale_to_cpu(side: dict):
    """Scales one side's per-op times so they add up to its CPU time per run.

    On a loaded machine the per-node wall-clock times include waiting for a core (Quantscope's
    hooked run hands every parallel loop to a pool thread, which has to be woken and scheduled);
    CPU time does not.  The shares stay as measured; the factor is reported."""
    total = sum(side["by_op"].values())
    side["scale"] = side["cpu_ms"] / total if total > 0 and side["cpu_ms"] > 0 else 1.0
    f = side["scale"]
    side["by_op"] = {k: v * f for k, v in side["by_op"].items()}
    for c in side["convs"].values():
        c["ms"] *= f
    if "top_nodes" in side:
        side["top_nodes"] = [(ms * f, name, op) for ms, name, op in side["top_nodes"]]
    if "nodes_sum_ms" in side:
        side["nodes_sum_ms"] *= f


def section(w, row):
    qs, ort = row["qs"], row["ort"]
    md = [f"### {w.name} (batch {w.batch})", ""]
    md.append(f"1 thread, CPU ms per run: onnxruntime {ort['cpu_ms']:.3g}, Quantscope "
              f"{qs['cpu_ms']:.3g} (ratio {qs['cpu_ms'] / max(ort['cpu_ms'], 1e-9):.2f}×); wall "
              f"medians {ort['wall_ms']:.3g} and {qs['wall_ms']:.3g} ms.  Per-op times below are "
              f"scaled to the CPU time (onnxruntime's kernel medians ×{ort['scale']:.2f}, "
              f"Quantscope's node medians ×{qs['scale']:.2f}).")
    md += ["", "| Quantscope op | ms | share | onnxruntime op | ms | share |", "|---|---:|---:|---|---:|---:|"]
    qs_ops = sorted(qs["by_op"].items(), key=lambda kv: -kv[1])[: row["top"]]
    ort_ops = sorted(ort["by_op"].items(), key=lambda kv: -kv[1])[: row["top"]]
    qt, ot = max(qs["nodes_sum_ms"], 1e-9), max(sum(ort["by_op"].values()), 1e-9)
    for i in range(max(len(qs_ops), len(ort_ops))):
        a = qs_ops[i] if i < len(qs_ops) else None
        b = ort_ops[i] if i < len(ort_ops) else None
        md.append("| " + " | ".join([
            a[0] if a else "", f"{a[1]:.3g}" if a else "", f"{100 * a[1] / qt:.0f}%" if a else "",
            b[0] if b else "", f"{b[1]:.3g}" if b else "", f"{100 * b[1] / ot:.0f}%" if b else "",
        ]) + " |")
    kinds = sorted(set(qs["convs"]) | set(ort["convs"]),
                   key=lambda k: -qs["convs"].get(k, {}).get("ms", 0))
    if kinds:
        md += ["", "| conv kind | QS nodes | GFLOP | QS ms | QS GFLOP/s | ORT kernels | ORT ms "
               "| ORT GFLOP/s | QS/ORT |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for k in kinds:
            q, o = qs["convs"].get(k), ort["convs"].get(k)
            qr = q["gflop"] / (q["ms"] / 1e3) if q and q["ms"] > 0 else None
            orr = o["gflop"] / (o["ms"] / 1e3) if o and o["ms"] > 0 else None
            md.append("| " + " | ".join([
                k, str(q["count"]) if q else "—", f"{q['gflop']:.3g}" if q else "—",
                f"{q['ms']:.3g}" if q else "—", f"{qr:.1f}" if qr else "—",
                str(o["count"]) if o else "—", f"{o['ms']:.3g}" if o else "—",
                f"{orr:.1f}" if orr else "—",
                f"{q['ms'] / o['ms']:.1f}×" if q and o and o["ms"] > 0 else "—",
            ]) + " |")
    md += ["", "Slowest Quantscope nodes: " + ", ".join(
        f"{name} ({op}) {ms:.3g} ms" for ms, name, op in qs["top_nodes"][:6])]
    if row.get("perf"):
        md += ["", "perf samples of the plain 1-thread Quantscope run (CPU clock, whole process "
               "incl. loading), by where they land: " + "; ".join(
                   f"{p:.1f}% {s}" for s, p in row["perf"]["where"])]
    return "\n".join(md) + "\n"


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME")
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--runs", type=int, default=10,
                   help="profiled runs per side, at least 2 (default 10)")
    p.add_argument("--top", type=int, default=10, help="rows per list (default 10)")
    p.add_argument("--perf", action="store_true", help="also perf-record Quantscope")
    p.add_argument("--quantscope", type=Path,
                   default=REPO / "target" / "release" / "quantscope")
    p.add_argument("--models", type=Path, default=REPO / "bench_models")
    p.add_argument("--real-models", type=Path, default=bench.find_real_models())
    p.add_argument("--samples", type=Path, default=REPO / "sample_models")
    p.add_argument("--markdown", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    args.quantscope = args.quantscope.resolve()
    if not args.quantscope.exists():
        print(f"quantscope binary not found at {args.quantscope}; build it with "
              f"`cargo build --release`", file=sys.stderr)
        return 2
    out_md = [f"## Per-op profile, 1 thread ({time.strftime('%Y-%m-%d %H:%M')}, load average "
              f"{bench.load_avg()})", ""]
    rows = []
    with tempfile.TemporaryDirectory(prefix="qs_profile_") as tmp_name:
        tmp = Path(tmp_name)
        for w in bench.all_workloads(args, tmp):
            feed = bench.write_feed(w, tmp)
            print(f"profiling {w.name} (batch {w.batch}) ...", file=sys.stderr, flush=True)
            try:
                m, shapes = all_shapes(w.model, w.feeds)
                row = {"model": w.name, "batch": w.batch, "top": args.top,
                       "qs": qs_profile(w, args, feed, original_convs(m, shapes))}
                del m, shapes
            except Exception as exc:
                out_md.append(f"### {w.name}: not profiled ({str(exc).strip()[:200]})\n")
                continue
            row["ort"] = ort_profile(w, args.runs, tmp)
            scale_to_cpu(row["qs"])
            scale_to_cpu(row["ort"])
            if args.perf:
                row["perf"] = qs_perf(w, args, feed, tmp, row["qs"]["wall_ms"])
            rows.append(row)
            text = section(w, row)
            out_md.append(text)
            print(text, flush=True)
    out_md.append(f"load average at the end: {bench.load_avg()}")
    if args.markdown:
        args.markdown.write_text("\n".join(out_md) + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
