#!/usr/bin/env python3
"""Time Quantscope against onnxruntime on the real models, the samples and the large models.

Usage:
    python scripts/bench_vs_ort.py [--runs N] [--rounds R] [--only NAME ...] [--skip-large]
                                   [--quantscope PATH] [--markdown FILE] [--json FILE]

One run times, for every workload below, four contenders on the same model and inputs:

    ORT 1t   onnxruntime (CPUExecutionProvider, default graph optimizations, sequential
             execution) with intra_op_num_threads=1
    QS 1t    `quantscope bench` with RAYON_NUM_THREADS=1 (the engine's kernels run on rayon, and
             so do its GEMMs: the `gemm` crate splits large products over the same pool, so one
             rayon thread is one thread)
    ORT 2t   the same with intra_op_num_threads=2
    QS 2t    RAYON_NUM_THREADS=2

Rounds are alternated: each of R rounds runs every contender for N/R timed runs (order reversed
every other round), so machine-load drift hits all four alike.  onnxruntime sessions are built
once per model and the figure is the median of its N runs.  Each Quantscope round is one
`quantscope bench MODEL --data FEED --iters N/R` process (model load and its two warm-up runs
untimed), which reports the median of its runs; the figure is the median of the R round medians.
R defaults to N/5: a process timing a single run reports its first run after warm-up, which is
often far slower than the steady state (thread pool start-up, buffer reuse), so one-run rounds
would overstate Quantscope's time.

Workloads:
  * every model in ../shared/real_models/ with inputs from that folder's make_feeds.py (imported,
    its OUT pointed at a temporary folder): the whole multi-sample feed where the model accepts
    it, the first sample where it declares batch 1 (noted), one sample file for the
    recurrent-state models whose feeds are folders of .npz
  * the four sample models on the first 64 held-out samples (sample_models/data/digits_test_x.npy;
    `quantscope bench` times one chunk of at most 64)
  * ResNet-18 (scripts/make_resnet18.py) at batch 1 and 8
  * ResNet-50 and BERT-base (scripts/make_large_models.py) at batch 1 (the first of the 32
    samples) unless --skip-large
Generated models go to bench_models/ (git-ignored) and are made when missing.

Before timing, `quantscope run` computes each workload's outputs once and they are compared with
onnxruntime's (max |difference| relative to max |reference| per output; above --tol the row is
flagged).  A model Quantscope cannot run (unsupported operators, a feed it refuses) is still
timed in onnxruntime and listed with Quantscope's one-line reason.

The table goes to stdout (and as Markdown to --markdown, rows as JSON to --json): the ratio
columns are Quantscope / onnxruntime (higher is slower), "QS 2t/1t" is Quantscope's speed-up
from the second thread ("ORT 2t/1t" onnxruntime's, which shows whether the machine had a second
core to give at all).

On a loaded machine wall-clock medians mostly measure how long each process waited for a core,
so the 1-thread contenders are also measured in CPU time per run ("CPU ms", user + system):
onnxruntime's with time.process_time() around each run (with one intra-op thread it runs on the
calling thread); Quantscope's from the child-process rusage of each round's `bench --iters K`
minus that of one `bench --iters 1` (same load and warm-ups), divided by K - 1 (needs K >= 2).
"CPU ratio 1t" is their quotient, the figure least disturbed by other processes.  The machine's load average is printed before and after: on a shared
2-core machine the figures are only as good as the quiet they were taken in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parent.parent
ORT_WARMUP = 3
# Samples per run of the sample models: the largest chunk `quantscope bench` times by default.
SAMPLE_BATCH = 64
# Per-contender thread settings for Quantscope (see the module doc).
QS_ENV = {
    1: {"RAYON_NUM_THREADS": "1"},
    2: {"RAYON_NUM_THREADS": "2"},
}


def find_real_models() -> Path:
    """../shared/real_models beside the crate (a worktree under /work/wt/<name> has it at ../..)."""
    for base in (REPO.parent, REPO.parent.parent):
        d = base / "shared" / "real_models"
        if d.is_dir():
            return d
    return REPO.parent / "shared" / "real_models"


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    group: str  # "real", "sample", "resnet18", "large"
    model: Path
    feeds: dict  # input name -> np.ndarray
    notes: list = field(default_factory=list)

    @property
    def batch(self) -> int:
        first = next(iter(self.feeds.values()))
        return int(first.shape[0]) if first.ndim else 1


def model_inputs(model: Path):
    """Real (non-initializer) graph inputs as (name, [dim value or None]) without the weights."""
    m = onnx.load(str(model), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    out = []
    for i in m.graph.input:
        if i.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in i.type.tensor_type.shape.dim]
        out.append((i.name, dims))
    return out


def fit_batch(w: Workload) -> Workload:
    """Cuts a multi-sample feed to its first sample when the model declares batch 1."""
    if w.batch <= 1:
        return w
    fixed = [name for name, dims in model_inputs(w.model)
             if name in w.feeds and dims and dims[0] == 1 and w.feeds[name].ndim == len(dims)]
    if fixed:
        w.notes.append(f"declares batch 1 (input '{fixed[0]}'), feed holds {w.batch} samples: "
                       f"timed at batch 1")
        w.feeds = {k: v[:1] for k, v in w.feeds.items()}
    return w


def real_workloads(real_dir: Path, tmp: Path):
    if not (real_dir / "make_feeds.py").exists():
        print(f"note: {real_dir} not found; real models skipped", file=sys.stderr)
        return []
    sys.path.insert(0, str(real_dir))
    sys.dont_write_bytecode = True  # the folder is read-only
    try:
        import make_feeds
    finally:
        sys.path.pop(0)
    make_feeds.OUT = str(tmp / "feeds")
    print("building real-model feeds with make_feeds.py ...", flush=True)
    make_feeds.main()
    feeds_dir = Path(make_feeds.OUT)
    out = []
    for model in sorted(real_dir.glob("*/*.onnx")):
        stem = model.stem
        npz, folder = feeds_dir / f"{stem}.npz", feeds_dir / stem
        notes = []
        if npz.exists():
            with np.load(npz) as z:
                feeds = {k: z[k] for k in z.files}
        elif folder.is_dir() and sorted(folder.glob("*.npz")):
            files = sorted(folder.glob("*.npz"))
            with np.load(files[0]) as z:
                feeds = {k: z[k] for k in z.files}
            notes.append(f"one sample ({files[0].name} of {len(files)}; recurrent-state inputs)")
        else:
            print(f"note: no feed for {model.name} from make_feeds.py; skipped", file=sys.stderr)
            continue
        out.append(fit_batch(Workload(stem, "real", model, feeds, notes)))
    return out


def sample_workloads(samples: Path):
    data = samples / "data" / "digits_test_x.npy"
    if not data.exists():
        print(f"note: {data} not found; sample models skipped", file=sys.stderr)
        return []
    # `quantscope bench` times its first chunk (at most SAMPLE_BATCH samples): both sides get it
    x = np.load(data).astype(np.float32)[:SAMPLE_BATCH]
    out = []
    for name in ("digits_mlp", "digits_cnn", "digits_mobilenet", "digits_transformer"):
        model = samples / f"{name}.onnx"
        if model.exists():
            out.append(Workload(name, "sample", model, {"input": x},
                                [f"first {len(x)} held-out samples"]))
    return out


def generated_workloads(models_dir: Path, large: bool):
    models_dir.mkdir(parents=True, exist_ok=True)
    r18 = models_dir / "resnet18.onnx"
    if not all((models_dir / n).exists() for n in ("resnet18.onnx", "resnet18_b1.npy",
                                                   "resnet18_b8.npy")):
        print(f"generating ResNet-18 into {models_dir} ...", flush=True)
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_resnet18.py"),
                        str(models_dir)], check=True)
    out = [Workload(f"resnet18_b{b}", "resnet18", r18,
                    {"input": np.load(models_dir / f"resnet18_b{b}.npy")}) for b in (1, 8)]
    if large:
        names = ("resnet50", "bert_base")
        if not all((models_dir / f"{n}.onnx").exists() and (models_dir / f"{n}.npz").exists()
                   for n in names):
            print(f"generating ResNet-50 and BERT-base into {models_dir} ...", flush=True)
            subprocess.run([sys.executable, str(REPO / "scripts" / "make_large_models.py"),
                            str(models_dir)], check=True)
        for n in names:
            with np.load(models_dir / f"{n}.npz") as z:
                feeds = {k: z[k][:1] for k in z.files}
            out.append(Workload(n, "large", models_dir / f"{n}.onnx", feeds,
                                ["batch 1 of the 32-sample input file"]))
    return out


def all_workloads(args, tmp: Path):
    ws = real_workloads(args.real_models, tmp) + sample_workloads(args.samples)
    ws += generated_workloads(args.models, not args.skip_large)
    if args.only:
        ws = [w for w in ws if any(o in w.name for o in args.only)]
    return ws


def write_feed(w: Workload, tmp: Path) -> Path:
    path = tmp / f"{w.name}.npz"
    np.savez(path, **w.feeds)
    return path


# ---------------------------------------------------------------------------
# Contenders
# ---------------------------------------------------------------------------


def ort_session(model: Path, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    # graph_optimization_level left at its default (ORT_ENABLE_ALL), as users run it.
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


class OrtContender:
    def __init__(self, model: Path, feeds: dict, threads: int):
        self.sess = ort_session(model, threads)
        self.feeds = feeds
        for _ in range(ORT_WARMUP):
            self.outputs = self.sess.run(None, feeds)
        self.names = [o.name for o in self.sess.get_outputs()]

    def time(self, k: int):
        """Wall-clock and CPU milliseconds of `k` runs."""
        times, cpu = [], []
        for _ in range(k):
            c0, t0 = time.process_time(), time.perf_counter()
            self.sess.run(None, self.feeds)
            times.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        return times, cpu


def run_cmd(cmd, env=None, timeout=1800):
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=full_env,
                          timeout=timeout)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        msg = next((ln for ln in lines if ln.startswith("error")), lines[-1] if lines else "")
        # Keep the reason, not the engine's list of every operator it supports.
        msg = msg.split("; weights can still be viewed")[0].split(" Supported:")[0]
        raise RuntimeError(msg.removeprefix("error: ").strip()[:300])
    return proc


def qs_bench(binary: Path, model: Path, feed: Path, iters: int, threads: int,
             per_node: bool = False):
    cmd = [binary, "bench", model, "--data", feed, "--iters", iters]
    if per_node:
        cmd.append("--per-node")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = run_cmd(cmd, env=QS_ENV[threads])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1e3
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if not lines:
        raise RuntimeError(f"quantscope bench printed no JSON line: {proc.stdout.strip()[:200]!r}")
    result = json.loads(lines[-1])
    if per_node:
        result["per_node_stderr"] = proc.stderr
    result["process_cpu_ms"] = cpu_ms
    return result


def qs_outputs(binary: Path, model: Path, feed: Path, tmp: Path):
    out = tmp / "qs_out.npz"
    run_cmd([binary, "run", model, "--data", feed, "--out", out], env=QS_ENV[2])
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def compare(ref_names, ref_values, got: dict):
    """Largest |difference| relative to the reference's largest |value|, over the outputs."""
    worst = 0.0
    for name, ref in zip(ref_names, ref_values):
        if name not in got:
            raise RuntimeError(f"quantscope output lacks '{name}' (has {sorted(got)})")
        g = got[name]
        if g.shape == (1, *ref.shape):
            g = g[0]  # `run` on one .npz sample file stacks its outputs along a sample axis
        if g.shape != ref.shape:
            raise RuntimeError(f"output '{name}' shape {g.shape} != onnxruntime {ref.shape}")
        if ref.size == 0:
            continue
        r64, g64 = ref.astype(np.float64), g.astype(np.float64)
        diff = float(np.max(np.abs(g64 - r64))) / max(float(np.max(np.abs(r64))), 1e-12)
        worst = max(worst, diff if diff == diff else float("inf"))
    return worst


