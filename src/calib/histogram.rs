//! A histogram whose range grows over batches, with memory fixed at construction.
//!
//! # Re-binning rule
//!
//! The histogram keeps `n` internal bins (`n` = output bins × oversampling, 2048 × 8 by
//! default) of equal width over `[lo, hi]`. The first batch sets `[lo, hi]` to its own range.
//! When a later batch falls outside, the range is widened to cover it, and to **at least twice
//! its previous span** (the extra span is split between the sides in proportion to how far each
//! side had to grow, so a side that did not grow keeps its edge: the |x| histogram stays
//! anchored at 0). Every old bin then moves its count into the new bin that contains the old
//! bin's centre.
//!
//! Why the doubling: a value's distance from the centre of the bin holding it is at most half a
//! bin after it is binned, and each re-binning adds at most half a new bin. With widths at
//! least doubling, the total stays at most one internal bin of the current width, so every
//! value is at most one internal bin away from where a single pass over the final range would
//! have put it. The number of re-binnings is at most log2(final span / first span).
//!
//! [`GrowingHistogram::resample`] finally maps the internal bins onto the requested output range
//! (e.g. `[0, max|x|]` with 2048 bins, TensorRT's layout), again by bin centre. Because the
//! final span is at least half the internal span, an internal bin is at most 2/oversampling of
//! an output bin wide: with oversampling ≥ 4 each value lands in its true output bin or an
//! adjacent one, and when the range never grew the result equals a single pass exactly
//! (values on bin edges aside). Exact histograms over data seen in several batches therefore
//! take a second pass with the range fixed from the start (the calibration workflow does so).

use crate::stats::Histogram;

/// Equal-width bins over a range that grows by re-binning.
#[derive(Debug, Clone)]
pub struct GrowingHistogram {
    lo: f64,
    hi: f64,
    counts: Vec<u64>,
    /// False until the first value range is set.
    started: bool,
    rebins: u32,
}

impl GrowingHistogram {
    /// An empty histogram of `bins` internal bins (at least 1).
    pub fn new(bins: usize) -> Self {
        let bins = bins.max(1);
        GrowingHistogram {
            lo: 0.0,
            hi: 0.0,
            counts: vec![0; bins],
            started: false,
            rebins: 0,
        }
    }

    /// Current internal range.
    pub fn range(&self) -> (f64, f64) {
        (self.lo, self.hi)
    }

    /// Internal counts.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// How many times the range has grown.
    pub fn rebin_count(&self) -> u32 {
        self.rebins
    }

