#!/usr/bin/env python3
"""Reference calibration ranges for the sample models: tests/fixtures/calibration/<model>.json.

For each sample model, on the first 256 images of sample_models/data/digits_calib_x.npy fed
in batches of 32, over every float activation tensor onnxruntime selects (graph input, every
node output with a float type; onnxruntime augments the graph to output them all):

* onnxruntime 1.32's own calibrators (onnxruntime.quantization.calibrate):
  - "minmax":  MinMaxCalibrater, symmetric=False, moving_average=False (global min/max);
  - "ema":     MinMaxCalibrater, moving_average=True, averaging_constant=0.01, with
               collect_data() called once per batch: onnxruntime then merges calls with
               old + 0.01·(new − old), the first batch initialising (within one collect_data
               call it would take a plain mean of the batches instead);
  - "percentile": PercentileCalibrater as create_calibrator sets it up: symmetric=True
               (histogram of |x|), num_bins=2048, percentile=99.99; one collect_data call
               (the batches are stacked into one histogram);
  - "ort_entropy": EntropyCalibrater with num_bins=2048, num_quantized_bins=128,
               symmetric=False. This is onnxruntime's MXNet-derived algorithm, not TensorRT's:
               a signed histogram over [−max|x|, max|x|], symmetric candidate windows,
               Q truncated to integers and spread over empty bins too. Recorded for
               information only.
* independent NumPy implementations (written for this script, float64) of:
  - "kl": TensorRT's entropy calibration as NVIDIA's open implementation does it
          (pytorch_quantization.calib.histogram._compute_amax_entropy, re-written here) on
          the 2048-bin histogram of |x| over [0, max|x|]: bin 0 takes the count of bin 1;
          8 bits: 128 levels, 256 when min >= 0 (unsigned); candidates i = 128..2048; P =
          first i bins with the outliers added to bin i-1; Q = the first i raw bins merged
          into the levels (bin j -> level floor(levels*j/i)) and spread evenly over each
          level's non-empty bins; no smoothing (KL is +inf where Q = 0 < P); last argmin;
          threshold = i * bin width, clamped to [min, max]. (The Rust search smooths zeros
          as onnxruntime's smooth_distribution does; the test checks that this moves no
          choice.)
  - "batch_mean": mean over samples (axis 0) of per-sample min and max;
  - "mse8"/"mse4": the MSE clip search on the same |x| histogram (see src/calib/methods.rs);
  - "aciq_gauss8/4", "aciq_laplace8/4": Banner et al.'s clip (two-sided around the mean, or
          one-sided [min, α] with α = r(bits+1)·(half-normal σ or exponential b of the positive
          values) when min ≥ 0);
  - "abs_bin_width": max|x| / 2048, the |x| histogram's bin width.

Run from the repository root with onnx, onnxruntime and numpy installed:
    python scripts/calibration_reference.py
"""

import json
import math
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["digits_mlp", "digits_cnn", "digits_mobilenet", "digits_transformer"]
SAMPLES = 256
BATCH = 32
BINS = 2048
KL_START = 128
LAPLACE = {2: 2.83, 3: 3.89, 4: 5.03, 5: 6.20, 6: 7.41, 7: 8.65, 8: 9.90}
GAUSS = {2: 1.71, 3: 2.15, 4: 2.56, 5: 2.94, 6: 3.29, 7: 3.62, 8: 3.92}


class Reader:
    def __init__(self, batches):
        self.batches = list(batches)

    def get_next(self):
        return {"input": self.batches.pop(0)} if self.batches else None


def batches(data):
    return [data[i : i + BATCH] for i in range(0, len(data), BATCH)]


def f32(x):
    return float(np.float32(x))


def pair(r):
    lo, hi = r
    return [f32(np.asarray(lo).reshape(-1)[0]), f32(np.asarray(hi).reshape(-1)[0])]