# ---------------------------------------------------------------------------
# One workload, rounds alternated
# ---------------------------------------------------------------------------


def bench_workload(w: Workload, args, tmp: Path):
    row = {"model": w.name, "group": w.group, "path": str(w.model), "batch": w.batch,
           "notes": list(w.notes), "qs_error": None, "ort_error": None, "rel_diff": None}
    feed = write_feed(w, tmp)
    try:
        ort = {t: OrtContender(w.model, w.feeds, t) for t in (1, 2)}
    except Exception as exc:  # onnxruntime refused the feed: nothing to compare with
        row["ort_error"] = str(exc).strip().splitlines()[-1][:300]
        return row
    qs_ok = not args.ort_only
    if qs_ok:
        try:
            got = qs_outputs(args.quantscope, w.model, feed, tmp)
            row["rel_diff"] = compare(ort[1].names, ort[1].outputs, got)
            if not row["rel_diff"] <= args.tol:
                row["notes"].append(f"OUTPUT MISMATCH: max rel diff {row['rel_diff']:.2e} "
                                    f"> {args.tol:g}")
        except Exception as exc:
            row["qs_error"] = str(exc)
            qs_ok = False
    k = max(1, args.runs // args.rounds)
    keys = ["ort1", "qs1", "ort2", "qs2"] + (["base1"] if args.baseline and qs_ok else [])
    times = {key: [] for key in keys}
    mins = {key: [] for key in times}
    cpu = {"ort1": [], "qs1": []}
    qs_fixed_cpu = None
    if qs_ok and k >= 2:
        try:  # CPU time of loading, warming up and one run, subtracted from each round's
            qs_fixed_cpu = qs_bench(args.quantscope, w.model, feed, 1, 1)["process_cpu_ms"]
        except Exception as exc:
            row["qs_error"] = str(exc)
            qs_ok = False
    order = keys
    for r in range(args.rounds):
        for key in (order if r % 2 == 0 else order[::-1]):
            threads = int(key[-1])
            if key == "base1":
                try:
                    res = qs_bench(args.baseline, w.model, feed, k, 1)
                    times[key].append(float(res["median_ms"]))
                    mins[key].append(float(res["min_ms"]))
                except Exception as exc:
                    row["notes"].append(f"baseline failed: {str(exc)[:120]}")
                    times[key].clear()
                    order = [o for o in order if o != "base1"]
            elif key.startswith("ort"):
                ts, cs = ort[threads].time(k)
                times[key] += ts
                mins[key].append(min(ts))
                if threads == 1:
                    cpu[key] += cs
            elif qs_ok:
                try:
                    res = qs_bench(args.quantscope, w.model, feed, k, threads)
                except Exception as exc:
                    row["qs_error"] = str(exc)
                    qs_ok = False
                    continue
                if int(res.get("batch", w.batch)) != w.batch:
                    row["notes"].append(f"quantscope reports batch {res['batch']}")
                times[key].append(float(res["median_ms"]))
                mins[key].append(float(res["min_ms"]))
                if threads == 1 and qs_fixed_cpu is not None:
                    cpu[key].append((res["process_cpu_ms"] - qs_fixed_cpu) / (k - 1))
    for key, ts in times.items():
        row[f"{key}_ms"] = statistics.median(ts) if ts else None
        row[f"{key}_min_ms"] = min(mins[key]) if mins[key] else None
        row[f"{key}_runs"] = len(ts) * (1 if key.startswith("ort") else k)
    for key, cs in cpu.items():
        median = statistics.median(cs) if cs else None
        # a difference of process CPU times below the resolution of rusage is no measurement
        row[f"{key}_cpu_ms"] = median if median is not None and median > 0 else None
    if not qs_ok:
        for key in ("qs1_ms", "qs2_ms", "qs1_min_ms", "qs2_min_ms", "qs1_cpu_ms"):
            row[key] = None
    return row


def ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def add_ratios(row):
    row["ratio1"] = ratio(row.get("qs1_ms"), row.get("ort1_ms"))
    row["base_ratio1"] = ratio(row.get("base1_ms"), row.get("ort1_ms"))
    row["ratio1_cpu"] = ratio(row.get("qs1_cpu_ms"), row.get("ort1_cpu_ms"))
    row["ratio2"] = ratio(row.get("qs2_ms"), row.get("ort2_ms"))
    row["qs_speedup"] = ratio(row.get("qs1_ms"), row.get("qs2_ms"))
    row["ort_speedup"] = ratio(row.get("ort1_ms"), row.get("ort2_ms"))
    return row


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def load_avg():
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


def ms(v):
    if v is None:
        return "—"
    return f"{v:.3g}" if v < 10 else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def x(v):
    return "—" if v is None else f"{v:.2f}×"


COLUMNS = ("model", "batch", "ORT 1t ms", "QS 1t ms", "QS/ORT 1t", "ORT 1t CPU ms",
           "QS 1t CPU ms", "CPU ratio 1t",
           "ORT 2t ms", "QS 2t ms",
           "QS/ORT 2t", "QS 2t/1t speed-up", "ORT 2t/1t speed-up", "max rel diff")


def columns(rows):
    base = any(r.get("base1_ms") is not None for r in rows)
    return (COLUMNS[:2] + BASE_COLUMNS + COLUMNS[2:]) if base else COLUMNS


BASE_COLUMNS = ("before 1t ms", "before/ORT 1t")


def table_rows(rows):
    base = any(r.get("base1_ms") is not None for r in rows)
    out = []
    for r in rows:
        before = (ms(r.get("base1_ms")), x(r.get("base_ratio1"))) if base else ()
        out.append((r["model"], str(r["batch"]), *before, ms(r.get("ort1_ms")), ms(r.get("qs1_ms")),
                    x(r.get("ratio1")), ms(r.get("ort1_cpu_ms")), ms(r.get("qs1_cpu_ms")),
                    x(r.get("ratio1_cpu")), ms(r.get("ort2_ms")),
                    ms(r.get("qs2_ms")),
                    x(r.get("ratio2")), x(r.get("qs_speedup")), x(r.get("ort_speedup")),
                    "—" if r.get("rel_diff") is None else f"{r['rel_diff']:.1e}"))
    return out


def summary_lines(rows):
    lines = []
    for label, group in (("real models", {"real"}), ("all rows", None)):
        rs = [r["ratio1"] for r in rows if r.get("ratio1") and (group is None or r["group"] in group)]
        if rs:
            worst = max((r for r in rows if r.get("ratio1") and (group is None or r["group"] in group)),
                        key=lambda r: r["ratio1"])
            by_cpu = [r["ratio1_cpu"] for r in rows if r.get("ratio1_cpu")
                      and (group is None or r["group"] in group)]
            lines.append(f"{label}: 1-thread ratio median {statistics.median(rs):.2f}×, worst "
                         f"{worst['ratio1']:.2f}× ({worst['model']}) over {len(rs)} rows"
                         + (f"; CPU-time ratio median {statistics.median(by_cpu):.2f}×, worst "
                            f"{max(by_cpu):.2f}×" if by_cpu else ""))
    for label, group in (("before, real models", {"real"}), ("before, all rows", None)):
        bs = [r["base_ratio1"] for r in rows
              if r.get("base_ratio1") and (group is None or r["group"] in group)]
        if bs:
            lines.append(f"{label}: 1-thread ratio median {statistics.median(bs):.2f}×, worst "
                         f"{max(bs):.2f}× over {len(bs)} rows")
    big = [r for r in rows if r.get("qs_speedup") and (r.get("qs1_ms") or 0) >= 50]
    if big:
        lines.append("Quantscope 2-vs-1-thread speed-up on rows ≥ 50 ms: " + ", ".join(
            f"{r['model']} {r['qs_speedup']:.2f}×" for r in big))
    return lines


def notes_lines(rows):
    out = []
    for r in rows:
        why = []
        if r.get("ort_error"):
            why.append(f"onnxruntime failed: {r['ort_error']}")
        if r.get("qs_error"):
            why.append(f"Quantscope cannot run it: {r['qs_error']}")
        why += r.get("notes", [])
        if why:
            out.append(f"{r['model']}: " + "; ".join(why))
    return out


def print_table(rows, header_lines, footer_lines):
    cols = columns(rows)
    table = [cols] + table_rows(rows)
    widths = [max(len(t[i]) for t in table) for i in range(len(cols))]
    print()
    for line in header_lines:
        print(line)
    for i, t in enumerate(table):
        print("  ".join(c.ljust(wd) if j == 0 else c.rjust(wd)
                        for j, (c, wd) in enumerate(zip(t, widths))))
        if i == 0:
            print("  ".join("-" * wd for wd in widths))
    for line in footer_lines:
        print(line)


def markdown(rows, header_lines, footer_lines):
    md = [*(f"{ln}  " for ln in header_lines), ""]
    cols = columns(rows)
    md.append("| " + " | ".join(cols) + " |")
    md.append("|---|" + "---:|" * (len(cols) - 1))
    for t in table_rows(rows):
        md.append("| " + " | ".join(t) + " |")
    md.append("")
    md += [f"- {ln}" for ln in footer_lines]
    return "\n".join(md) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path,
                   help="an earlier quantscope binary, timed 1-thread in the same rounds (adds "
                        "'before' columns: a before/after table from one run)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per contender (default 20)")
    p.add_argument("--rounds", type=int, help="alternation rounds (default: --runs / 5, five "
                   "runs per contender per round)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="only workloads whose name contains one of these")
    p.add_argument("--skip-large", action="store_true", help="leave out ResNet-50 and BERT-base")
    p.add_argument("--quantscope", type=Path,
                   default=REPO / "target" / "release" / "quantscope",
                   help="quantscope binary (default: target/release/quantscope)")
    p.add_argument("--models", type=Path, default=REPO / "bench_models",
                   help="folder for generated models (default: bench_models/, git-ignored)")
    p.add_argument("--real-models", type=Path, default=find_real_models(),
                   help="the real-model folder (default: ../shared/real_models)")
    p.add_argument("--samples", type=Path, default=REPO / "sample_models")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="max |diff| / max |reference| before an output is flagged (default 1e-4)")
    p.add_argument("--ort-only", action="store_true", help="time only onnxruntime")
    p.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be >= 1")
    args.rounds = max(1, round(args.runs / 5)) if args.rounds is None else args.rounds
    if not 1 <= args.rounds <= args.runs:
        p.error("--rounds must be between 1 and --runs")
    args.quantscope = args.quantscope.resolve()
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
    return args


