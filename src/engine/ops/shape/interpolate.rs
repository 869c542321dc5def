//! Resize's arithmetic: coordinate transformations, nearest rounding, and the per-axis taps
//! (input index, weight) of linear, cubic and antialiased interpolation, applied one axis at a
//! time. The formulas are onnxruntime's CPU kernel's, so results match it to rounding.

use rayon::prelude::*;

use super::super::go_parallel;
use crate::engine::buffers::zeroed;

/// How an output coordinate maps to an input coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Coordinates {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
    TfCropAndResize,
}

impl Coordinates {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "half_pixel" => Coordinates::HalfPixel,
            "half_pixel_symmetric" => Coordinates::HalfPixelSymmetric,
            "pytorch_half_pixel" => Coordinates::PytorchHalfPixel,
            "align_corners" => Coordinates::AlignCorners,
            "asymmetric" => Coordinates::Asymmetric,
            "tf_half_pixel_for_nn" => Coordinates::TfHalfPixelForNn,
            "tf_crop_and_resize" => Coordinates::TfCropAndResize,
            _ => return None,
        })
    }
}

/// One axis of a resize: sizes, scale and (for tf_crop_and_resize) the region of interest.
#[derive(Debug, Clone, Copy)]
pub(super) struct AxisResize {
    pub len_in: usize,
    pub len_out: usize,
    pub scale: f32,
    pub roi: (f32, f32),
}

