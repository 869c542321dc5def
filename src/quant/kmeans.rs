//! K-means (codebook) quantization, as in Deep Compression: each weight is replaced by the
//! nearest of k = 2^bits centroids, stored as a b-bit index into a float codebook.
//!
//! Centroids start LINEARLY spaced over [min, max], c_j = min + j·(max − min)/(k − 1), and Lloyd
//! iterations alternate assignment (each w to its nearest centroid) and update (each centroid to
//! the mean of its cluster), minimizing the within-cluster squared error
//! Σ_j Σ_{w ∈ cluster j} (w − c_j)², until no assignment changes (or `max_iter`).
//!
//! In one dimension with sorted centroids the clusters are contiguous runs of the sorted
//! values, split at the midpoints (c_j + c_{j+1})/2. So the values are sorted once and prefix
//! sums taken (O(n log n)); each iteration then finds the k − 1 split points by binary search and
//! each new mean from the prefix sums (O(k log n)), whatever n is.
//!
//! Deterministic: there is no seed. An empty cluster is re-seeded at the value farthest from
//! its centroid (one per iteration), so the result depends only on the data. A value exactly at
//! a midpoint goes to the lower centroid.
//!
//! Non-finite values are left out of the fit (see [`super::linear`]); ±Inf get the extreme
//! centroids and NaN the centroid nearest to 0.

use ndarray::{ArrayD, ArrayViewD, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::channels::{
    Granularity, check_not_empty, decode_channels, layout_for_params, map_runs, no_finite_error,
};
use super::grid::QuantError;

type Result<T> = std::result::Result<T, QuantError>;

/// Default cap on Lloyd iterations (1-D k-means on weights converges in far fewer).
pub const DEFAULT_MAX_ITER: usize = 300;

/// Settings of a k-means quantizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KMeansConfig {
    /// Index width, 1 to 8: k = 2^bits centroids.
    pub bits: u32,
    pub granularity: Granularity,
    /// Most Lloyd iterations; 0 keeps the linear initialization.
    pub max_iter: usize,
}

impl KMeansConfig {
    /// `bits`-bit k-means with [`DEFAULT_MAX_ITER`].
    pub fn new(bits: u32, granularity: Granularity) -> Self {
        KMeansConfig {
            bits,
            granularity,
            max_iter: DEFAULT_MAX_ITER,
        }
    }
}

/// A k-means quantized tensor: W ≈ codebook_c[index].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansQuantized {
    /// k centroids per channel (one codebook per tensor), ascending.
    pub codebooks: Vec<Vec<f32>>,
    /// Index into the element's channel codebook, same shape as the input.
    pub indices: ArrayD<u8>,
    pub granularity: Granularity,
    /// Within-cluster squared error Σ (w − c)² over the finite values, per channel.
    pub sse: Vec<f64>,
    /// Lloyd iterations run, per channel.
    pub iterations: Vec<usize>,
    /// Whether every channel stopped because no assignment changed.
    pub converged: bool,
}

impl KMeansQuantized {
    /// Ŵ = codebook_c[index] per element.
    pub fn dequantize(&self) -> Result<ArrayD<f32>> {
        let layout = layout_for_params(
            self.indices.shape(),
            self.granularity,
            &[("codebooks", self.codebooks.len())],
        )?;
        if let Some(max) = self.indices.iter().max()
            && self.codebooks.iter().any(|c| c.len() <= usize::from(*max))
        {
            return Err(QuantError(format!(
                "index {max} is outside a codebook of {} entries",
                self.codebooks.iter().map(Vec::len).min().unwrap_or(0)
            )));
        }
        decode_channels(&self.indices, layout, |c| {
            let book = &self.codebooks[c];
            move |i: u8| book[usize::from(i)]
        })
    }

    /// Total within-cluster squared error over all channels.
    pub fn total_sse(&self) -> f64 {
        self.sse.iter().sum()
    }
}