    /// Total count.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len() as f64
    }

    /// Makes sure `[lo, hi]` (finite, lo ≤ hi) is inside the range, re-binning if needed.
    pub fn ensure_range(&mut self, lo: f64, hi: f64) {
        if !self.started {
            self.lo = lo;
            self.hi = hi;
            self.started = true;
            return;
        }
        if lo >= self.lo && hi <= self.hi {
            return;
        }
        let new_lo = lo.min(self.lo);
        let new_hi = hi.max(self.hi);
        let old_span = self.hi - self.lo;
        let span = (new_hi - new_lo).max(2.0 * old_span);
        let extra = span - (new_hi - new_lo);
        let grow_lo = self.lo - new_lo;
        let grow_hi = new_hi - self.hi;
        let lo_final = new_lo - extra * grow_lo / (grow_lo + grow_hi);
        let hi_final = lo_final + span;
        self.rebin(lo_final, hi_final.max(new_hi));
    }

    fn rebin(&mut self, lo: f64, hi: f64) {
        let n = self.counts.len();
        let old_width = self.width();
        let old_lo = self.lo;
        let new_width = (hi - lo) / n as f64;
        let mut counts = vec![0u64; n];
        for j in 0..n {
            let c = self.counts[j];
            if c == 0 {
                continue;
            }
            // A zero-width histogram holds every value at `lo`.
            let centre = old_lo + (j as f64 + 0.5) * old_width;
            let k = bin_index(centre, lo, new_width, n);
            counts[k] += c;
        }
        self.counts = counts;
        self.lo = lo;
        self.hi = hi;
        self.rebins += 1;
    }

    /// Adds the finite values of `values` (after `map`, identity or |x|) that lie in the range.
    /// Call [`ensure_range`](Self::ensure_range) with the batch's range first.
    pub fn add(&mut self, values: &[f32], abs: bool) {
        // The spare counters below are u32: feed at most 2^31 values at a time.
        if values.len() > 1 << 31 {
            for chunk in values.chunks(1 << 31) {
                self.add(chunk, abs);
            }
            return;
        }
        let bins = Bins::new(self.lo, self.hi, self.counts.len(), abs);
        let n = self.counts.len();
        let mut indices = [0u32; INDEX_BLOCK];
        // Few values: the spare arrays below would cost more than they save.
        if values.len() < n {
            for block in values.chunks(INDEX_BLOCK) {
                let indices = &mut indices[..block.len()];
                bins.indices(block, indices);
                for &k in indices.iter().filter(|&&k| (k as usize) < n) {
                    self.counts[k as usize] += 1;
                }
            }
            return;
        }
        // Two interleaved count arrays halve store-to-load stalls when neighbouring values hit
        // the same bin (common: ReLU zeros); their last slot takes the values outside the range.
        let mut even = vec![0u32; n + 1];
        let mut odd = vec![0u32; n + 1];
        for block in values.chunks(INDEX_BLOCK) {
            let indices = &mut indices[..block.len()];
            bins.indices(block, indices);
            let mut pairs = indices.chunks_exact(2);
            for pair in &mut pairs {
                even[pair[0] as usize] += 1;
                odd[pair[1] as usize] += 1;
            }
            for &k in pairs.remainder() {
                even[k as usize] += 1;
            }
        }
        for ((c, a), b) in self.counts.iter_mut().zip(even).zip(odd) {
            *c += u64::from(a) + u64::from(b);
        }
    }

    /// The counts mapped onto `bins` equal bins over `[lo, hi]` by internal bin centre
    /// (a zero-width output range puts everything in bin 0).
    pub fn resample(&self, lo: f64, hi: f64, bins: usize) -> Histogram {
        let bins = bins.max(1);
        let width = (hi - lo) / bins as f64;
        let own_width = self.width();
        let mut counts = vec![0u64; bins];
        for (j, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                let centre = self.lo + (j as f64 + 0.5) * own_width;
                counts[bin_index(centre, lo, width, bins)] += c;
            }
        }
        Histogram {
            lo: lo as f32,
            hi: hi as f32,
            counts,
        }
    }

    /// Σ |x − μ| over all values, each taken at its bin's centre (within half a bin).
    pub fn abs_deviation_sum(&self, mu: f64) -> f64 {
        let width = self.width();
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(|(j, &c)| c as f64 * (self.lo + (j as f64 + 0.5) * width - mu).abs())
            .sum()
    }
}

/// Values whose bin indices are computed together, in a loop the compiler vectorizes.
const INDEX_BLOCK: usize = 256;

/// The geometry of `n` equal bins over `[lo, hi]` as [`GrowingHistogram::add`] bins values.
#[derive(Debug, Clone, Copy)]
struct Bins {
    lo: f64,
    hi: f64,
    width: f64,
    inverse: f64,
    last: i64,
    abs: bool,
}

impl Bins {
    fn new(lo: f64, hi: f64, n: usize, abs: bool) -> Self {
        Bins {
            lo,
            hi,
            width: (hi - lo) / n as f64,
            inverse: if hi > lo { n as f64 / (hi - lo) } else { 0.0 },
            last: n as i64 - 1,
            abs,
        }
    }