impl AxisResize {
    /// Input coordinate of output position `x`.
    pub fn source(&self, mode: Coordinates, x: f32) -> f32 {
        let (li, lo, scale) = (self.len_in as f32, self.len_out as f32, self.scale);
        match mode {
            Coordinates::HalfPixel => (x + 0.5) / scale - 0.5,
            Coordinates::HalfPixelSymmetric => {
                let adjustment = lo / (scale * li);
                let center = li / 2.0;
                let offset = center * (1.0 - adjustment);
                offset + (x + 0.5) / scale - 0.5
            }
            Coordinates::PytorchHalfPixel => {
                if self.len_out > 1 {
                    (x + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            Coordinates::AlignCorners => {
                if self.len_out == 1 {
                    0.0
                } else {
                    x * (li - 1.0) / (lo - 1.0)
                }
            }
            Coordinates::Asymmetric => x / scale,
            Coordinates::TfHalfPixelForNn => (x + 0.5) / scale,
            Coordinates::TfCropAndResize => {
                let (start, end) = self.roi;
                if self.len_out > 1 {
                    start * (li - 1.0) + (x * (end - start) * (li - 1.0)) / (lo - 1.0)
                } else {
                    0.5 * (start + end) * (li - 1.0)
                }
            }
        }
    }

    /// Whether a source coordinate lies outside the input (tf_crop_and_resize extrapolates
    /// there).
    pub fn outside(&self, source: f32) -> bool {
        source < 0.0 || source > (self.len_in as f32 - 1.0)
    }

    /// Whether this axis maps every output index to the same input index.
    pub fn is_identity(&self, mode: Coordinates) -> bool {
        self.len_in == self.len_out && self.scale == 1.0 && mode != Coordinates::TfCropAndResize
    }
}

/// How nearest mode rounds a source coordinate.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Nearest {
    /// Resize-10 / Upsample: truncate when upsampling, ceil when downsampling.
    Simple,
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// The input index nearest to source coordinate `x` (clamped into the input).
pub(super) fn nearest_index(x: f32, mode: Nearest, downsampling: bool, len_in: usize) -> usize {
    let half = x.floor() + 0.5 == x;
    let i = match mode {
        Nearest::Simple => {
            if downsampling {
                x.ceil()
            } else {
                x.trunc()
            }
        }
        Nearest::RoundPreferFloor => {
            if half {
                x.floor()
            } else {
                x.round()
            }
        }
        Nearest::RoundPreferCeil => {
            if half {
                x.ceil()
            } else {
                x.round()
            }
        }
        Nearest::Floor => x.floor(),
        Nearest::Ceil => x.ceil(),
    };
    (i.max(0.0) as usize).min(len_in.saturating_sub(1))
}

/// Linear or cubic interpolation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Filter {
    Linear,
    Cubic { a: f32, exclude_outside: bool },
}

/// Weighted input taps of every output index along one axis (compressed rows), plus the
/// outputs whose source lies outside the input.
pub(super) struct Taps {
    pub len_in: usize,
    pub len_out: usize,
    /// Taps of output j are `index[start[j]..start[j + 1]]` with `weight[..]`.
    start: Vec<usize>,
    index: Vec<usize>,
    weight: Vec<f32>,
    pub outside: Vec<bool>,
}

impl Taps {
    fn new(axis: &AxisResize) -> Self {
        Taps {
            len_in: axis.len_in,
            len_out: axis.len_out,
            start: vec![0],
            index: Vec::new(),
            weight: Vec::new(),
            outside: Vec::with_capacity(axis.len_out),
        }
    }

    fn push(&mut self, taps: impl IntoIterator<Item = (usize, f32)>, outside: bool) {
        for (i, w) in taps {
            self.index.push(i);
            self.weight.push(w);
        }
        self.start.push(self.index.len());
        self.outside.push(outside);
    }

    /// The taps of an axis, for `filter`, with antialiasing or without.
    pub fn build(axis: &AxisResize, mode: Coordinates, filter: Filter, antialias: bool) -> Taps {
        if antialias {
            antialias_taps(axis, mode, filter)
        } else {
            match filter {
                Filter::Linear => linear_taps(axis, mode),
                Filter::Cubic { a, exclude_outside } => cubic_taps(axis, mode, a, exclude_outside),
            }
        }
    }

    /// Resamples `data` (`[outer, len_in, inner]`) along the axis to `[outer, len_out, inner]`.
    pub fn apply(&self, data: &[f32], outer: usize, inner: usize) -> Vec<f32> {
        let block_in = self.len_in * inner;
        let block_out = self.len_out * inner;
        let mut out = zeroed::<f32>(outer * block_out);
        if block_out == 0 {
            return out;
        }
        let run = |src: &[f32], dst: &mut [f32]| {
            if inner == 1 {
                // The last axis: one sum per output, kept in a register.
                for (j, o) in dst.iter_mut().enumerate() {
                    let taps = self.start[j]..self.start[j + 1];
                    *o = self.index[taps.clone()]
                        .iter()
                        .zip(&self.weight[taps])
                        .fold(0.0, |acc, (&i, &w)| acc + w * src[i]);
                }
                return;
            }
            for j in 0..self.len_out {
                let row = &mut dst[j * inner..(j + 1) * inner];
                for t in self.start[j]..self.start[j + 1] {
                    let (i, w) = (self.index[t], self.weight[t]);
                    let from = &src[i * inner..(i + 1) * inner];
                    for (o, &v) in row.iter_mut().zip(from) {
                        *o += w * v;
                    }
                }
            }
        };
        if go_parallel(out.len()) && outer > 1 {
            out.par_chunks_mut(block_out)
                .zip(data.par_chunks(block_in))
                .for_each(|(dst, src)| run(src, dst));
        } else {
            for (dst, src) in out.chunks_mut(block_out).zip(data.chunks(block_in)) {
                run(src, dst);
            }
        }
        out
    }
}

/// Two taps around the clamped source coordinate (an edge position takes its value twice at
/// half weight).
fn linear_taps(axis: &AxisResize, mode: Coordinates) -> Taps {
    let mut taps = Taps::new(axis);
    let last = axis.len_in.saturating_sub(1);
    for j in 0..axis.len_out {
        let source = axis.source(mode, j as f32);
        let x = source.clamp(0.0, last as f32);
        let x1 = (x as usize).min(last);
        let x2 = (x1 + 1).min(last);
        let (mut d1, mut d2) = ((x - x1 as f32).abs(), (x - x2 as f32).abs());
        if x1 == x2 {
            (d1, d2) = (0.5, 0.5);
        }
        taps.push([(x1, d2), (x2, d1)], axis.outside(source));
    }
    taps
}

/// The cubic convolution coefficients of the four taps around a fractional position `s`.
fn cubic_coefficients(s: f32, a: f32) -> [f32; 4] {
    let s = s.abs();
    let far = |d: f32| ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a;
    let near = |d: f32| ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0;
    [far(s + 1.0), near(s), near(1.0 - s), far(2.0 - s)]
}

/// Four taps at floor(x) − 1 … floor(x) + 2, indices clamped to the edge, or dropped (and
/// the rest renormalized) with exclude_outside.
fn cubic_taps(axis: &AxisResize, mode: Coordinates, a: f32, exclude_outside: bool) -> Taps {
    let mut taps = Taps::new(axis);
    let len = axis.len_in as i64;
    for j in 0..axis.len_out {
        let source = axis.source(mode, j as f32);
        let base = source.floor();
        let mut coeffs = cubic_coefficients(source - base, a);
        let base = base as i64;
        if exclude_outside {
            let mut sum = 0.0;
            for (k, c) in coeffs.iter_mut().enumerate() {
                let i = base - 1 + k as i64;
                if i < 0 || i >= len {
                    *c = 0.0;
                }
                sum += *c;
            }
            if sum != 0.0 {
                for c in &mut coeffs {
                    *c /= sum;
                }
            }
        }
        let row = coeffs.iter().enumerate().map(|(k, &c)| {
            let i = (base - 1 + k as i64).clamp(0, len - 1) as usize;
            (i, c)
        });
        taps.push(row, axis.outside(source));
    }
    taps
}

/// Antialiased taps (opset 18): the filter stretched by 1/scale when downsampling, weights
/// normalized to sum 1; taps past the edge fold into the edge (or are dropped with
/// exclude_outside).
fn antialias_taps(axis: &AxisResize, mode: Coordinates, filter: Filter) -> Taps {
    let mut taps = Taps::new(axis);
    let (support_size, exclude_outside, a) = match filter {
        Filter::Linear => (2.0f32, false, 0.0),
        Filter::Cubic { a, exclude_outside } => (4.0, exclude_outside, a),
    };
    let kernel = |x: f32| -> f32 {
        let x = x.abs();
        match filter {
            Filter::Linear => (1.0 - x).max(0.0),
            Filter::Cubic { .. } => {
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
        }
    };
    let stretch = 1.0 / axis.scale;
    let support = if stretch >= 1.0 {
        support_size * 0.5 * stretch
    } else {
        support_size * 0.5
    };
    let window = support.ceil() as i64 * 2 + 1;
    let inv = if stretch >= 1.0 { 1.0 / stretch } else { 1.0 };
    let len = axis.len_in as i64;
    for j in 0..axis.len_out {
        let source = if stretch == 1.0 {
            j as f32
        } else {
            axis.source(mode, j as f32)
        };
        let center = 0.5 + source;
        let lo = (center - support + 0.5).floor() as i64;
        let hi = (center + support + 0.5).floor() as i64;
        let hi = lo + (hi - lo).clamp(0, window);
        let (lo, hi) = if exclude_outside {
            (lo.clamp(0, len), hi.clamp(0, len))
        } else {
            (lo, hi)
        };
        let weights: Vec<(i64, f32)> = (lo..hi)
            .map(|x| (x, kernel((x as f32 - center + 0.5) * inv)))
            .collect();
        let total: f32 = weights.iter().map(|(_, w)| w).sum();
        let norm = if total == 0.0 { 1.0 } else { 1.0 / total };
        let row = weights
            .into_iter()
            .map(|(x, w)| (x.clamp(0, len - 1) as usize, w * norm));
        taps.push(row, center - 0.5 < 0.0 || center - 0.5 > (len - 1) as f32);
    }
    taps
}
