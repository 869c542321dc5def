//! Test-only helpers shared by the quantizer modules' unit tests.

use std::path::PathBuf;

use ndarray::{ArrayD, Axis, IxDyn, Slice};
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

/// xorshift64*: deterministic test data without depending on rand's API.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// An array of `shape` uniform in [lo, hi).
    pub fn array(&mut self, shape: &[usize], lo: f32, hi: f32) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || self.uniform(lo, hi))
    }

    /// `n` values of ±1.
    pub fn signs(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| if self.next() >> 63 == 1 { 1.0 } else { -1.0 })
            .collect()
    }
}

/// The sample CNN (`sample_models/digits_cnn.onnx`) and the first `count` images of its
/// calibration set.
pub(crate) fn sample_cnn_with_images(count: usize) -> (crate::ir::Model, ArrayD<f32>) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_models");
    let model = crate::load::load_model(&root.join("digits_cnn.onnx")).unwrap();
    let calib = crate::load::read_arrays(&root.join("data/digits_calib_x.npy")).unwrap();
    let images = calib[0]
        .data
        .to_f32()
        .slice_axis(Axis(0), Slice::from(0..count))
        .to_owned();
    (model, images)
}