/// Linearly spaced initial centroids over [min, max]: c_j = min + j·(max − min)/(k − 1).
pub fn linear_init(min: f32, max: f32, k: usize) -> Vec<f32> {
    if k <= 1 {
        return vec![min + (max - min) * 0.5; k];
    }
    let step = (f64::from(max) - f64::from(min)) / (k - 1) as f64;
    (0..k)
        .map(|j| (f64::from(min) + step * j as f64) as f32)
        .collect()
}

/// Result of fitting one channel.
struct Fit {
    codebook: Vec<f32>,
    sse: f64,
    iterations: usize,
    converged: bool,
}

/// The split points of the sorted values for sorted centroids: cluster j is
/// `sorted[bounds[j]..bounds[j + 1]]`, the values x with m_{j−1} < x ≤ m_j.
fn assign(sorted: &[f32], centroids: &[f64], bounds: &mut [usize]) {
    let k = centroids.len();
    bounds[0] = 0;
    bounds[k] = sorted.len();
    for j in 0..k - 1 {
        let mid = 0.5 * (centroids[j] + centroids[j + 1]);
        bounds[j + 1] = sorted.partition_point(|&x| f64::from(x) <= mid);
    }
}

/// Lloyd's algorithm on sorted finite values (non-empty), with prefix sums.
fn fit_sorted(sorted: &[f32], k: usize, max_iter: usize) -> Fit {
    let n = sorted.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f64);
    let mut acc = 0.0f64;
    for &x in sorted {
        acc += f64::from(x);
        prefix.push(acc);
    }
    let init = linear_init(sorted[0], sorted[n - 1], k);
    let mut centroids: Vec<f64> = init.iter().map(|&c| f64::from(c)).collect();
    let mut bounds = vec![0usize; k + 1];
    let mut next = vec![0usize; k + 1];
    assign(sorted, &centroids, &mut bounds);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < max_iter {
        iterations += 1;
        // Update: each non-empty cluster's centroid to its mean.
        let mut empty = None;
        for j in 0..k {
            let (a, b) = (bounds[j], bounds[j + 1]);
            if b > a {
                centroids[j] = (prefix[b] - prefix[a]) / (b - a) as f64;
            } else if empty.is_none() {
                empty = Some(j);
            }
        }
        // Re-seed one empty cluster at the value farthest from its centroid (a cluster's end).
        let mut reseeded = false;
        if let Some(e) = empty {
            let mut farthest = (0.0f64, 0.0f64);
            for j in 0..k {
                let (a, b) = (bounds[j], bounds[j + 1]);
                if b > a {
                    for x in [f64::from(sorted[a]), f64::from(sorted[b - 1])] {
                        let d = (x - centroids[j]).abs();
                        if d > farthest.0 {
                            farthest = (d, x);
                        }
                    }
                }
            }
            if farthest.0 > 0.0 {
                centroids[e] = farthest.1;
                reseeded = true;
            }
        }
        centroids.sort_by(f64::total_cmp);
        assign(sorted, &centroids, &mut next);
        let unchanged = next == bounds;
        std::mem::swap(&mut bounds, &mut next);
        if unchanged && !reseeded {
            converged = true;
            break;
        }
    }
    // The stored codebook is f32: assign to it once more, so indices and error describe exactly
    // what is returned (never worse than the f64 centroids' assignment by more than rounding).
    let codebook: Vec<f32> = centroids.iter().map(|&c| c as f32).collect();
    let rounded: Vec<f64> = codebook.iter().map(|&c| f64::from(c)).collect();
    assign(sorted, &rounded, &mut bounds);
    let mut sse = 0.0;
    for j in 0..k {
        let c = rounded[j];
        sse += sorted[bounds[j]..bounds[j + 1]]
            .iter()
            .map(|&x| (f64::from(x) - c).powi(2))
            .sum::<f64>();
    }
    Fit {
        codebook,
        sse,
        iterations,
        converged,
    }
}

