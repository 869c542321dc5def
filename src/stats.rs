//! Summary statistics of a tensor: min, max, mean, standard deviation and non-finite counts in
//! one parallel pass, and per-channel ranges along a channel axis.
//!
//! Non-finite values (NaN, ±Inf) are counted and left out of every other statistic, so one bad
//! value cannot hide the distribution of the rest.

use ndarray::{ArrayViewD, Axis};
use rayon::prelude::*;
use serde::Serialize;

/// Statistics of the finite values of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of elements (finite or not).
    pub count: usize,
    /// Number of NaN elements.
    pub nan_count: usize,
    /// Number of ±Inf elements.
    pub inf_count: usize,
    /// Minimum finite value (0 when there is none).
    pub min: f32,
    /// Maximum finite value (0 when there is none).
    pub max: f32,
    /// Mean of the finite values.
    pub mean: f64,
    /// Population standard deviation of the finite values.
    pub std: f64,
}

impl Summary {
    /// Number of finite values.
    pub fn finite_count(&self) -> usize {
        self.count - self.nan_count - self.inf_count
    }

    /// True when every finite value is the same (including an empty tensor).
    pub fn is_constant(&self) -> bool {
        self.min == self.max
    }
}

/// Running sums for one chunk; merged pairwise (Chan et al.'s parallel variance).
#[derive(Clone, Copy)]
struct Partial {
    n: u64,
    nan: u64,
    inf: u64,
    min: f32,
    max: f32,
    mean: f64,
    m2: f64,
}

impl Partial {
    const EMPTY: Partial = Partial {
        n: 0,
        nan: 0,
        inf: 0,
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
        mean: 0.0,
        m2: 0.0,
    };

    fn of_slice(values: &[f32]) -> Partial {
        let mut p = Partial::EMPTY;
        let mut sum = 0.0f64;
        let mut finite = 0u64;
        for &v in values {
            if v.is_finite() {
                p.min = p.min.min(v);
                p.max = p.max.max(v);
                sum += v as f64;
                finite += 1;
            } else if v.is_nan() {
                p.nan += 1;
            } else {
                p.inf += 1;
            }
        }
        if finite > 0 {
            let mean = sum / finite as f64;
            let m2: f64 = values
                .iter()
                .filter(|v| v.is_finite())
                .map(|&v| {
                    let d = v as f64 - mean;
                    d * d
                })
                .sum();
            p.n = finite;
            p.mean = mean;
            p.m2 = m2;
        }
        p
    }

    fn merge(a: Partial, b: Partial) -> Partial {
        let n = a.n + b.n;
        let (mean, m2) = if n == 0 {
            (0.0, 0.0)
        } else {
            let delta = b.mean - a.mean;
            let mean = a.mean + delta * b.n as f64 / n as f64;
            let m2 = a.m2 + b.m2 + delta * delta * a.n as f64 * b.n as f64 / n as f64;
            (mean, m2)
        };
        Partial {
            n,
            nan: a.nan + b.nan,
            inf: a.inf + b.inf,
            min: a.min.min(b.min),
            max: a.max.max(b.max),
            mean,
            m2,
        }
    }

    fn finish(self, count: usize) -> Summary {
        let (min, max) = if self.n == 0 {
            (0.0, 0.0)
        } else {
            (self.min, self.max)
        };
        Summary {
            count,
            nan_count: self.nan as usize,
            inf_count: self.inf as usize,
            min,
            max,
            mean: self.mean,
            std: if self.n == 0 {
                0.0
            } else {
                (self.m2 / self.n as f64).sqrt()
            },
        }
    }
}

const CHUNK: usize = 1 << 15;

/// Summary of a contiguous slice of values (parallel over chunks).
pub fn summarize_slice(values: &[f32]) -> Summary {
    values
        .par_chunks(CHUNK)
        .map(Partial::of_slice)
        .reduce(|| Partial::EMPTY, Partial::merge)
        .finish(values.len())
}

/// Summary of any array view (contiguous views take the fast path).
pub fn summarize(values: ArrayViewD<'_, f32>) -> Summary {
    match values.as_slice_memory_order() {
        Some(slice) => summarize_slice(slice),
        None => {
            let owned: Vec<f32> = values.iter().copied().collect();
            summarize_slice(&owned)
        }
    }
}

/// (min, max) of the finite values of each channel along `axis`; (0, 0) for a channel with none.
/// An empty tensor has no channel ranges at all (its axes may declare any length, and one
/// entry per declared channel would allocate what the tensor never held).
pub fn channel_ranges(values: ArrayViewD<'_, f32>, axis: usize) -> Vec<(f32, f32)> {
    if axis >= values.ndim() || values.is_empty() {
        return Vec::new();
    }
    fn range<'a>(channel: impl Iterator<Item = &'a f32>) -> (f32, f32) {
        let (lo, hi) = channel
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if lo > hi { (0.0, 0.0) } else { (lo, hi) }
    }
    let channels = values.shape()[axis];
    // Contiguous channels along the leading axis: plain slices, no view iteration.
    if axis == 0
        && channels > 0
        && let Some(data) = values.as_slice()
    {
        let per_channel = data.len() / channels;
        if per_channel == 0 {
            return vec![(0.0, 0.0); channels];
        }
        return data
            .par_chunks_exact(per_channel)
            .map(|c| range(c.iter()))
            .collect();
    }
    let channels: Vec<ArrayViewD<'_, f32>> = values.axis_iter(Axis(axis)).collect();
    channels
        .into_par_iter()
        .map(|channel| range(channel.iter()))
        .collect()
}

