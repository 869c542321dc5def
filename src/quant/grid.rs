//! Integer grids and linear quantization parameters: the lecture's r = S·(q − Z).
//!
//! `S` and `Z` come from a real range (rmin, rmax) that is first widened to include 0, so that
//! 0 is represented exactly (zero padding, ReLU outputs). Quantization follows ONNX
//! `QuantizeLinear`: q = saturate(round_half_to_even(x / S) + Z).

use serde::{Deserialize, Serialize};

use crate::engine::ops::Quantizer;

/// A quantization error in parameters or settings (bad bit width, non-finite range, ...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct QuantError(pub String);

/// The integers a quantized value may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IntGrid {
    /// Bit width, 2 to 16.
    pub bits: u32,
    /// Signed (−2^(b−1) .. 2^(b−1)−1) or unsigned (0 .. 2^b−1).
    pub signed: bool,
    /// Restricted range: the signed grid drops its most negative value (−127..127 for 8 bits),
    /// so that it is symmetric around 0; the unsigned grid drops its largest.
    pub narrow: bool,
}

impl IntGrid {
    /// A grid of `bits` bits (2 to 16).
    pub fn new(bits: u32, signed: bool, narrow: bool) -> Result<Self, QuantError> {
        if !(2..=16).contains(&bits) {
            return Err(QuantError(format!(
                "bit width {bits} is out of range (2 to 16)"
            )));
        }
        Ok(IntGrid {
            bits,
            signed,
            narrow,
        })
    }

    /// Signed 8-bit, full range (−128..127).
    pub const INT8: IntGrid = IntGrid {
        bits: 8,
        signed: true,
        narrow: false,
    };

    /// Unsigned 8-bit (0..255).
    pub const UINT8: IntGrid = IntGrid {
        bits: 8,
        signed: false,
        narrow: false,
    };

    /// Smallest integer on the grid.
    pub fn qmin(&self) -> i32 {
        if self.signed {
            -(1 << (self.bits - 1)) + i32::from(self.narrow)
        } else {
            0
        }
    }

    /// Largest integer on the grid.
    pub fn qmax(&self) -> i32 {
        if self.signed {
            (1 << (self.bits - 1)) - 1
        } else {
            (1 << self.bits) - 1 - i32::from(self.narrow)
        }
    }

    /// Number of levels (qmax − qmin + 1).
    pub fn levels(&self) -> u32 {
        (self.qmax() - self.qmin() + 1) as u32
    }
}

/// Scale and zero point of a linear quantizer on a grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearParams {
    pub scale: f32,
    pub zero_point: i32,
    pub grid: IntGrid,
}

impl LinearParams {
    /// Parameters from a real range, as in the lecture. The range is widened to include 0.
    ///
    /// Asymmetric: S = (rmax − rmin)/(qmax − qmin), Z = round(qmin − rmin/S), clamped to the grid.
    /// Symmetric: S = max(|rmin|, |rmax|)/q⁺ with q⁺ = 2^(b−1) − 1, and Z = 0 on a signed grid
    /// (Z = 2^(b−1) on an unsigned one). An all-zero range gives S = 1 (any S represents it);
    /// so does a range so narrow that S would fall below the smallest normal f32 (weights of
    /// 1e-45 in a dead channel), whose values all round to Z.
    pub fn from_range(
        rmin: f32,
        rmax: f32,
        grid: IntGrid,
        symmetric: bool,
    ) -> Result<Self, QuantError> {
        if !rmin.is_finite() || !rmax.is_finite() {
            return Err(QuantError(format!("range [{rmin}, {rmax}] is not finite")));
        }
        if rmin > rmax {
            return Err(QuantError(format!(
                "range [{rmin}, {rmax}] has min above max"
            )));
        }
        let (rmin, rmax) = (rmin.min(0.0), rmax.max(0.0));
        let (qmin, qmax) = (grid.qmin(), grid.qmax());
        if symmetric {
            let half_levels = ((1i32 << (grid.bits - 1)) - 1) as f32;
            let zero_point = if grid.signed { 0 } else { 1 << (grid.bits - 1) };
            let abs_max = rmin.abs().max(rmax.abs());
            let scale = abs_max / half_levels;
            let scale = if scale >= f32::MIN_POSITIVE {
                scale
            } else {
                1.0
            };
            return Self::from_scale_zero(scale, zero_point, grid);
        }
        let scale = (rmax - rmin) / (qmax - qmin) as f32;
        if scale < f32::MIN_POSITIVE {
            return Self::from_scale_zero(1.0, qmin.max(0).min(qmax), grid);
        }
        let zero_point = (qmin as f32 - rmin / scale)
            .round_ties_even()
            .clamp(qmin as f32, qmax as f32) as i32;
        Self::from_scale_zero(scale, zero_point, grid)
    }

