#!/usr/bin/env python3
"""Time calibration and fake-quantized evaluation (issue 11): Quantscope against its own float
pass and against onnxruntime's MinMax calibration, on the same models and the same samples.

Usage:
    python scripts/bench_calibration.py [--runs N] [--large-runs N] [--threads T ...]
                                        [--only NAME ...] [--skip-large] [--quantscope PATH]
                                        [--markdown FILE] [--json FILE]

Workloads are scripts/bench_vs_ort.py's (imported: same discovery, same feeds) of its groups
"real" and "large", each with ALL its samples where bench_vs_ort.py times one batch:
  * every model in ../shared/real_models/ on the feeds of that folder's make_feeds.py: the whole
    .npz (4 or 5 samples on axis 0) or, for the recurrent-state models, the whole folder of
    one-sample .npz files (8 samples); the image models get the photos as make_feeds.py
    preprocesses them, not through `--preset`, so that onnxruntime reads the same arrays
  * ResNet-50 and BERT-base (bench_models/, scripts/make_large_models.py) on their 32 samples

Contenders, each timed whole, as a user waits for it, at every thread count T of --threads
(Quantscope with RAYON_NUM_THREADS=T, as bench_vs_ort.py pins it; onnxruntime with
intra_op_num_threads=T, inter-op 1):
  QS run        `quantscope run MODEL --data DATA`: loads the model, reads the data, probes the
                batch (a symbolic batch runs sample 0, then samples 0-1 together), runs the float
                pass over all samples in chunks, joins and prints the output shapes (no --out).
  QS calibrate  `quantscope calibrate MODEL --data DATA`: the same load, read and probe, then
                the float pass with every float tensor observed (min/max, moments, |x| and
                signed histograms), a second pass when a range grew after the first chunk,
                the ranges of the seven default methods and their table printed (no --out).
  ORT MinMax    onnxruntime.quantization.calibrate.create_calibrator(MinMax) (shape inference,
                the model augmented with ReduceMin/ReduceMax and saved, its session built), then
                collect_data() over a CalibrationDataReader and compute_data(), timed in this
                process (onnxruntime imported and the data in memory beforehand). The session
                is create_calibrator's own (graph optimizations disabled, as it sets them) with
                the thread counts above patched in.
  QS fake-quant `quantscope run QDQ --data DATA`: the same command as QS run on the fake-quantized
                model, nothing else. QDQ is `quantscope export --format qdq` of the model
                (default config: int8 per-channel weights, uint8 min-max activations), made
                once, untimed, calibrated on the first sample only (the ranges' values do not
                change the work). `quantscope quantize` would add a whole calibration, the float
                pass and the error metrics to the fake-quantized pass; no command runs the
                engine's fake-quant hook alone, the QDQ file runs QuantizeLinear/DequantizeLinear
                nodes instead.

Chunks: each Quantscope command chooses its own (the largest batch the model accepts, within
the activation budget divided by the threads: a QDQ graph counts its Q/DQ outputs too, so it
may get smaller chunks); onnxruntime's reader yields the chunks `quantscope run` chose on the
float model at the same thread count (found by one untimed warm-up run, which also brings the
files into the page cache): one sample per batch where the model declares batch 1 or the data
is a folder of one-sample feeds.

Rounds are alternated: each round times every contender once (all thread counts), the order
reversed every other round, so load drift hits all alike; figures are medians over --runs
rounds (--large-runs for ResNet-50 and BERT-base, whose rounds take minutes). Wall clock is
what the table shows; CPU time (child rusage for Quantscope, process_time for onnxruntime) is
kept in the JSON. The load average is printed before and after: on a shared 2-core machine the
figures are only as good as the quiet they were taken in.

Targets (issue 11), marked ✗ in the table where missed: calibrate/run ≤ 1.5×, fake-quant/float
≤ 1.3× (every model), calibrate/ORT MinMax ≤ 1.5× (ResNet-50 and BERT-base; shown for all).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import calibrate as ort_calibrate

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_ort as bvo  # noqa: E402  (same workloads, thread pinning and helpers)

GROUPS = ("real", "large")
CONTENDERS = ("run", "calibrate", "ort", "fq")
CHUNK = re.compile(r"chunks of (\d+) sample")
# ratio key -> (numerator, denominator, target, groups the target applies to)
RATIOS = {
    "cal_run": ("calibrate", "run", 1.5, GROUPS),
    "cal_ort": ("calibrate", "ort", 1.5, ("large",)),
    "fq_run": ("fq", "run", 1.3, GROUPS),
}


@dataclass
class CalibSet:
    name: str
    group: str
    model: Path
    data: Path  # an .npz (samples on axis 0) or a folder of one-sample .npz files


def sample_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz"))


def count_samples(data: Path) -> int:
    if data.is_dir():
        return len(sample_files(data))
    with np.load(data) as z:
        return int(z[z.files[0]].shape[0])


def full_data(w: bvo.Workload, feeds_dir: Path, models_dir: Path) -> Path:
    """The whole data of a workload bench_vs_ort.py cuts to one batch: the large models'
    32-sample file, a real model's make_feeds.py .npz or folder (in feeds_dir, where
    bench_vs_ort.real_workloads has make_feeds.py write them)."""
    if w.group == "large":
        return models_dir / f"{w.name}.npz"
    npz = feeds_dir / f"{w.model.stem}.npz"
    return npz if npz.exists() else feeds_dir / w.model.stem


def calib_sets(args, tmp: Path) -> list[CalibSet]:
    return [CalibSet(w.name, w.group, w.model, full_data(w, tmp / "feeds", args.models))
            for w in bvo.all_workloads(args, tmp) if w.group in GROUPS]


def first_sample(data: Path, tmp: Path) -> Path:
    """The first sample of `data` alone, in the same form (an .npz, or a folder)."""
    if data.is_dir():
        folder = tmp / f"{data.name}_first"
        folder.mkdir(exist_ok=True)
        first = sample_files(data)[0]
        (folder / first.name).symlink_to(first)
        return folder
    out = tmp / f"{data.stem}_first.npz"
    with np.load(data) as z:
        np.savez(out, **{k: z[k][:1] for k in z.files})
    return out


def ort_feeds(data: Path, chunk: int) -> list[dict]:
    """The samples as onnxruntime's reader yields them: one feed per file of a folder, else
    chunks of `chunk` samples along axis 0."""
    if data.is_dir():
        feeds = []
        for f in sample_files(data):
            with np.load(f) as z:
                feeds.append({k: z[k] for k in z.files})
        return feeds
    with np.load(data) as z:
        arrays = {k: z[k] for k in z.files}
    n = len(next(iter(arrays.values())))
    return [{k: v[i:i + chunk] for k, v in arrays.items()} for i in range(0, n, chunk)]


def linked(model: Path, tmp: Path) -> Path:
    """A link to `model` in a writable folder: create_calibrator writes `<model>-inferred.onnx`
    beside the file it is given (the real-model folder is read-only)."""
    folder = tmp / "ort"
    folder.mkdir(exist_ok=True)
    link = folder / model.name
    if not link.exists():
        link.symlink_to(model.resolve())
    return link


# ---------------------------------------------------------------------------
# Contenders
# ---------------------------------------------------------------------------


class FeedReader(ort_calibrate.CalibrationDataReader):
    def __init__(self, feeds: list[dict]):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


def ort_minmax(model: Path, feeds: list[dict], threads: int, tmp: Path):
    """Wall and CPU ms of create_calibrator(MinMax) + collect_data + compute_data."""

    def session(calibrator):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        calibrator.infer_session = ort.InferenceSession(
            calibrator.augmented_model_path, so, providers=calibrator.execution_providers)

    c0, t0 = time.process_time(), time.perf_counter()
    with mock.patch.object(ort_calibrate.CalibraterBase, "create_inference_session", session):
        calibrator = ort_calibrate.create_calibrator(
            model, augmented_model_path=str(tmp / "augmented.onnx"),
            calibrate_method=ort_calibrate.CalibrationMethod.MinMax)
    calibrator.collect_data(FeedReader(feeds))
    calibrator.compute_data()
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3


def qs_timed(binary: Path, argv: list, threads: int):
    """Wall and CPU ms of one quantscope command, and the chunk size it reported."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = bvo.run_cmd([binary, *argv], env=bvo.QS_ENV[threads])
    wall = (time.perf_counter() - t0) * 1e3
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1e3
    found = CHUNK.search(proc.stdout)
    return wall, cpu, int(found.group(1)) if found else None


