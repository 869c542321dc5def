//! Integer-arithmetic-only inference (Jacob et al. 2018) for Conv, Gemm and MatMul, the
//! reference the fake-quantized float path is checked against.
//!
//! # The arithmetic
//!
//! With r = S·(q − Z) for input x, weight w and output y, one output of a layer is
//!
//! ```text
//! S_y (q_y − Z_y) = Σ_k S_w q_w,k · S_x (q_x,k − Z_x) + b
//! q_y = Z_y + M · (Σ_k q_w,k q_x,k − Z_x Σ_k q_w,k + q_b),   M = S_w S_x / S_y
//! ```
//!
//! Weights are symmetric (Z_w = 0), so of the four zero-point terms of the paper only
//! `Z_x · Σ_k q_w,k` remains; it depends on the weights alone and is precomputed per output
//! channel. Padding taps read the input code Z_x (the code of the real value 0), so the
//! correction is the same for every output position. The bias is stored as i32 at scale
//! S_w·S_x with zero point 0: q_b = round_half_to_even(b / (S_w S_x)).
//!
//! Products of ≤ 8-bit codes fit in 16 bits, but their sums do not: everything is accumulated
//! in i32. [`IntConv::new`] and [`IntLinear::new`] bound the accumulator over all inputs on the
//! grid and refuse layers that could overflow i32 (see [`IntConv::accumulator_bound`]).
//!
//! # Requantization (gemmlowp / TFLite semantics)
//!
//! The real multiplier M (one per output channel with per-channel weights) is written as
//! M = M0 · 2^−31 · 2^−n with M0 ∈ [2^30, 2^31) — a Q31 fixed-point number in [0.5, 1) — by
//! [`quantize_multiplier`]. An accumulator `acc` is then scaled without floating point:
//!
//! 1. if n < 0 (M ≥ 1), `acc` is first shifted left by −n, saturating to i32 (as in TFLite,
//!    so M ≥ 1 saturates when acc·2^−n leaves the i32 range even if acc·M would not);
//! 2. [`saturating_rounding_doubling_high_mul`]`(acc, M0)` = the high 32 bits of 2·acc·M0,
//!    i.e. acc·M0 / 2^31 rounded to nearest, computed in i64: a nudge of 2^30 (for a
//!    non-negative product) or 1 − 2^30 (negative) is added and the division truncates toward
//!    zero, so ties round toward +∞ (1.5 → 2, −1.5 → −1). The single overflowing case,
//!    (−2^31)·(−2^31), saturates to i32::MAX;
//! 3. if n > 0, [`rounding_divide_by_pot`]`(·, n)` divides by 2^n rounding to nearest, ties
//!    away from zero (the remainder is compared against half the divisor, one more for
//!    negative values).
//!
//! Finally Z_y is added and the result clamped to the output grid; a fused ReLU raises the lower
//! clamp bound to Z_y (the code of 0). The two roundings compound (double rounding): the
//! result equals round(M·acc) except when M·acc lies within about 2^−(n+1) of a tie, and is
//! always within 1 LSB of it — and of the fake-quantized float reference
//! ([`IntConv::fake_quant_reference`]), which rounds the float result half to even once.

//!
//! # Modules
//!
//! `fixed_point` holds the requantization arithmetic, `codes` the code tensors and quantized
//! weights, `layer` what Conv and Gemm share, `conv` and `linear` the two layers, `compare`
//! the integer layers of a fake-quantized model run and counted against the simulation,
//! `explain` one output element's arithmetic step by step.

mod codes;
pub mod compare;
mod conv;
pub mod explain;
mod fixed_point;
mod layer;
mod linear;
#[cfg(test)]
mod tests;

pub use codes::{QuantizedWeights, dequantize_tensor, quantize_bias, quantize_tensor};
pub use conv::IntConv;
pub use fixed_point::{
    FixedMultiplier, quantize_multiplier, rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
};
pub use layer::LayerGrids;
pub use linear::IntLinear;