def main(argv):
    args = parse_args(argv)
    if not args.ort_only and not args.quantscope.exists():
        print(f"quantscope binary not found at {args.quantscope}; build it with "
              f"`cargo build --release` (or pass --quantscope PATH, or --ort-only)",
              file=sys.stderr)
        return 2
    import onnxruntime

    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = load_avg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qs_bench_") as tmp_name:
        tmp = Path(tmp_name)
        workloads = all_workloads(args, tmp)
        for i, w in enumerate(workloads, 1):
            print(f"[{i}/{len(workloads)}] {w.name} (batch {w.batch}) ...", flush=True)
            rows.append(add_ratios(bench_workload(w, args, tmp)))
    k = max(1, args.runs // args.rounds)
    header = [
        f"Quantscope vs onnxruntime {onnxruntime.__version__}, {started}, "
        f"{platform.machine()} {os.cpu_count()} CPUs ({cpu_name()})",
        f"median of {args.runs} runs per contender, {args.rounds} alternated rounds of {k}; "
        f"load average before {load_before}, after {load_avg()} (shared machine: noisy)",
    ]
    footer = summary_lines(rows) + notes_lines(rows)
    print_table(rows, header, footer)
    if args.markdown:
        args.markdown.write_text(markdown(rows, header, footer))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
    bad = [r for r in rows if r.get("rel_diff") is not None and not r["rel_diff"] <= args.tol]
    return 1 if bad else 0


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
