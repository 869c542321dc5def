//! Real multipliers in Q31 fixed point and the gemmlowp rounding primitives that apply them.

/// Writes a real multiplier `m` as `(m0, n)` with m = m0 · 2^−31 · 2^−n and |m0| ∈ [2^30, 2^31)
/// (a Q31 number in [0.5, 1)); `n` is the right shift (negative for m ≥ 1).
///
/// Powers of two are exact; otherwise the relative error is at most 2^−31. Zero, non-finite
/// values and multipliers so small that every i32 would round to 0 (n > 62) give `(0, 0)`.
pub fn quantize_multiplier(m: f64) -> (i32, i32) {
    if m == 0.0 || !m.is_finite() {
        return (0, 0);
    }
    // m = q · 2^e with |q| ∈ [0.5, 1).
    let (q, mut e) = libm::frexp(m);
    let mut q_fixed = (q * (1i64 << 31) as f64).round() as i64;
    if q_fixed.abs() == 1i64 << 31 {
        q_fixed /= 2;
        e += 1;
    }
    let shift = -e;
    if shift > 62 {
        return (0, 0);
    }
    (q_fixed as i32, shift)
}

/// gemmlowp `SaturatingRoundingDoublingHighMul`: a·b / 2^31 rounded to nearest with ties
/// toward +∞ (the nudge is 2^30 for a non-negative product, 1 − 2^30 for a negative one, and
/// the division truncates toward zero), saturating the single overflow case a = b = i32::MIN to i32::MAX.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    let nudge = if ab >= 0 {
        1i64 << 30
    } else {
        1 - (1i64 << 30)
    };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp `RoundingDivideByPOT`: x / 2^exponent rounded to nearest, ties away from zero.
/// `exponent` must be in 0..=62.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    debug_assert!((0..=62).contains(&exponent));
    let x = i64::from(x);
    let mask = (1i64 << exponent) - 1;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i64::from(x < 0);
    ((x >> exponent) + i64::from(remainder > threshold)) as i32
}

/// A real multiplier in fixed point: value = m0 · 2^−31 · 2^−shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedMultiplier {
    pub m0: i32,
    pub shift: i32,
}

impl FixedMultiplier {
    /// The fixed-point form of `m` (see [`quantize_multiplier`]).
    pub fn from_real(m: f64) -> Self {
        let (m0, shift) = quantize_multiplier(m);
        FixedMultiplier { m0, shift }
    }

    /// The real value represented.
    pub fn to_real(self) -> f64 {
        f64::from(self.m0) * 2f64.powi(-31 - self.shift)
    }

    /// round(x · multiplier) with gemmlowp semantics (TFLite `MultiplyByQuantizedMultiplier`).
    #[inline]
    pub fn apply(self, x: i32) -> i32 {
        let x = if self.shift < 0 {
            let left = (-self.shift).min(32);
            (i64::from(x) << left).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
        } else {
            x
        };
        let high = saturating_rounding_doubling_high_mul(x, self.m0);
        if self.shift > 0 {
            rounding_divide_by_pot(high, self.shift)
        } else {
            high
        }
    }
}