    /// Parameters from an explicit scale and zero point (checked).
    pub fn from_scale_zero(scale: f32, zero_point: i32, grid: IntGrid) -> Result<Self, QuantError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(QuantError(format!(
                "scale {scale} must be finite and positive"
            )));
        }
        if zero_point < grid.qmin() || zero_point > grid.qmax() {
            return Err(QuantError(format!(
                "zero point {zero_point} is outside the grid [{}, {}]",
                grid.qmin(),
                grid.qmax()
            )));
        }
        Ok(LinearParams {
            scale,
            zero_point,
            grid,
        })
    }

    /// The real values of the grid's ends: [S·(qmin − Z), S·(qmax − Z)].
    pub fn range(&self) -> (f32, f32) {
        (
            self.dequantize(self.grid.qmin()),
            self.dequantize(self.grid.qmax()),
        )
    }

    /// q = saturate(round_half_to_even(x / S) + Z), exactly as ONNX QuantizeLinear.
    #[inline]
    pub fn quantize(&self, x: f32) -> i32 {
        let q = (x / self.scale).round_ties_even() + self.zero_point as f32;
        // NaN saturates to the zero point's side like casting rules would; map it to Z.
        if q.is_nan() {
            return self.zero_point;
        }
        q.clamp(self.grid.qmin() as f32, self.grid.qmax() as f32) as i32
    }

    /// r = S·(q − Z).
    #[inline]
    pub fn dequantize(&self, q: i32) -> f32 {
        (q - self.zero_point) as f32 * self.scale
    }

    /// Quantize then dequantize.
    #[inline]
    pub fn fake_quantize(&self, x: f32) -> f32 {
        self.dequantize(self.quantize(x))
    }

    /// [`fake_quantize`](Self::fake_quantize) of every value, in place, with the same results
    /// in vectorized loops ([`Quantizer`]).
    pub fn fake_quantize_slice(&self, values: &mut [f32]) {
        let (qmin, qmax) = (self.grid.qmin() as f32, self.grid.qmax() as f32);
        match Quantizer::new(self.scale, self.zero_point as f32, qmin, qmax) {
            Some(quantizer) => quantizer.fake_quantize_in_place(values),
            None => values.iter_mut().for_each(|v| *v = self.fake_quantize(*v)),
        }
    }
}

/// Quantization parameters as a user gives them: a clip range, or a scale and zero point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum QParams {
    MinMax { min: f32, max: f32 },
    ScaleZero { scale: f32, zero_point: i32 },
}

impl QParams {
    /// The linear parameters on `grid` (`symmetric` applies to a min/max range).
    pub fn to_linear(self, grid: IntGrid, symmetric: bool) -> Result<LinearParams, QuantError> {
        match self {
            QParams::MinMax { min, max } => LinearParams::from_range(min, max, grid, symmetric),
            QParams::ScaleZero { scale, zero_point } => {
                LinearParams::from_scale_zero(scale, zero_point, grid)
            }
        }
    }