def export_qdq(binary: Path, cs: CalibSet, tmp: Path) -> Path:
    out = tmp / f"{cs.name}_qdq.onnx"
    bvo.run_cmd([binary, "export", cs.model, "--data", first_sample(cs.data, tmp),
                 "--format", "qdq", "--out", out], env=bvo.QS_ENV[2])
    return out


def last_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[-1] if lines else type(exc).__name__)[:300]


# ---------------------------------------------------------------------------
# One workload, rounds alternated
# ---------------------------------------------------------------------------


def prepare(cs: CalibSet, args, tmp: Path, row: dict):
    """The commands to time, and onnxruntime's feeds per thread count (the float run's chunks,
    from one untimed warm-up run per thread count); failures go to row['errors']."""
    data = ["--data", cs.data]
    commands = {"run": ["run", cs.model, *data], "calibrate": ["calibrate", cs.model, *data]}
    try:
        commands["fq"] = ["run", export_qdq(args.quantscope, cs, tmp), *data]
    except Exception as exc:
        row["errors"]["fq"] = f"export --format qdq failed: {last_line(exc)}"
    feeds = {}
    for t in args.threads:
        try:
            chunk = qs_timed(args.quantscope, commands["run"], t)[2] or 1
        except Exception as exc:
            row["errors"]["run"] = last_line(exc)
            chunk = 1
        row[f"chunk{t}"] = chunk
        feeds[t] = ort_feeds(cs.data, chunk)
    if "run" in row["errors"]:
        row["notes"].append("onnxruntime fed one sample per batch (Quantscope chose no chunk)")
        for kind in ("calibrate", "fq"):
            row["errors"].setdefault(kind, "quantscope run fails on this model")
    return commands, feeds