    /// The bin of every value of `values` (|x| when `abs`) into `out`, `n` for a value outside
    /// `[lo, hi]` or NaN. Bin k is [lo + k·w, lo + (k+1)·w): the index from a multiplication,
    /// corrected against the edges (as numpy does), so binning is exact in f64 arithmetic.
    fn indices(&self, values: &[f32], out: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                // SAFETY: the CPU has the features the function is compiled for.
                return unsafe { self.indices_avx512(values, out) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                return unsafe { self.indices_avx2(values, out) };
            }
        }
        self.indices_generic(values, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx512vl")]
    unsafe fn indices_avx512(&self, values: &[f32], out: &mut [u32]) {
        self.indices_generic(values, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn indices_avx2(&self, values: &[f32], out: &mut [u32]) {
        self.indices_generic(values, out);
    }

    /// The same arithmetic on every instruction set (no fused multiply-adds), so the same bins.
    /// Branch-free (`select_unpredictable`) and with the float-to-integer conversion of a value
    /// already clamped into `[0, last]`, so the loop vectorizes whole.
    #[inline(always)]
    fn indices_generic(&self, values: &[f32], out: &mut [u32]) {
        use std::hint::select_unpredictable as select;
        let outside = (self.last + 1) as u32;
        let last = self.last as f64;
        for (o, &v) in out.iter_mut().zip(values) {
            let a = f64::from(if self.abs { v.abs() } else { v });
            let d = a - self.lo;
            // Clamped into [0, last]; NaN and values below `lo` give some bin, replaced below.
            let t = d * self.inverse;
            let t = select(t < last, t, last);
            let t = select(t >= 0.0, t, 0.0);
            // SAFETY: `t` is finite and in [0, last], which fits an i64.
            let k: i64 = unsafe { t.to_int_unchecked() };
            let down = k > 0 && (k as f64) * self.width > d;
            let up = k < self.last && ((k + 1) as f64) * self.width <= d;
            let k = k - i64::from(down) + i64::from(up);
            // `x >= lo && x <= hi` is false for NaN and for out-of-range values.
            *o = select(a >= self.lo && a <= self.hi, k as u32, outside);
        }
    }
}

/// Bin of `x` among `n` bins of `width` starting at `lo` (clamped to the ends).
fn bin_index(x: f64, lo: f64, width: f64, n: usize) -> usize {
    if width <= 0.0 {
        return 0;
    }
    let k = ((x - lo) / width).floor();
    if k <= 0.0 { 0 } else { (k as usize).min(n - 1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values (xorshift), Laplace-ish via log.
    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                let sign = if s & 1 == 0 { 1.0 } else { -1.0 };
                (sign * -(u.ln()) * scale as f64) as f32
            })
            .collect()
    }

    #[test]
    fn vector_bin_indices_equal_numpy_style_binning_on_every_value() {
        for (lo, hi, n) in [(-3.0, 5.0, 16384), (0.0, 7.5, 2048), (0.25, 0.25, 64)] {
            for abs in [false, true] {
                let bins = Bins::new(lo, hi, n, abs);
                let width = (hi - lo) / n as f64;
                let mut xs = values(5000, 7, 2.0);
                // Every bin edge exactly, just below and above it, and values outside.
                for k in (0..=n).step_by(7) {
                    let edge = (lo + k as f64 * width) as f32;
                    xs.extend([edge, edge.next_down(), edge.next_up()]);
                }
                xs.extend([f32::NAN, f32::INFINITY, -f32::INFINITY, hi as f32 + 1.0]);
                let mut got = vec![0u32; xs.len()];
                bins.indices(&xs, &mut got);
                for (&x, &k) in xs.iter().zip(&got) {
                    let a = f64::from(if abs { x.abs() } else { x });
                    let want = if a >= lo && a <= hi {
                        // The first bin whose upper edge lies above `a` (the last bin is
                        // closed), as numpy.histogram assigns it; a zero-width histogram keeps
                        // the multiplication's answer.
                        if hi > lo {
                            (0..n - 1)
                                .find(|&j| ((j + 1) as f64) * width > a - lo)
                                .unwrap_or(n - 1) as u32
                        } else {
                            k
                        }
                    } else {
                        n as u32
                    };
                    assert_eq!(k, want, "[{lo}, {hi}] n {n} abs {abs}: {x}");
                }
            }
        }
    }

    /// The range a histogram of `values` (or of |values|, from 0) covers.
    fn range_of(values: &[f32], abs: bool) -> (f32, f32) {
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                let v = if abs { v.abs() } else { v };
                (l.min(v), h.max(v))
            });
        (if abs { 0.0 } else { lo }, hi)
    }