    /// The representable range of these parameters on `grid`.
    pub fn to_min_max(self, grid: IntGrid, symmetric: bool) -> Result<(f32, f32), QuantError> {
        Ok(self.to_linear(grid, symmetric)?.range())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_fake_quantization_equals_the_scalar_one_bit_for_bit() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (bits, signed) in [(8, false), (8, true), (4, false), (16, true), (16, false)] {
            let grid = IntGrid::new(bits, signed, false).unwrap();
            for zero in [grid.qmin(), 0.max(grid.qmin()), grid.qmax() / 3] {
                let scale = 0.0137 * (1 + next() % 7) as f32;
                let p = LinearParams::from_scale_zero(scale, zero, grid).unwrap();
                let mut values: Vec<f32> = (0..4096)
                    .map(|i| {
                        let k = (next() % 600) as f32 - 300.0;
                        match i % 4 {
                            0 => (k + 0.5) * scale, // ties (as exactly as f32 holds them)
                            1 => k * scale,
                            2 => (next() % 1_000_000) as f32 * 1e-3 - 500.0,
                            _ => f32::from_bits(next() as u32),
                        }
                    })
                    .collect();
                values.extend([
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    f32::MAX,
                    -f32::MAX,
                    0.0,
                    -0.0,
                    1e30,
                    -1e-30,
                ]);
                let mut fast = values.clone();
                p.fake_quantize_slice(&mut fast);
                for (x, f) in values.iter().zip(&fast) {
                    let want = p.fake_quantize(*x);
                    assert_eq!(
                        f.to_bits(),
                        want.to_bits(),
                        "{bits}-bit signed {signed}, Z {zero}: x {x} gives {f}, scalar {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn grid_ends() {
        assert_eq!((IntGrid::INT8.qmin(), IntGrid::INT8.qmax()), (-128, 127));
        assert_eq!((IntGrid::UINT8.qmin(), IntGrid::UINT8.qmax()), (0, 255));
        let narrow = IntGrid::new(8, true, true).unwrap();
        assert_eq!((narrow.qmin(), narrow.qmax()), (-127, 127));
        let int4 = IntGrid::new(4, true, false).unwrap();
        assert_eq!((int4.qmin(), int4.qmax(), int4.levels()), (-8, 7, 16));
        assert!(IntGrid::new(1, true, false).is_err());
        assert!(IntGrid::new(17, false, false).is_err());
    }

    #[test]
    fn asymmetric_scale_and_zero_point_follow_the_lecture() {
        // Lecture example: r in [-1.08, 2.12] on a 2-bit signed grid [-2, 1]:
        // S = 3.2 / 3, Z = round(-2 - (-1.08)/S) = round(-0.9875) = -1.
        let grid = IntGrid::new(2, true, false).unwrap();
        let p = LinearParams::from_range(-1.08, 2.12, grid, false).unwrap();
        assert!((p.scale - 3.2 / 3.0).abs() < 1e-6);
        assert_eq!(p.zero_point, -1);
        // 0 is exact, and the ends round-trip within half a step.
        assert_eq!(p.fake_quantize(0.0), 0.0);
        assert!((p.fake_quantize(2.12) - 2.12).abs() <= p.scale / 2.0 + 1e-6);
    }

    #[test]
    fn range_is_widened_to_include_zero() {
        let p = LinearParams::from_range(0.5, 2.0, IntGrid::UINT8, false).unwrap();
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 2.0 / 255.0).abs() < 1e-9);
        let q = LinearParams::from_range(-3.0, -1.0, IntGrid::UINT8, false).unwrap();
        assert_eq!(q.zero_point, 255);
        assert_eq!(q.fake_quantize(0.0), 0.0);
    }

    #[test]
    fn ranges_too_narrow_for_a_normal_scale_act_as_zero() {
        let int8 = IntGrid::new(8, true, true).unwrap();
        let uint8 = IntGrid::new(8, false, false).unwrap();
        // A dead channel of a real model: its largest |w| is the smallest subnormal.
        let tiny = 1.4e-45f32;
        let p = LinearParams::from_range(-tiny, tiny, int8, true).unwrap();
        assert_eq!((p.scale, p.zero_point), (1.0, 0));
        assert_eq!(p.quantize(tiny), 0);
        let p = LinearParams::from_range(0.0, 1e-40, uint8, false).unwrap();
        assert_eq!((p.scale, p.zero_point), (1.0, 0));
        // The smallest range with a normal scale keeps its own scale.
        let p = LinearParams::from_range(0.0, 127.0 * f32::MIN_POSITIVE, int8, true).unwrap();
        assert_eq!(p.scale, f32::MIN_POSITIVE);
    }

    #[test]
    fn symmetric_has_zero_point_zero() {
        let p = LinearParams::from_range(-0.5, 2.54, IntGrid::INT8, true).unwrap();
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 0.02).abs() < 1e-7);
        assert_eq!(p.quantize(2.54), 127);
        assert_eq!(p.quantize(-2.56), -128);
        assert_eq!(p.quantize(-100.0), -128);
        let u = LinearParams::from_range(-1.0, 1.0, IntGrid::UINT8, true).unwrap();
        assert_eq!(u.zero_point, 128);
    }

    #[test]
    fn rounding_is_half_to_even_and_saturates_like_quantize_linear() {
        let p = LinearParams::from_scale_zero(1.0, 0, IntGrid::INT8).unwrap();
        assert_eq!(
            [0.5, 1.5, 2.5, -0.5, -1.5, 126.5, 300.0, -300.0].map(|x| p.quantize(x)),
            [0, 2, 2, 0, -2, 126, 127, -128]
        );
        assert_eq!(p.quantize(f32::NAN), 0);
    }

    #[test]
    fn round_trip_error_is_at_most_half_a_step_inside_the_range() {
        for bits in 2..=16 {
            let grid = IntGrid::new(bits, true, false).unwrap();
            let p = LinearParams::from_range(-1.3, 0.7, grid, false).unwrap();
            let (lo, hi) = p.range();
            for i in 0..=1000 {
                let x = lo + (hi - lo) * i as f32 / 1000.0;
                let err = (p.fake_quantize(x) - x).abs();
                assert!(err <= p.scale * 0.5 + 1e-6, "bits {bits}, x {x}, err {err}");
            }
        }
    }

    #[test]
    fn qparams_convert_both_ways() {
        let grid = IntGrid::UINT8;
        let from_range = QParams::MinMax {
            min: -1.0,
            max: 3.0,
        }
        .to_linear(grid, false)
        .unwrap();
        let back = QParams::ScaleZero {
            scale: from_range.scale,
            zero_point: from_range.zero_point,
        };
        let (lo, hi) = back.to_min_max(grid, false).unwrap();
        assert!((lo + 1.0).abs() < from_range.scale && (hi - 3.0).abs() < from_range.scale);
        assert_eq!(back.to_linear(grid, false).unwrap(), from_range);
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(LinearParams::from_range(f32::NAN, 1.0, IntGrid::INT8, false).is_err());
        assert!(LinearParams::from_range(2.0, 1.0, IntGrid::INT8, false).is_err());
        assert!(LinearParams::from_scale_zero(0.0, 0, IntGrid::INT8).is_err());
        assert!(LinearParams::from_scale_zero(1.0, 300, IntGrid::INT8).is_err());
        let zero = LinearParams::from_range(0.0, 0.0, IntGrid::INT8, false).unwrap();
        assert_eq!(zero.fake_quantize(0.0), 0.0);
    }
}