def time_one(kind: str, t: int, cs: CalibSet, commands, feeds, args, tmp: Path):
    if kind == "ort":
        return (*ort_minmax(linked(cs.model, tmp), feeds[t], t, tmp), None)
    return qs_timed(args.quantscope, commands[kind], t)


def bench_set(cs: CalibSet, args, tmp: Path) -> dict:
    row = {"model": cs.name, "group": cs.group, "path": str(cs.model), "data": str(cs.data),
           "samples": count_samples(cs.data), "notes": [], "errors": {}}
    commands, feeds = prepare(cs, args, tmp, row)
    order = [(kind, t) for t in args.threads for kind in CONTENDERS]
    wall = {c: [] for c in order}
    cpu = {c: [] for c in order}
    chunks = {c: set() for c in order}
    rounds = args.large_runs if cs.group == "large" else args.runs
    for r in range(rounds):
        for kind, t in (order if r % 2 == 0 else order[::-1]):
            if kind in row["errors"]:
                continue
            try:
                w, c, chunk = time_one(kind, t, cs, commands, feeds, args, tmp)
            except Exception as exc:
                row["errors"][kind] = last_line(exc)
                continue
            wall[kind, t].append(w)
            cpu[kind, t].append(c)
            chunks[kind, t].add(chunk if chunk is not None else row[f"chunk{t}"])
    for (kind, t), ws in wall.items():
        ok = bool(ws) and kind not in row["errors"]
        row[f"{kind}{t}_ms"] = statistics.median(ws) if ok else None
        row[f"{kind}{t}_cpu_ms"] = statistics.median(cpu[kind, t]) if ok else None
        row[f"{kind}{t}_all_ms"] = ws
        row[f"{kind}{t}_chunks"] = sorted(chunks[kind, t])
    add_ratios(row, args.threads)
    return row