/// How unequal the channels' ranges are: the widest channel range over the narrowest non-zero
/// one. Large values are what make per-tensor quantization fail (depthwise convs after BN
/// folding). None when fewer than two channels have a non-zero range.
pub fn range_spread(ranges: &[(f32, f32)]) -> Option<f32> {
    let widths: Vec<f32> = ranges
        .iter()
        .map(|(lo, hi)| hi - lo)
        .filter(|w| *w > 0.0)
        .collect();
    if widths.len() < 2 {
        return None;
    }
    let widest = widths.iter().copied().fold(f32::MIN, f32::max);
    let narrowest = widths.iter().copied().fold(f32::MAX, f32::min);
    Some(widest / narrowest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn summary_matches_closed_form() {
        // 0..n: mean (n-1)/2, population variance (n^2-1)/12.
        let n = 100_001usize;
        let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let s = summarize_slice(&values);
        assert_eq!(s.count, n);
        assert_eq!((s.min, s.max), (0.0, (n - 1) as f32));
        assert!((s.mean - (n as f64 - 1.0) / 2.0).abs() < 1e-6);
        let var = ((n * n) as f64 - 1.0) / 12.0;
        assert!((s.std - var.sqrt()).abs() / var.sqrt() < 1e-9);
    }

    #[test]
    fn non_finite_values_are_counted_not_used() {
        let s = summarize_slice(&[1.0, f32::NAN, 3.0, f32::INFINITY, f32::NEG_INFINITY]);
        assert_eq!((s.nan_count, s.inf_count, s.finite_count()), (1, 2, 2));
        assert_eq!((s.min, s.max, s.mean, s.std), (1.0, 3.0, 2.0, 1.0));
        let empty = summarize_slice(&[f32::NAN]);
        assert_eq!((empty.min, empty.max, empty.std), (0.0, 0.0, 0.0));
        assert!(summarize_slice(&[2.0; 10]).is_constant());
    }

    #[test]
    fn channel_ranges_along_any_axis() {
        let a =
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, -2.0, 3.0, 10.0, 0.5, -4.0]).unwrap();
        assert_eq!(channel_ranges(a.view(), 0), vec![(-2.0, 3.0), (-4.0, 10.0)]);
        assert_eq!(
            channel_ranges(a.view(), 1),
            vec![(1.0, 10.0), (-2.0, 0.5), (-4.0, 3.0)]
        );
        assert_eq!(range_spread(&[(-2.0, 3.0), (-4.0, 10.0)]), Some(14.0 / 5.0));
        assert_eq!(range_spread(&[(1.0, 1.0), (0.0, 2.0)]), None);
    }
}

/// Counts of finite values in `bins` equal-width bins over [lo, hi] (values outside are
/// clamped into the end bins). A degenerate range puts everything in one bin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    pub lo: f32,
    pub hi: f32,
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Histogram of the finite values of `values` over their own [min, max].
    pub fn of_slice(values: &[f32], bins: usize) -> Histogram {
        let s = summarize_slice(values);
        Histogram::with_range(values, bins, s.min, s.max)
    }

    /// Histogram of the finite values of `values` over [lo, hi] (parallel over chunks).
    pub fn with_range(values: &[f32], bins: usize, lo: f32, hi: f32) -> Histogram {
        let bins = bins.max(1);
        let width = (hi - lo) / bins as f32;
        let inverse = if width > 0.0 { 1.0 / width } else { 0.0 };
        let counts = values
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut counts = vec![0u64; bins];
                for &v in chunk.iter().filter(|v| v.is_finite()) {
                    let i = ((v - lo) * inverse).max(0.0) as usize;
                    counts[i.min(bins - 1)] += 1;
                }
                counts
            })
            .reduce(
                || vec![0u64; bins],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        Histogram { lo, hi, counts }
    }

    /// Width of one bin.
    pub fn bin_width(&self) -> f32 {
        (self.hi - self.lo) / self.counts.len().max(1) as f32
    }

    /// Centre of bin `i`.
    pub fn bin_center(&self, i: usize) -> f32 {
        self.lo + (i as f32 + 0.5) * self.bin_width()
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::Histogram;

    #[test]
    fn histogram_counts_each_value_once() {
        let values: Vec<f32> = (0..1000).map(|i| i as f32 / 10.0).collect(); // 0.0..99.9
        let h = Histogram::of_slice(&values, 10);
        assert_eq!(h.counts, vec![100; 10]);
        assert!((h.bin_center(0) - 99.9 / 20.0).abs() < 1e-4);
        let constant = Histogram::of_slice(&[3.0, 3.0, f32::NAN], 4);
        assert_eq!(constant.counts.iter().sum::<u64>(), 2);
    }
}
