//! Range calibration methods: from a tensor's [`CalibrationStats`] to a clip range (min, max).
//!
//! Common rules, for every method:
//!
//! * `bits` must be in 2..=16, the percentile in (0, 100]; otherwise [`CalibError::Setting`].
//! * No finite value observed → [`CalibError::NoData`]. NaN/±Inf are ignored by the observers.
//! * A constant tensor (min = max) gets (min, max) from every method.
//! * Histogram and fitted methods find a magnitude threshold `t` (or clip `α`) and return it
//!   clamped to the observed range, as onnxruntime does: `(max(−t, min), min(t, max))`. A tensor
//!   with min ≥ 0 thus gets `(min, t)` (the quantizer's grid adds 0). No method returns a range
//!   beyond the observed [min, max]: a clip beyond the data only wastes levels.
//!
//! The methods:
//!
//! * `minmax`: the global (min, max).
//! * `ema`: the EMA of per-batch (min, max), new-batch weight 0.01 (see the observer).
//! * `batch-mean`: the mean over samples of per-sample (min, max).
//! * `percentile:p` (default 99.99): onnxruntime's `PercentileCalibrator` with its default
//!   `symmetric=True`: on the 2048-bin histogram of |x|, `t` is the **left** edge of the first
//!   bin at which the cumulative fraction reaches p/100. (onnxruntime's |x| histogram starts at
//!   the first batch's min |x|, ours at 0, and it drops later values below that start; for the
//!   usual activations this moves `t` by less than a bin.)
//! * `mse`: the clip `α` on the |x| histogram grid (α = k·w, k = 1..=2048) minimising the
//!   expected squared error of a uniform quantizer, with bin centres `x_j` as the values:
//!   `Σ_{x_j<α} c_j·Δ²/12 + Σ_{x_j>α} c_j·(x_j − α)²`, where `Δ = α/(2^b − 1)` for a tensor
//!   with min ≥ 0 (grid [0, α]) and `Δ = 2α/(2^b − 1)` otherwise (grid [−α, α]).
//! * `aciq-gauss`, `aciq-laplace`: Banner et al.'s analytic clip. Two-sided: μ = mean,
//!   σ = std or b = mean|x − μ|, α = r(b bits)·σ (or ·b), range [μ − α, μ + α]. One-sided
//!   (min ≥ 0, e.g. after ReLU): the positive values are fitted as a half-normal
//!   (σ = √mean x²) or exponential (b = mean x), and the clip is [min, α] with α = r(bits + 1)
//!   times that parameter (2^b levels on [0, α] have the step of 2^(b+1) levels on [−α, α]).
//!   r(M) is Banner's table for 2..=8 bits; above, the minimiser of the same closed-form error
//!   (`2b²e^(−α/b) + α²/(3·4^M)`, and the Gaussian analogue), computed numerically.
//! * `kl`: TensorRT's entropy calibration, on the 2048-bin |x| histogram (see [`kl_search`]),
//!   for 2^(b−1) levels, or 2^b when min ≥ 0 (the unsigned grid of a post-ReLU tensor, as
//!   NVIDIA's `pytorch_quantization` counts them: `1 << (num_bits − 1 + unsigned)`).
//!   Its objective is often nearly flat between distant candidates, so perturbing a few values
//!   by one bin (streamed re-binning, or ulp-level differences between engines) can move the
//!   choice by tens to hundreds of bins at almost the same divergence. On the sample models,
//!   batches of 32 versus a single pass moved KL by up to 312 bins; percentile and MSE by ≤ 3.
//!   onnxruntime's `EntropyCalibrater` is a different (MXNet-derived) algorithm and is not
//!   matched: signed histogram, symmetric windows, Q truncated to integers.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::CalibError;
use super::observer::CalibrationStats;

/// Default percentile of [`Method::Percentile`].
pub const DEFAULT_PERCENTILE: f64 = 99.99;

/// A range calibration method. Parses from and prints as `minmax`, `ema`, `batch-mean`,
/// `percentile:99.99` (`percentile` alone means 99.99), `mse`, `aciq-gauss`, `aciq-laplace`,
/// `kl`; serde uses the same strings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Method {
    MinMax,
    Ema,
    BatchMean,
    Percentile(f64),
    Mse,
    AciqGauss,
    AciqLaplace,
    Kl,
}