/// K-means quantization with k = 2^bits centroids per tensor or per channel (see the module
/// docs): linear initialization, Lloyd iterations until no assignment changes, u8 indices.
pub fn kmeans(values: ArrayViewD<'_, f32>, config: &KMeansConfig) -> Result<KMeansQuantized> {
    if !(1..=8).contains(&config.bits) {
        return Err(QuantError(format!(
            "k-means index width {} bits is out of range (1 to 8)",
            config.bits
        )));
    }
    let k = 1usize << config.bits;
    let granularity = config.granularity;
    let layout = granularity.layout(values.shape())?;
    check_not_empty(&values)?;
    let finite_sorted = |channel: ArrayViewD<'_, f32>, parallel: bool| -> Vec<f32> {
        let mut v: Vec<f32> = channel.iter().copied().filter(|x| x.is_finite()).collect();
        if parallel {
            v.par_sort_unstable_by(f32::total_cmp);
        } else {
            v.sort_unstable_by(f32::total_cmp);
        }
        v
    };
    let channels: Vec<Vec<f32>> = match granularity {
        Granularity::PerTensor => vec![finite_sorted(values.view(), true)],
        Granularity::PerChannel { axis } => (0..layout.channels)
            .into_par_iter()
            .map(|c| finite_sorted(values.index_axis(Axis(axis), c), false))
            .collect(),
    };
    let fits: Vec<Result<Fit>> = channels
        .into_par_iter()
        .enumerate()
        .map(|(c, sorted)| {
            if sorted.is_empty() {
                return Err(no_finite_error(&values, granularity, c));
            }
            Ok(fit_sorted(&sorted, k, config.max_iter))
        })
        .collect();
    let fits = fits.into_iter().collect::<Result<Vec<Fit>>>()?;
    // Nearest centroid per element: binary search among the midpoints (ties to the lower).
    let midpoints: Vec<Vec<f64>> = fits
        .iter()
        .map(|f| {
            f.codebook
                .windows(2)
                .map(|w| 0.5 * (f64::from(w[0]) + f64::from(w[1])))
                .collect()
        })
        .collect();
    let indices = map_runs(
        &values,
        layout,
        |_| (),
        |_, c, xs, out| {
            let mids = &midpoints[c];
            for (o, &x) in out.iter_mut().zip(xs) {
                let x = if x.is_nan() { 0.0 } else { f64::from(x) };
                // At most 2^8 − 1 midpoints, so the index fits u8.
                *o = mids.partition_point(|&m| x > m) as u8;
            }
        },
    )?;
    Ok(KMeansQuantized {
        converged: fits.iter().all(|f| f.converged),
        sse: fits.iter().map(|f| f.sse).collect(),
        iterations: fits.iter().map(|f| f.iterations).collect(),
        codebooks: fits.into_iter().map(|f| f.codebook).collect(),
        indices,
        granularity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::IntGrid;
    use crate::quant::linear::{LinearConfig, Rounding, fake_quantize, minmax_params};
    use crate::quant::test_support::squared_error;
    use ndarray::IxDyn;
    use rand::{RngExt, SeedableRng};
    use rand_pcg::Pcg64;

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        // Box–Muller.
        let mut rng = Pcg64::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let u1: f64 = 1.0 - rng.random::<f64>();
                let u2: f64 = rng.random();
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
            })
            .collect()
    }

    fn tensor(shape: &[usize], data: Vec<f32>) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
    }

    /// Textbook Lloyd: O(nk) per iteration, same initialization and tie rule.
    fn naive_lloyd(xs: &[f32], k: usize) -> (Vec<f64>, f64) {
        let lo = xs.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut c: Vec<f64> = linear_init(lo, hi, k).into_iter().map(f64::from).collect();
        let nearest = |c: &[f64], x: f64| {
            (0..k)
                .min_by(|&a, &b| (x - c[a]).abs().total_cmp(&(x - c[b]).abs()))
                .unwrap()
        };
        let mut assignment: Vec<usize> = xs.iter().map(|&x| nearest(&c, f64::from(x))).collect();
        loop {
            let mut sums = vec![(0.0, 0usize); k];
            for (&x, &a) in xs.iter().zip(&assignment) {
                sums[a].0 += f64::from(x);
                sums[a].1 += 1;
            }
            for (cj, (s, n)) in c.iter_mut().zip(&sums) {
                assert!(*n > 0, "test data must not empty a cluster");
                *cj = s / *n as f64;
            }
            let next: Vec<usize> = xs.iter().map(|&x| nearest(&c, f64::from(x))).collect();
            if next == assignment {
                break;
            }
            assignment = next;
        }
        let sse = xs
            .iter()
            .zip(&assignment)
            .map(|(&x, &a)| (f64::from(x) - c[a]).powi(2))
            .sum();
        (c, sse)
    }

    #[test]
    fn linear_initialization_spans_the_range() {
        assert_eq!(linear_init(-1.0, 2.0, 4), vec![-1.0, 0.0, 1.0, 2.0]);
        assert_eq!(linear_init(3.0, 3.0, 2), vec![3.0, 3.0]);
    }

    #[test]
    fn prefix_sum_lloyd_matches_textbook_lloyd() {
        for (seed, bits) in [(1, 2), (2, 3), (3, 1)] {
            let xs = gaussian(3000, seed);
            let q = kmeans(
                tensor(&[3000], xs.clone()).view(),
                &KMeansConfig::new(bits, Granularity::PerTensor),
            )
            .unwrap();
            assert!(q.converged);
            let (c, sse) = naive_lloyd(&xs, 1 << bits);
            for (&a, &b) in q.codebooks[0].iter().zip(&c) {
                assert!((f64::from(a) - b).abs() < 1e-5, "{a} vs {b}");
            }
            assert!((q.sse[0] - sse).abs() < 1e-6 * sse.max(1.0));
        }
    }

    #[test]
    fn centroids_find_a_known_mixture() {
        // Three well-separated centres; k = 4, so one centre gets two centroids (re-seeding an
        // empty cluster is what finds it).
        let centres = [-2.0f32, 0.5, 3.0];
        let mut rng = Pcg64::seed_from_u64(5);
        let xs: Vec<f32> = (0..3000)
            .map(|i| centres[i % 3] + 0.1 * (rng.random::<f32>() - 0.5))
            .collect();
        let w = tensor(&[3000], xs);
        let q = kmeans(w.view(), &KMeansConfig::new(2, Granularity::PerTensor)).unwrap();
        let book = &q.codebooks[0];
        assert!(book.windows(2).all(|p| p[0] <= p[1]));
        for &centre in &centres {
            assert!(book.iter().any(|c| (c - centre).abs() < 0.03), "{book:?}");
        }
        for &c in book {
            assert!(
                centres.iter().any(|centre| (c - centre).abs() < 0.06),
                "{book:?}"
            );
        }
        // Within-cluster error is that of the noise (variance 0.01/12 per value) or less.
        assert!(q.total_sse() <= 3000.0 * 0.01 / 12.0 * 1.05);
        let d = q.dequantize().unwrap();
        assert!((squared_error(&w, &d) - q.total_sse()).abs() < 1e-6);
    }

    #[test]
    fn iterations_never_do_worse_than_the_linear_initialization() {
        let mut xs = gaussian(5000, 6);
        xs[0] = 12.0; // an outlier leaves linear-init clusters empty
        let w = tensor(&[50, 100], xs);
        for granularity in [Granularity::PerTensor, Granularity::PerChannel { axis: 1 }] {
            for bits in 1..=4 {
                let mut cfg = KMeansConfig::new(bits, granularity);
                let fitted = kmeans(w.view(), &cfg).unwrap();
                cfg.max_iter = 0;
                let initial = kmeans(w.view(), &cfg).unwrap();
                assert!(initial.iterations.iter().all(|&i| i == 0));
                for (c, (&a, &b)) in fitted.sse.iter().zip(&initial.sse).enumerate() {
                    assert!(a <= b + 1e-9, "bits {bits} channel {c}: {a} > {b}");
                }
                assert!(fitted.total_sse() < initial.total_sse());
            }
        }
    }

    #[test]
    fn kmeans_beats_linear_quantization_at_two_bits() {
        let w = tensor(&[4096], gaussian(4096, 7));
        let q = kmeans(w.view(), &KMeansConfig::new(2, Granularity::PerTensor)).unwrap();
        let err_new = squared_error(&w, &q.dequantize().unwrap());
        let cfg = LinearConfig {
            grid: IntGrid::new(2, true, false).unwrap(),
            symmetric: false,
            granularity: Granularity::PerTensor,
            rounding: Rounding::NearestEven,
        };
        let p = minmax_params(w.view(), &cfg).unwrap();
        let linear = fake_quantize(w.view(), &p, cfg.granularity, cfg.rounding).unwrap();
        let err_base = squared_error(&w, &linear);
        assert!(err_new < err_base, "{err_new} vs {err_base}");
        // Lloyd–Max for a unit Gaussian at 4 levels: MSE ≈ 0.1175.
        assert!(
            (err_new / 4096.0 - 0.1175).abs() < 0.01,
            "{}",
            err_new / 4096.0
        );
    }

    #[test]
    fn per_channel_codebooks_equal_those_of_each_slice() {
        let w = tensor(&[4, 6, 5], gaussian(120, 8));
        for axis in 0..3 {
            let g = Granularity::PerChannel { axis };
            let q = kmeans(w.view(), &KMeansConfig::new(2, g)).unwrap();
            assert_eq!(q.codebooks.len(), w.shape()[axis]);
            for (c, slice) in w.axis_iter(Axis(axis)).enumerate() {
                let s = kmeans(slice, &KMeansConfig::new(2, Granularity::PerTensor)).unwrap();
                assert_eq!(s.codebooks[0], q.codebooks[c]);
                assert_eq!(s.indices, q.indices.index_axis(Axis(axis), c));
            }
            assert_eq!(kmeans(w.view(), &KMeansConfig::new(2, g)).unwrap(), q);
        }
    }

    #[test]
    fn few_distinct_values_and_non_finite_values() {
        let w = tensor(&[6], vec![1.0, 1.0, 2.0, f32::NAN, f32::INFINITY, -0.5]);
        let q = kmeans(w.view(), &KMeansConfig::new(3, Granularity::PerTensor)).unwrap();
        assert!(q.converged);
        assert!(q.total_sse() < 1e-12);
        let d = q.dequantize().unwrap();
        assert_eq!((d[[0]], d[[2]], d[[5]]), (1.0, 2.0, -0.5));
        assert_eq!(d[[4]], 2.0); // +Inf saturates to the largest centroid
        let nearest_zero = q.codebooks[0]
            .iter()
            .copied()
            .min_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap();
        assert_eq!(d[[3]], nearest_zero);
    }

    #[test]
    fn bad_settings_are_errors() {
        let w = tensor(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        for bits in [0, 9] {
            assert!(kmeans(w.view(), &KMeansConfig::new(bits, Granularity::PerTensor)).is_err());
        }
        let g = Granularity::PerChannel { axis: 2 };
        assert!(kmeans(w.view(), &KMeansConfig::new(2, g)).is_err());
        let empty = tensor(&[0], vec![]);
        assert!(kmeans(empty.view(), &KMeansConfig::new(2, Granularity::PerTensor)).is_err());
        let nan = tensor(&[2, 2], vec![1.0, f32::NAN, 2.0, f32::NAN]);
        let err = kmeans(
            nan.view(),
            &KMeansConfig::new(2, Granularity::PerChannel { axis: 1 }),
        )
        .unwrap_err();
        assert!(
            err.0.contains("channel 1 (axis 1)") && err.0.contains("2 NaN"),
            "{err}"
        );
        let mut q = kmeans(w.view(), &KMeansConfig::new(1, Granularity::PerTensor)).unwrap();
        q.indices[[0, 0]] = 7;
        assert!(q.dequantize().is_err());
    }
}
