//! Test-only helpers shared by the quantizer modules' unit tests.

use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

/// Roughly Gaussian weights (a sum of four uniforms, σ = scale/√3), seeded.
pub(crate) fn gaussian_like(shape: &[usize], seed: u64, scale: f32) -> ArrayD<f32> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * scale)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("the shape's product is the length")
}

/// Σ (w − ŵ)² in f64.
pub(crate) fn squared_error(w: &ArrayD<f32>, w_hat: &ArrayD<f32>) -> f64 {
    w.iter()
        .zip(w_hat)
        .map(|(&a, &b)| f64::from(a - b).powi(2))
        .sum()
}