impl Method {
    /// Every method, with the default percentile.
    pub const ALL: [Method; 8] = [
        Method::MinMax,
        Method::Ema,
        Method::BatchMean,
        Method::Percentile(DEFAULT_PERCENTILE),
        Method::Mse,
        Method::AciqGauss,
        Method::AciqLaplace,
        Method::Kl,
    ];

    /// The clip range of a tensor for a `bits`-bit quantizer.
    pub fn range(&self, stats: &CalibrationStats, bits: u32) -> Result<(f32, f32), CalibError> {
        check_bits(bits)?;
        if let Method::Percentile(p) = *self {
            check_percentile(p)?;
        }
        let (min, max) = stats.min_max().ok_or(CalibError::NoData)?;
        if min == max {
            return Ok((min, max));
        }
        let clamp = |t: f64| -> (f32, f32) {
            let t = t as f32;
            ((-t).max(min), t.min(max))
        };
        let one_sided = min >= 0.0;
        Ok(match *self {
            Method::MinMax => (min, max),
            Method::Ema => {
                let (lo, hi) = stats.ema().ok_or(CalibError::NoData)?;
                (lo as f32, hi as f32)
            }
            Method::BatchMean => {
                let (lo, hi) = stats.batch_mean().ok_or(CalibError::NoData)?;
                (lo as f32, hi as f32)
            }
            Method::Percentile(p) => {
                let h = stats.abs_histogram().ok_or(CalibError::NoData)?;
                clamp(percentile_threshold(&h.counts, f64::from(h.hi), p))
            }
            Method::Mse => {
                let h = stats.abs_histogram().ok_or(CalibError::NoData)?;
                clamp(mse_threshold(&h.counts, f64::from(h.hi), bits, one_sided))
            }
            Method::Kl => {
                let h = stats.abs_histogram().ok_or(CalibError::NoData)?;
                let levels = kl_levels(bits, one_sided);
                let width = f64::from(h.hi) / h.counts.len() as f64;
                match kl_search(&h.counts, levels) {
                    Some(found) => clamp(found.edge as f64 * width),
                    None => (min, max),
                }
            }
            Method::AciqGauss | Method::AciqLaplace => {
                let dist = if *self == Method::AciqGauss {
                    Distribution::Gauss
                } else {
                    Distribution::Laplace
                };
                if one_sided {
                    let (_, mean, rms) = stats.positive_moments().ok_or(CalibError::NoData)?;
                    let param = if dist == Distribution::Gauss {
                        rms
                    } else {
                        mean
                    };
                    let alpha = aciq_ratio(dist, bits + 1) * param;
                    (min, (alpha as f32).min(max))
                } else {
                    let mu = stats.mean().ok_or(CalibError::NoData)?;
                    let param = if dist == Distribution::Gauss {
                        stats.std()
                    } else {
                        stats.mean_abs_deviation()
                    }
                    .ok_or(CalibError::NoData)?;
                    let alpha = aciq_ratio(dist, bits) * param;
                    (
                        ((mu - alpha) as f32).max(min),
                        ((mu + alpha) as f32).min(max),
                    )
                }
            }
        })
    }
}

fn check_bits(bits: u32) -> Result<(), CalibError> {
    if (2..=16).contains(&bits) {
        Ok(())
    } else {
        Err(CalibError::Setting(format!(
            "bit width {bits} is out of range (2 to 16)"
        )))
    }
}

fn check_percentile(p: f64) -> Result<(), CalibError> {
    if p > 0.0 && p <= 100.0 {
        Ok(())
    } else {
        Err(CalibError::Setting(format!(
            "percentile {p} is out of range (0, 100]"
        )))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::MinMax => f.write_str("minmax"),
            Method::Ema => f.write_str("ema"),
            Method::BatchMean => f.write_str("batch-mean"),
            Method::Percentile(p) => write!(f, "percentile:{p}"),
            Method::Mse => f.write_str("mse"),
            Method::AciqGauss => f.write_str("aciq-gauss"),
            Method::AciqLaplace => f.write_str("aciq-laplace"),
            Method::Kl => f.write_str("kl"),
        }
    }
}