def trt_kl_edge(counts, levels):
    """TensorRT entropy search: returns the number of kept bins i (threshold = i * width)."""
    counts = counts.astype(np.float64).copy()
    counts[0] = counts[1]
    n = counts.size
    total = counts.sum()
    best = (math.inf, n)
    for i in range(min(KL_START, n), n + 1):
        raw = counts[:i]
        p = raw.copy()
        p[-1] += total - raw.sum()
        level = (np.arange(i) * levels) // i
        sums = np.bincount(level, weights=raw, minlength=levels)
        nonempty = np.bincount(level, weights=(raw > 0).astype(np.float64), minlength=levels)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_bin = np.where(nonempty[level] > 0, sums[level] / nonempty[level], 0.0)
        q = np.where(raw > 0, per_bin, 0.0)
        if q.sum() == 0:
            continue
        p = p / p.sum()
        q = q / q.sum()
        kept = p > 0
        with np.errstate(divide="ignore"):
            d = float(np.sum(p[kept] * np.log(p[kept] / q[kept])))
        if d <= best[0]:
            best = (d, i)
    return best[1]


def mse_alpha(counts, hi, bits, one_sided):
    n = counts.size
    w = hi / n
    x = (np.arange(n) + 0.5) * w
    steps = (2**bits - 1) if one_sided else (2**bits - 1) / 2
    c = counts.astype(np.float64)
    best = (math.inf, hi)
    for k in range(1, n + 1):
        alpha = k * w
        delta = alpha / steps
        err = c[:k].sum() * delta * delta / 12 + np.sum(c[k:] * (x[k:] - alpha) ** 2)
        if err < best[0]:
            best = (err, alpha)
    return best[1]


def aciq_ratio(dist, bits):
    table = GAUSS if dist == "gauss" else LAPLACE
    if bits in table:
        return table[bits]
    quant = 1.0 / (3.0 * 4.0**bits)
    a = np.linspace(0.1, 60, 600001)
    if dist == "laplace":
        err = 2 * np.exp(-a) + a * a * quant
    else:
        erfc = np.array([math.erfc(v / math.sqrt(2)) for v in a])
        err = (a * a + 1) * erfc - math.sqrt(2 / math.pi) * a * np.exp(-a * a / 2) + a * a * quant
    return float(a[np.argmin(err)])


def aciq(x, dist, bits, lo, hi):
    if lo >= 0:
        pos = x[x > 0].astype(np.float64)
        param = math.sqrt(np.mean(pos * pos)) if dist == "gauss" else float(np.mean(pos))
        alpha = aciq_ratio(dist, bits + 1) * param
        return [f32(lo), f32(min(alpha, hi))]
    x = x.astype(np.float64)
    mu = float(x.mean())
    param = float(x.std()) if dist == "gauss" else float(np.mean(np.abs(x - mu)))
    alpha = aciq_ratio(dist, bits) * param
    return [f32(max(mu - alpha, lo)), f32(min(mu + alpha, hi))]


def clamp(t, lo, hi):
    return [f32(max(-t, lo)), f32(min(t, hi))]


