#!/usr/bin/env python3
"""Compare Quantscope's inference speed and outputs with onnxruntime.

Usage:
    python scripts/bench_vs_ort.py [--models DIR] [--quantscope PATH] [--iters K]
                                   [--samples DIR] [--tol T] [--ort-only]
                                   [--json-out FILE]

Workloads (model, batch):
    resnet18   1   DIR/resnet18.onnx with DIR/resnet18_b1.npy
    resnet18   8   DIR/resnet18.onnx with DIR/resnet18_b8.npy
    digits_cnn 64  SAMPLES/digits_cnn.onnx with the first 64 rows of
                   SAMPLES/data/digits_test_x.npy (written to DIR/digits_cnn_b64.npy)

DIR defaults to bench_models/ (git-ignored); the ResNet files are generated with
scripts/make_resnet18.py when missing.  SAMPLES defaults to sample_models/; the
digits workload is skipped if its files are absent.

For each workload onnxruntime (CPUExecutionProvider, default graph
optimizations) is timed with intra_op_num_threads=1 and =2: warm-up runs first,
then the median of K timed runs.  Quantscope is then run on the same model and
input file:

    PATH bench MODEL --data INPUT.npy --iters K
        -> one JSON line {"model", "batch", "iters", "median_ms", "min_ms"}
    PATH run MODEL --data INPUT.npy --out OUT.npz
        -> outputs; the `logits` key (or the model's output name) is compared
           with onnxruntime's output (max abs difference must be <= --tol)

PATH defaults to target/release/quantscope.  If it does not exist the script
says how to build it and exits 2 (unless --ort-only, which times only
onnxruntime).  Exit status is 1 if any Quantscope run failed or an output
differed by more than the tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
WARMUP = 3


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=REPO / "bench_models",
                   help="directory for resnet18.onnx and its inputs (default: bench_models/)")
    p.add_argument("--quantscope", type=Path, default=REPO / "target" / "release" / "quantscope",
                   help="quantscope binary (default: target/release/quantscope)")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per measurement")
    p.add_argument("--samples", type=Path, default=REPO / "sample_models",
                   help="directory with digits_cnn.onnx and data/digits_test_x.npy")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="max abs difference allowed between ORT and Quantscope outputs")
    p.add_argument("--ort-only", action="store_true",
                   help="time only onnxruntime (no quantscope binary needed)")
    p.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    if args.iters < 1:
        p.error("--iters must be >= 1")
    return args


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------


def ensure_resnet(models_dir: Path):
    needed = [models_dir / n for n in ("resnet18.onnx", "resnet18_b1.npy", "resnet18_b8.npy")]
    if all(p.exists() for p in needed):
        return
    print(f"generating ResNet-18 into {models_dir} ...", flush=True)
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_resnet18.py"), str(models_dir)],
                   check=True)


def workloads(args):
    models_dir = args.models.resolve()
    models_dir.mkdir(parents=True, exist_ok=True)
    ensure_resnet(models_dir)
    out = [
        ("resnet18", 1, models_dir / "resnet18.onnx", models_dir / "resnet18_b1.npy"),
        ("resnet18", 8, models_dir / "resnet18.onnx", models_dir / "resnet18_b8.npy"),
    ]
    samples = args.samples.resolve()
    digits_model = samples / "digits_cnn.onnx"
    digits_data = samples / "data" / "digits_test_x.npy"
    if digits_model.exists() and digits_data.exists():
        x = np.load(digits_data)[:64].astype(np.float32)
        inp = models_dir / "digits_cnn_b64.npy"
        np.save(inp, x)
        out.append(("digits_cnn", x.shape[0], digits_model, inp))
    else:
        print(f"note: skipping digits_cnn (missing {digits_model} or {digits_data})")
    return out


# ---------------------------------------------------------------------------
# onnxruntime side
# ---------------------------------------------------------------------------


def ort_session(model: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # graph_optimization_level left at its default (ORT_ENABLE_ALL)
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def time_ort(model: Path, x: np.ndarray, threads: int, iters: int):
    sess = ort_session(model, threads)
    feed = {sess.get_inputs()[0].name: x}
    out_name = sess.get_outputs()[0].name
    for _ in range(WARMUP):
        y = sess.run([out_name], feed)[0]
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run([out_name], feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), out_name, y


# ---------------------------------------------------------------------------
# Quantscope side
# ---------------------------------------------------------------------------


def run_cmd(cmd):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}: " + " | ".join(tail))
    return proc.stdout


def quantscope_bench(binary: Path, model: Path, data: Path, iters: int):
    stdout = run_cmd([binary, "bench", model, "--data", data, "--iters", iters])
    lines = [ln for ln in stdout.splitlines() if ln.strip().startswith("{")]
    if not lines:
        raise RuntimeError(f"quantscope bench printed no JSON line: {stdout.strip()[:200]!r}")
    result = json.loads(lines[-1])
    for key in ("median_ms", "min_ms"):
        if key not in result:
            raise RuntimeError(f"quantscope bench JSON lacks {key!r}: {lines[-1]}")
    return result


def quantscope_output(binary: Path, model: Path, data: Path, ort_name: str):
    with tempfile.TemporaryDirectory(prefix="qs_bench_") as tmp:
        out = Path(tmp) / "out.npz"
        run_cmd([binary, "run", model, "--data", data, "--out", out])
        with np.load(out) as npz:
            keys = list(npz.keys())
            for key in ("logits", ort_name):
                if key in npz:
                    return npz[key]
            if len(keys) == 1:
                return npz[keys[0]]
            raise RuntimeError(f"quantscope run output has no 'logits' key (keys: {keys})")


# ---------------------------------------------------------------------------


def load_avg():
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def main(argv):
    args = parse_args(argv)
    binary = args.quantscope.resolve()
    if not args.ort_only and not binary.exists():
        print(f"quantscope binary not found at {binary}.\n"
              f"Build it first with:\n    cargo build --release\n"
              f"(or pass --quantscope PATH, or --ort-only to time only onnxruntime)",
              file=sys.stderr)
        return 2

    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, iters={args.iters}, "
          f"warm-up={WARMUP}, load average {load_avg()}", flush=True)
    rows = []
    failures = 0
    for name, batch, model, data in workloads(args):
        x = np.load(data).astype(np.float32, copy=False)
        row = {"model": name, "batch": batch, "model_path": str(model), "data": str(data)}
        print(f"[{name} b{batch}] onnxruntime ...", flush=True)
        t1, t1min, out_name, ref = time_ort(model, x, 1, args.iters)
        t2, t2min, _, _ = time_ort(model, x, 2, args.iters)
        row.update(ort_1t_ms=t1, ort_1t_min_ms=t1min, ort_2t_ms=t2, ort_2t_min_ms=t2min,
                   qs_ms=None, qs_min_ms=None, ratio=None, max_abs_diff=None, error=None)
        if not args.ort_only:
            print(f"[{name} b{batch}] quantscope ...", flush=True)
            try:
                res = quantscope_bench(binary, model, data, args.iters)
                row["qs_ms"] = float(res["median_ms"])
                row["qs_min_ms"] = float(res["min_ms"])
                row["ratio"] = row["qs_ms"] / t2
                if "batch" in res and int(res["batch"]) != batch:
                    raise RuntimeError(f"quantscope reports batch {res['batch']}, expected {batch}")
                got = quantscope_output(binary, model, data, out_name)
                if got.shape != ref.shape:
                    raise RuntimeError(f"output shape {got.shape} != onnxruntime {ref.shape}")
                diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
                row["max_abs_diff"] = diff
                if not diff <= args.tol:  # also catches NaN
                    raise RuntimeError(f"max abs diff {diff:.3g} exceeds tolerance {args.tol:g}")
            except Exception as exc:  # report and keep going with the other workloads
                row["error"] = str(exc)
                failures += 1
        rows.append(row)

    header = ("model", "batch", "ORT 1t ms", "ORT 2t ms", "Quantscope ms", "QS/ORT-2t", "max|diff|")
    table = [header]
    for r in rows:
        table.append((r["model"], str(r["batch"]), fmt(r["ort_1t_ms"]), fmt(r["ort_2t_ms"]),
                      fmt(r["qs_ms"]), fmt(r["ratio"]), fmt(r["max_abs_diff"], ".2e")))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print()
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w)
                        for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        if r["error"]:
            print(f"ERROR {r['model']} b{r['batch']}: {r['error']}", file=sys.stderr)
    print(f"load average at end: {load_avg()} (timings are unreliable when it exceeds the CPU count)")
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