impl FromStr for Method {
    type Err = CalibError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let method = match s.to_ascii_lowercase().as_str() {
            "minmax" => Method::MinMax,
            "ema" => Method::Ema,
            "batch-mean" => Method::BatchMean,
            "percentile" => Method::Percentile(DEFAULT_PERCENTILE),
            "mse" => Method::Mse,
            "aciq-gauss" => Method::AciqGauss,
            "aciq-laplace" => Method::AciqLaplace,
            "kl" => Method::Kl,
            other => match other.strip_prefix("percentile:") {
                Some(p) => {
                    let p: f64 = p.trim().parse().map_err(|_| {
                        CalibError::Setting(format!("'{s}': the percentile is not a number"))
                    })?;
                    check_percentile(p)?;
                    Method::Percentile(p)
                }
                None => {
                    return Err(CalibError::Setting(format!(
                        "unknown calibration method '{s}' (expected minmax, ema, batch-mean, \
                         percentile[:p], mse, aciq-gauss, aciq-laplace or kl)"
                    )));
                }
            },
        };
        Ok(method)
    }
}

impl TryFrom<String> for Method {
    type Error = CalibError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Method> for String {
    fn from(m: Method) -> String {
        m.to_string()
    }
}

/// onnxruntime's symmetric percentile on a histogram of |x| over `[0, hi]`: the left edge of
/// the first bin whose cumulative fraction reaches `p/100`.
pub fn percentile_threshold(counts: &[u64], hi: f64, p: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 || counts.is_empty() {
        return 0.0;
    }
    let width = hi / counts.len() as f64;
    let target = p / 100.0;
    let mut cum = 0u64;
    for (k, &c) in counts.iter().enumerate() {
        cum += c;
        if cum as f64 / total as f64 >= target {
            return k as f64 * width;
        }
    }
    hi
}

/// The MSE-optimal clip on a histogram of |x| over `[0, hi]` (see the module docs): the first
/// minimum of [`mse_curve`].
pub fn mse_threshold(counts: &[u64], hi: f64, bits: u32, one_sided: bool) -> f64 {
    if counts.is_empty() || hi <= 0.0 {
        return hi.max(0.0);
    }
    let mut best = (f64::INFINITY, hi);
    for (alpha, err) in mse_curve(counts, hi, bits, one_sided) {
        if err < best.0 {
            best = (err, alpha);
        }
    }
    best.1
}

/// The expected squared error (summed over the histogram's values) of a `bits`-bit uniform
/// quantizer clipping at `α`, for every candidate `α = k·w` (k = 1..=bins) on a histogram of
/// |x| over `[0, hi]`: the curve [`mse_threshold`] minimises, as (α, error) pairs. Empty for
/// an empty histogram or `hi ≤ 0`.
pub fn mse_curve(counts: &[u64], hi: f64, bits: u32, one_sided: bool) -> Vec<(f64, f64)> {
    let n = counts.len();
    if n == 0 || hi <= 0.0 {
        return Vec::new();
    }
    let width = hi / n as f64;
    let levels = ((1u64 << bits) - 1) as f64;
    let steps = if one_sided { levels } else { levels / 2.0 };
    // Suffix sums of c, c·x, c·x² over bin centres.
    let mut suffix = vec![(0.0f64, 0.0f64, 0.0f64); n + 1];
    for j in (0..n).rev() {
        let c = counts[j] as f64;
        let x = (j as f64 + 0.5) * width;
        let (a, b, d) = suffix[j + 1];
        suffix[j] = (a + c, b + c * x, d + c * x * x);
    }
    let total = suffix[0].0;
    suffix
        .iter()
        .enumerate()
        .skip(1)
        .map(|(k, &(c, cx, cx2))| {
            let alpha = k as f64 * width;
            let delta = alpha / steps;
            let inside = total - c;
            let err = inside * delta * delta / 12.0 + (cx2 - 2.0 * alpha * cx + alpha * alpha * c);
            (alpha, err)
        })
        .collect()
}

/// The distribution ACIQ fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    Gauss,
    Laplace,
}

const LAPLACE_RATIOS: [f64; 7] = [2.83, 3.89, 5.03, 6.20, 7.41, 8.65, 9.90];
const GAUSS_RATIOS: [f64; 7] = [1.71, 2.15, 2.56, 2.94, 3.29, 3.62, 3.92];

/// Banner et al.'s optimal clip α / parameter for `bits` bits on a symmetric grid: the table
/// for 2..=8 bits, the numerical minimiser of the closed-form error above (any `bits` ≥ 1).
pub fn aciq_ratio(dist: Distribution, bits: u32) -> f64 {
    if (2..=8).contains(&bits) {
        let i = (bits - 2) as usize;
        return match dist {
            Distribution::Laplace => LAPLACE_RATIOS[i],
            Distribution::Gauss => GAUSS_RATIOS[i],
        };
    }
    aciq_ratio_numeric(dist, bits)
}