def add_ratios(row: dict, threads):
    for t in threads:
        for key, (num, den, _, _) in RATIOS.items():
            row[f"{key}{t}"] = bvo.ratio(row[f"{num}{t}_ms"], row[f"{den}{t}_ms"])
            row[f"{key}{t}_cpu"] = bvo.ratio(row[f"{num}{t}_cpu_ms"], row[f"{den}{t}_cpu_ms"])


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

COLUMNS = ("model", "samples", "chunk", "QS run ms", "QS calibrate ms", "calibrate/run",
           "ORT MinMax ms", "QS cal/ORT MinMax", "QS fake-quant ms", "fake-quant/float")


def missed(row: dict, key: str, t: int) -> bool:
    _, _, target, groups = RATIOS[key]
    value = row.get(f"{key}{t}")
    return value is not None and row["group"] in groups and value > target


def cell_ratio(row: dict, key: str, t: int) -> str:
    value = row.get(f"{key}{t}")
    if value is None:
        return "n/a"
    return bvo.x(value) + (" ✗" if missed(row, key, t) else "")


def cell_ms(row: dict, kind: str, t: int) -> str:
    return "n/a" if row.get(f"{kind}{t}_ms") is None else bvo.ms(row[f"{kind}{t}_ms"])


def cell_chunk(row: dict, t: int) -> str:
    chunk = str(row[f"chunk{t}"])
    fq = row.get(f"fq{t}_chunks") or []
    return chunk + (f" (fq {','.join(map(str, fq))})" if fq and fq != [row[f"chunk{t}"]] else "")


def table_rows(rows, t: int):
    return [(r["model"], str(r["samples"]), cell_chunk(r, t), cell_ms(r, "run", t),
             cell_ms(r, "calibrate", t), cell_ratio(r, "cal_run", t), cell_ms(r, "ort", t),
             cell_ratio(r, "cal_ort", t), cell_ms(r, "fq", t), cell_ratio(r, "fq_run", t))
            for r in rows]


def summary_lines(rows, t: int):
    lines = []
    for key, (num, den, target, groups) in RATIOS.items():
        rated = [r for r in rows if r["group"] in groups and r.get(f"{key}{t}") is not None]
        if not rated:
            continue
        worst = max(rated, key=lambda r: r[f"{key}{t}"])
        met = sum(not missed(r, key, t) for r in rated)
        cpu = [r[f"{key}{t}_cpu"] for r in rated if r.get(f"{key}{t}_cpu") is not None]
        lines.append(
            f"{t} thread{'s' if t > 1 else ''}: {num}/{den} ≤ {target}× ({' and '.join(groups)} "
            f"models): met by {met} of "
            f"{len(rated)}; median {statistics.median(r[f'{key}{t}'] for r in rated):.2f}×, "
            f"worst {worst[f'{key}{t}']:.2f}× ({worst['model']})"
            + (f"; CPU-time ratio median {statistics.median(cpu):.2f}×" if cpu else ""))
    return lines


def parallelism_lines(rows, threads):
    """CPU time over wall clock with several threads: near 1 when the machine had no spare core
    to give (another process on it), which makes those columns one-core figures."""
    lines = []
    for t in (t for t in threads if t > 1):
        parts = []
        for kind, label in (("run", "QS run"), ("calibrate", "QS calibrate"),
                            ("ort", "ORT MinMax")):
            used = [r[f"{kind}{t}_cpu_ms"] / r[f"{kind}{t}_ms"] for r in rows
                    if r.get(f"{kind}{t}_ms") and r.get(f"{kind}{t}_cpu_ms") is not None]
            if used:
                parts.append(f"{label} {statistics.median(used):.2f}")
        if parts:
            lines.append(f"{t} threads: median CPU/wall " + ", ".join(parts)
                         + f" (of {t} possible; near 1: no second core was free)")
    return lines