    fn build(batches: &[Vec<f32>], abs: bool) -> GrowingHistogram {
        let mut h = GrowingHistogram::new(2048 * 8);
        for b in batches {
            let (lo, hi) = range_of(b, abs);
            h.ensure_range(lo as f64, hi as f64);
            h.add(b, abs);
        }
        h
    }

    #[test]
    fn batched_histogram_is_within_one_bin_of_a_single_pass() {
        // Batches with growing ranges force several re-binnings, on both sides.
        let batches: Vec<Vec<f32>> = (0..12)
            .map(|i| values(5000, 7 + i, 0.2 * (1.0 + i as f32 * 0.7)))
            .collect();
        for abs in [true, false] {
            let many = build(&batches, abs);
            assert!(many.rebin_count() >= 2, "test should exercise re-binning");
            let all: Vec<f32> = batches.concat();
            let (lo, hi) = range_of(&all, abs);
            let got = many.resample(lo as f64, hi as f64, 2048);
            let single = Histogram::with_range(&all, 2048, lo, hi);
            let single = if abs {
                let a: Vec<f32> = all.iter().map(|v| v.abs()).collect();
                Histogram::with_range(&a, 2048, lo, hi)
            } else {
                single
            };
            assert_eq!(got.counts.iter().sum::<u64>(), all.len() as u64);
            // Every value is in its own bin or a neighbour: the batched CDF at each edge lies
            // between the single-pass CDF one edge before and one edge after.
            let cdf = |c: &[u64]| {
                c.iter()
                    .scan(0u64, |s, &x| {
                        *s += x;
                        Some(*s)
                    })
                    .collect::<Vec<u64>>()
            };
            let (a, b) = (cdf(&got.counts), cdf(&single.counts));
            for k in 0..2048 {
                let before = if k == 0 { 0 } else { b[k - 1] };
                let after = b[(k + 1).min(2047)];
                assert!(before <= a[k] && a[k] <= after, "abs {abs}, edge {k}");
            }
        }
    }

    #[test]
    fn a_range_that_never_grows_is_exact() {
        let v = values(10_000, 3, 1.0);
        let (lo, hi) = v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        let mut h = GrowingHistogram::new(2048 * 8);
        h.ensure_range(lo as f64, hi as f64);
        h.add(&v[..5000], false);
        h.add(&v[5000..], false);
        assert_eq!(h.rebin_count(), 0);
        let got = h.resample(lo as f64, hi as f64, 2048);
        let single = Histogram::with_range(&v, 2048, lo, hi);
        let moved: u64 = got
            .counts
            .iter()
            .zip(&single.counts)
            .map(|(a, b)| a.abs_diff(*b))
            .sum();
        // Only values sitting on an edge (float rounding) may differ.
        assert!(moved <= 4, "{moved} values moved");
    }

    #[test]
    fn zero_width_start_and_bin_centre_deviation() {
        let mut h = GrowingHistogram::new(16);
        h.ensure_range(0.0, 0.0);
        h.add(&[0.0, 0.0, f32::NAN], false);
        h.ensure_range(-1.0, 3.0);
        h.add(&[-1.0, 3.0, 1.0], false);
        assert_eq!(h.total(), 5);
        assert_eq!(h.range(), (-1.0, 3.0));
        // |0| + |0| + |−1| + |3| + |1| = 5, each value within half a bin (0.125) of its centre
        let deviation = h.abs_deviation_sum(0.0);
        assert!((deviation - 5.0).abs() <= 5.0 * 0.125, "{deviation}");
    }
}