/// The minimiser of ACIQ's expected error over α/parameter, by golden-section search.
pub fn aciq_ratio_numeric(dist: Distribution, bits: u32) -> f64 {
    let quant = 1.0 / (3.0 * 4f64.powi(bits as i32));
    let err = |a: f64| -> f64 {
        let clip = match dist {
            Distribution::Laplace => 2.0 * (-a).exp(),
            Distribution::Gauss => {
                (a * a + 1.0) * libm::erfc(a / std::f64::consts::SQRT_2)
                    - (2.0 / std::f64::consts::PI).sqrt() * a * (-a * a / 2.0).exp()
            }
        };
        clip + a * a * quant
    };
    let (mut lo, mut hi) = (0.1f64, 60.0f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = hi - g * (hi - lo);
    let mut x2 = lo + g * (hi - lo);
    let (mut f1, mut f2) = (err(x1), err(x2));
    for _ in 0..200 {
        if f1 < f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - g * (hi - lo);
            f1 = err(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + g * (hi - lo);
            f2 = err(x2);
        }
    }
    (lo + hi) / 2.0
}

/// Result of the KL threshold search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KlChoice {
    /// Number of kept bins `i`: the threshold is the right edge of bin `i − 1` (= i · width).
    pub edge: usize,
    /// KL(P‖Q) at that threshold (natural log).
    pub divergence: f64,
}

/// Smoothing constant for zero bins of onnxruntime's/MXNet's `smooth_distribution`. The KL
/// search no longer smooths (NVIDIA's implementation does not); kept for callers.
pub const KL_EPS: f64 = 1e-4;

/// The first candidate of the KL search: TensorRT's `start_bin`, 128 whatever the bit width.
pub const KL_START_BIN: usize = 128;

/// The counts the KL search works on: TensorRT's zero-bin rule `bins[0] = bins[1]`. Bin 0 of
/// |x| holds every exact zero (half of a post-ReLU tensor, say); left as it is, that one bin
/// dominates P, and the divergence then hardly depends on the tail, so the search cuts deep
/// into the values that matter (on a post-ReLU Student-t at 8 bits: SQNR 9 dB instead of
/// 17 dB). Replacing it by its neighbour makes P the shape of the non-zero values.
fn kl_counts(counts: &[u64]) -> Cow<'_, [u64]> {
    match counts {
        [first, second, ..] if first != second => {
            let mut c = counts.to_vec();
            c[0] = *second;
            Cow::Owned(c)
        }
        _ => Cow::Borrowed(counts),
    }
}

/// TensorRT's entropy calibration on a histogram of |x| (2048 bins in TensorRT), for `levels`
/// quantization levels (2^(b−1), 128 for int8; 2^b for an unsigned grid), as NVIDIA's open
/// implementation (`pytorch_quantization`'s `_compute_amax_entropy`) does it. First bin 0
/// takes the count of bin 1 (`kl_counts`: exact zeros must not drown the shape). Then, for
/// each candidate `i` from [`KL_START_BIN`] (or the bin count, if smaller) to the bin count:
///
/// * P = the first `i` bins, with every count beyond (the outliers) added to bin `i − 1`;
/// * Q = the same first `i` bins **without** the outliers, merged into `levels` levels (bin j
///   goes to level ⌊j·levels/i⌋), each level's total spread evenly over its non-empty bins,
///   empty bins getting 0;
/// * divergence = Σ p ln(p/q) over the bins with p > 0, P and Q normalised; no smoothing, so
///   a candidate whose bin `i − 1` is empty but receives outliers (q = 0 < p) is +∞.
///
/// The choice is the last `i` with the smallest divergence (TensorRT's `last_argmin`). Returns
/// None for an empty histogram. With prefix sums of c, c ln c and the non-empty bins, each
/// candidate costs O(levels), the search O(bins · levels); [`kl_divergence_at`] is the direct
/// computation.
pub fn kl_search(counts: &[u64], levels: usize) -> Option<KlChoice> {
    let curve = kl_curve(counts, levels);
    if curve.is_empty() {
        return None;
    }
    let mut best: Option<KlChoice> = None;
    for candidate in curve {
        if !candidate.divergence.is_finite() {
            continue;
        }
        if best.is_none_or(|bst| candidate.divergence <= bst.divergence) {
            best = Some(candidate);
        }
    }
    best.or(Some(KlChoice {
        edge: counts.len(),
        divergence: f64::INFINITY,
    }))
}