def calibrate(model_name, data, tmp):
    path = str(ROOT / "sample_models" / f"{model_name}.onnx")
    aug = str(Path(tmp) / f"{model_name}.aug.onnx")
    out = {}

    cal = create_calibrator(path, augmented_model_path=aug, calibrate_method=CalibrationMethod.MinMax)
    cal.collect_data(Reader(batches(data)))
    minmax = {k: pair(v.range_value) for k, v in cal.compute_data().data.items()}

    cal = create_calibrator(
        path,
        augmented_model_path=aug,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"moving_average": True, "averaging_constant": 0.01},
    )
    for b in batches(data):
        cal.collect_data(Reader([b]))
    ema = {k: pair(v.range_value) for k, v in cal.compute_data().data.items()}

    cal = create_calibrator(
        path,
        augmented_model_path=aug,
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"num_bins": BINS, "percentile": 99.99, "symmetric": True},
    )
    cal.collect_data(Reader(batches(data)))
    perc = {}
    for k, v in cal.compute_data().data.items():
        perc[k] = pair(v.range_value)
    perc_width = {
        k: f32(h[1][1] - h[1][0]) for k, h in cal.collector.get_histogram_dict().items()
    }

    cal = create_calibrator(
        path,
        augmented_model_path=aug,
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": BINS, "num_quantized_bins": 128, "symmetric": False},
    )
    cal.collect_data(Reader(batches(data)))
    entropy = {k: pair(v.range_value) for k, v in cal.compute_data().data.items()}
    names = sorted(cal.tensors_to_calibrate)

    # Activations of every calibrated tensor, from the augmented model (all outputs).
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(aug, opts, providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    acts = {n: [] for n in names}
    for b in batches(data):
        for name, value in zip(outs, sess.run(None, {"input": b}), strict=True):
            if name in acts:
                acts[name].append(value)
    for n in names:
        if n == "input":
            acts[n] = [b for b in batches(data)]

    for n in names:
        per_batch = acts[n]
        x = np.concatenate([a.reshape(-1) for a in per_batch]).astype(np.float32)
        lo, hi = float(x.min()), float(x.max())
        amax = max(abs(lo), abs(hi))
        rec = {
            "minmax": minmax[n],
            "ema": ema[n],
            "percentile": perc[n],
            "ort_percentile_bin_width": perc_width[n],
            "ort_entropy": entropy[n],
            "abs_bin_width": f32(amax / BINS),
        }
        mins, maxs = [], []
        for a in per_batch:
            s = a.reshape(a.shape[0], -1) if a.ndim > 0 else a.reshape(1, 1)
            mins.extend(s.min(axis=1))
            maxs.extend(s.max(axis=1))
        rec["batch_mean"] = [f32(np.mean(np.float64(mins))), f32(np.mean(np.float64(maxs)))]
        if lo == hi:
            for key in ["kl", "mse8", "mse4", "aciq_gauss8", "aciq_gauss4", "aciq_laplace8", "aciq_laplace4"]:
                rec[key] = [f32(lo), f32(hi)]
        else:
            # float64: np.histogram of float32 data bins in float32 arithmetic, which puts
            # values within an ulp of an edge on either side; in float64 binning is exact.
            counts, _ = np.histogram(np.abs(x).astype(np.float64), bins=BINS, range=(0.0, float(amax)))
            w = amax / BINS
            rec["kl"] = clamp(trt_kl_edge(counts, 256 if lo >= 0 else 128) * w, lo, hi)
            for bits in (8, 4):
                rec[f"mse{bits}"] = clamp(mse_alpha(counts, amax, bits, lo >= 0), lo, hi)
                rec[f"aciq_gauss{bits}"] = aciq(x, "gauss", bits, lo, hi)
                rec[f"aciq_laplace{bits}"] = aciq(x, "laplace", bits, lo, hi)
        out[n] = rec
        print(f"  {n}: minmax {rec['minmax']} kl {rec['kl']} ort_entropy {rec['ort_entropy']}")
    return out


def main():
    data = np.load(ROOT / "sample_models" / "data" / "digits_calib_x.npy")[:SAMPLES].astype(np.float32)
    out_dir = ROOT / "tests" / "fixtures" / "calibration"
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "samples": SAMPLES,
        "batch": BATCH,
        "bins": BINS,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "minmax": "MinMaxCalibrater symmetric=False",
        "ema": "MinMaxCalibrater moving_average=True averaging_constant=0.01, collect_data per batch",
        "percentile": "PercentileCalibrater symmetric=True num_bins=2048 percentile=99.99",
        "ort_entropy": "EntropyCalibrater num_bins=2048 num_quantized_bins=128 symmetric=False",
        "kl": "NumPy TensorRT entropy search (pytorch_quantization), |x| histogram 2048 bins, bin 0 = bin 1, 128 levels (256 when min >= 0), no smoothing, last argmin",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for m in MODELS:
            print(m)
            tensors = calibrate(m, data, tmp)
            doc = {"model": m, "settings": settings, "tensors": tensors}
            (out_dir / f"{m}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