def notes_lines(rows):
    out = []
    for r in rows:
        why = [f"{kind}: {msg}" for kind, msg in r["errors"].items()] + r["notes"]
        if why:
            out.append(f"{r['model']}: " + "; ".join(why))
    return out


def text_table(cols, rows) -> str:
    table = [cols, *rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                       for j, (c, w) in enumerate(zip(t, widths))) for t in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(cols, rows) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report(rows, header, threads, markdown: bool) -> str:
    parts = [("\n".join(f"{ln}  " for ln in header) if markdown else "\n".join(header))]
    for t in threads:
        title = f"{t} thread{'s' if t > 1 else ''} (RAYON_NUM_THREADS={t}, ORT intra_op={t})"
        table = (md_table if markdown else text_table)(COLUMNS, table_rows(rows, t))
        parts += [f"### {title}" if markdown else title, table]
    footer = [ln for t in threads for ln in summary_lines(rows, t)]
    footer += parallelism_lines(rows, threads) + notes_lines(rows)
    parts.append("\n".join(f"- {ln}" if markdown else ln for ln in footer))
    return "\n\n".join(parts) + "\n"


def header_lines(args, started: str, load_before: str, elapsed_s: float):
    stat = args.quantscope.stat()
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(stat.st_mtime))
    return [
        f"Quantscope calibration vs float pass vs onnxruntime {ort.__version__} MinMax, "
        f"{started}, {platform.machine()} {os.cpu_count()} CPUs ({bvo.cpu_name()})",
        f"binary {args.quantscope} (built {built}); medians of {args.runs} alternated rounds "
        f"({args.large_runs} for the large models); wall clock ms per whole command; "
        f"{elapsed_s / 60:.1f} min in all",
        f"load average before {load_before}, after {bvo.load_avg()} (shared machine: noisy)",
    ]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5,
                   help="alternated rounds per real model (default 5)")
    p.add_argument("--large-runs", type=int, default=3,
                   help="alternated rounds for ResNet-50 and BERT-base (default 3)")
    p.add_argument("--threads", type=int, nargs="+", choices=(1, 2), default=[1, 2],
                   help="thread counts to time (default: 1 2)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="only workloads whose name contains one of these")
    p.add_argument("--skip-large", action="store_true", help="leave out ResNet-50 and BERT-base")
    p.add_argument("--quantscope", type=Path,
                   default=bvo.REPO / "target" / "release" / "quantscope",
                   help="quantscope binary (default: target/release/quantscope)")
    p.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.runs < 1 or args.large_runs < 1:
        p.error("--runs and --large-runs must be >= 1")
    args.quantscope = args.quantscope.resolve()
    # what bench_vs_ort.all_workloads reads
    args.models = bvo.REPO / "bench_models"
    args.real_models = bvo.find_real_models()
    args.samples = bvo.REPO / "sample_models"
    return args


def main(argv):
    args = parse_args(argv)
    if not args.quantscope.exists():
        print(f"quantscope binary not found at {args.quantscope}; build it with "
              f"`cargo build --release` or pass --quantscope PATH", file=sys.stderr)
        return 2
    started, load_before, t0 = time.strftime("%Y-%m-%d %H:%M"), bvo.load_avg(), time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qs_calib_") as tmp_name:
        tmp = Path(tmp_name)
        sets = calib_sets(args, tmp)
        for i, cs in enumerate(sets, 1):
            print(f"[{i}/{len(sets)}] {cs.name} ({cs.data.name}) ...", flush=True)
            rows.append(bench_set(cs, args, tmp))
    header = header_lines(args, started, load_before, time.time() - t0)
    print("\n" + report(rows, header, args.threads, markdown=False))
    if args.markdown:
        args.markdown.write_text(report(rows, header, args.threads, markdown=True))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