/// The divergence [`kl_search`] minimises, for every candidate `i` from [`KL_START_BIN`] (or
/// the bin count, if smaller) to the bin count, in order: +∞ where Q misses mass P has (or is
/// empty), NaN never. Empty for an empty histogram.
pub fn kl_curve(counts: &[u64], levels: usize) -> Vec<KlChoice> {
    let counts = &*kl_counts(counts);
    let n = counts.len();
    let levels = levels.max(1);
    let total: u64 = counts.iter().sum();
    if n == 0 || total == 0 {
        return Vec::new();
    }
    let mut pc = vec![0.0f64; n + 1];
    let mut pnz = vec![0usize; n + 1];
    let mut pclc = vec![0.0f64; n + 1];
    for (j, &c) in counts.iter().enumerate() {
        let c = c as f64;
        pc[j + 1] = pc[j] + c;
        pnz[j + 1] = pnz[j] + usize::from(c > 0.0);
        pclc[j + 1] = pclc[j] + if c > 0.0 { c * c.ln() } else { 0.0 };
    }
    let total_f = pc[n];
    let mut curve = Vec::with_capacity(n);
    // ln(s/nz) of each level's last bin range: most levels keep their range from one
    // candidate to the next, so the logarithm is reused (the same value, computed once).
    let mut cached: Vec<(usize, usize, f64)> = vec![(usize::MAX, usize::MAX, 0.0); levels];
    for i in KL_START_BIN.min(n).max(1)..=n {
        let last = counts[i - 1] as f64;
        let outliers = total_f - pc[i];
        let sum_q = pc[i];
        if (last == 0.0 && outliers > 0.0) || sum_q == 0.0 {
            curve.push(KlChoice {
                edge: i,
                divergence: f64::INFINITY,
            });
            continue;
        }
        // Σ p ln p over P's counts: bins 0..i−1 unchanged, bin i−1 with the outliers.
        let p_last = last + outliers;
        let p_ln_p_last = if p_last > 0.0 {
            p_last * p_last.ln()
        } else {
            0.0
        };
        let a = pclc[i - 1] + p_ln_p_last;
        // Σ p ln q: each level's q = s/nz on its non-empty bins, which hold all its P mass.
        let mut b = 0.0f64;
        let mut level_start = 0usize;
        for (level, entry) in cached.iter_mut().enumerate() {
            let level_end = ((level + 1) * i).div_ceil(levels);
            if level_end <= level_start {
                continue;
            }
            let s = pc[level_end] - pc[level_start];
            let nz = pnz[level_end] - pnz[level_start];
            if nz > 0 {
                let p_mass = if level_end == i { s + outliers } else { s };
                if (entry.0, entry.1) != (level_start, level_end) {
                    *entry = (level_start, level_end, (s / nz as f64).ln());
                }
                b += p_mass * entry.2;
            }
            level_start = level_end;
        }
        let divergence = (a - b) / total_f - total_f.ln() + sum_q.ln();
        curve.push(KlChoice {
            edge: i,
            divergence: if divergence.is_nan() {
                f64::INFINITY
            } else {
                divergence
            },
        });
    }
    curve
}

/// The number of levels the KL method compares for a `bits`-bit quantizer: 2^(b−1) on a
/// signed grid, 2^b when the tensor is one-sided (min ≥ 0, an unsigned grid).
pub fn kl_levels(bits: u32, one_sided: bool) -> usize {
    1usize << (bits - 1 + u32::from(one_sided))
}

/// KL(P‖Q) of [`kl_search`] for one candidate `i`, computed directly (for tests and checks).
pub fn kl_divergence_at(counts: &[u64], i: usize, levels: usize) -> f64 {
    let counts = &*kl_counts(counts);
    let n = counts.len();
    assert!(i >= 1 && i <= n, "candidate {i} outside 1..={n}");
    let levels = levels.max(1);
    let mut p: Vec<f64> = counts[..i].iter().map(|&c| c as f64).collect();
    p[i - 1] += counts[i..].iter().map(|&c| c as f64).sum::<f64>();
    let raw = &counts[..i];
    let mut q = vec![0.0f64; i];
    let mut level_start = 0;
    for level in 0..levels {
        let level_end = ((level + 1) * i).div_ceil(levels);
        if level_end <= level_start {
            continue;
        }
        let s: f64 = raw[level_start..level_end].iter().map(|&c| c as f64).sum();
        let nz = raw[level_start..level_end]
            .iter()
            .filter(|&&c| c > 0)
            .count();
        for j in level_start..level_end {
            if raw[j] > 0 {
                q[j] = s / nz as f64;
            }
        }
        level_start = level_end;
    }
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sq == 0.0 {
        return f64::INFINITY;
    }
    p.iter()
        .zip(&q)
        .filter(|&(&a, _)| a > 0.0)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            if b == 0.0 {
                f64::INFINITY
            } else {
                a * (a / b).ln()
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laplace_counts(n: usize, seed: u64) -> Vec<u64> {
        // |Laplace| samples into n bins over [0, max].
        let mut s = seed;
        let v: Vec<f64> = (0..100_000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                -((((s >> 11) as f64) + 0.5) / (1u64 << 53) as f64).ln()
            })
            .collect();
        let max = v.iter().copied().fold(0.0, f64::max);
        let mut c = vec![0u64; n];
        for x in v {
            c[((x / max * n as f64) as usize).min(n - 1)] += 1;
        }
        c
    }

    #[test]
    fn kl_fast_matches_direct_everywhere() {
        for (n, levels, seed) in [(2048, 128, 5), (300, 16, 9), (64, 128, 2)] {
            let mut counts = laplace_counts(n, seed);
            counts[n / 3] = 0; // some empty bins inside
            counts[n - 1] = 0;
            let mut best = (f64::INFINITY, 0);
            for i in KL_START_BIN.min(n)..=n {
                let d = kl_divergence_at(&counts, i, levels);
                if d <= best.0 {
                    best = (d, i);
                }
            }
            let fast = kl_search(&counts, levels).unwrap();
            assert_eq!(fast.edge, best.1, "n {n}, levels {levels}");
            let rel = (fast.divergence - best.0).abs() / best.0.abs().max(1e-3);
            assert!(
                rel < 1e-9,
                "n {n}: fast {} direct {} rel {rel}",
                fast.divergence,
                best.0
            );
        }
    }

    #[test]
    fn kl_clips_heavy_tails_and_keeps_uniform() {
        let counts = laplace_counts(2048, 11);
        let choice = kl_search(&counts, 128).unwrap();
        assert!(choice.edge < 2048, "heavy tail should be clipped");
        let uniform = vec![100u64; 2048];
        assert_eq!(kl_search(&uniform, 128).unwrap().edge, 2048);
        assert_eq!(kl_search(&[0, 0], 128), None);
    }

    #[test]
    fn aciq_numeric_reproduces_banner_table() {
        for bits in 2..=8 {
            for dist in [Distribution::Gauss, Distribution::Laplace] {
                let t = aciq_ratio(dist, bits);
                let x = aciq_ratio_numeric(dist, bits);
                assert!(
                    (t - x).abs() < 0.01,
                    "{dist:?} {bits}: table {t}, numeric {x}"
                );
            }
        }
        assert!(aciq_ratio(Distribution::Laplace, 9) > 9.9);
        assert!(aciq_ratio(Distribution::Gauss, 16) > 3.92);
    }

    #[test]
    fn method_strings_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Method>(&json).unwrap(), m);
        }
        assert_eq!(
            "percentile".parse::<Method>().unwrap(),
            Method::Percentile(99.99)
        );
        assert_eq!(
            "percentile:99.9".parse::<Method>().unwrap(),
            Method::Percentile(99.9)
        );
        for bad in ["percentile:0", "percentile:100.5", "percentile:x", "median"] {
            assert!(bad.parse::<Method>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Method>("\"bogus\"").is_err());
    }

    #[test]
    fn percentile_is_left_edge() {
        // 10 bins over [0, 10], one count each: 95 % is reached in bin 9 → left edge 9.
        let counts = vec![1u64; 10];
        assert_eq!(percentile_threshold(&counts, 10.0, 95.0), 9.0);
        assert_eq!(percentile_threshold(&counts, 10.0, 10.0), 0.0);
    }

    #[test]
    fn mse_prefers_clipping_only_for_long_tails() {
        let uniform = vec![10u64; 2048];
        assert!(mse_threshold(&uniform, 1.0, 8, true) > 0.99);
        let tail = laplace_counts(2048, 4);
        assert!(mse_threshold(&tail, 1.0, 4, true) < 0.5);
    }
}
