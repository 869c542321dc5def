//! Unit tests of the histogram estimate: exactness on few values, the computed linear steps
//! against the tabulated staircase, the fine-grid shortcut, quantized histograms and
//! non-finite values.

use super::linear::{FineGrid, LinearSteps};
use super::pieces::{Steps, Tabulated};
use super::*;
use crate::metrics::MetricsError;
use crate::quant::{IntGrid, LinearParams, Staircase};

fn exact_mse(values: &[f32], q: impl Fn(f32) -> f32) -> f64 {
    values
        .iter()
        .map(|&x| (f64::from(x) - f64::from(q(x))).powi(2))
        .sum::<f64>()
        / values.len() as f64
}

#[test]
fn few_values_are_exact() {
    // Each value alone in its bin: no modelling at all.
    let values = [-1.3f32, -0.2, 0.05, 0.4, 0.41, 2.0];
    let h = FineHistogram::from_slice(&values).unwrap();
    let p =
        LinearParams::from_range(-1.0, 1.0, IntGrid::new(3, true, false).unwrap(), false).unwrap();
    let est = h.estimate_linear(&p);
    let exact = exact_mse(&values, |x| p.fake_quantize(x));
    assert!(
        (est.mse - exact).abs() < 1e-9 * exact,
        "{} vs {exact}",
        est.mse
    );
    let sp = values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / 6.0;
    assert!((est.signal_power - sp).abs() < 1e-9);
}

#[test]
fn computed_linear_steps_agree_with_the_tabulated_staircase() {
    let values: Vec<f32> = (0..20_000)
        .map(|i| ((i as f32 * 0.7311).sin() * 3.0).powi(3) * 0.01)
        .collect();
    let h = FineHistogram::from_slice(&values).unwrap();
    let (min, max) = h.range();
    for bits in [2, 5, 8, 11, 16] {
        for (signed, symmetric, clip) in
            [(true, false, 1.0), (false, true, 0.3), (true, true, 0.05)]
        {
            let grid = IntGrid::new(bits, signed, false).unwrap();
            let p = LinearParams::from_range(min * clip, max * clip, grid, symmetric).unwrap();
            // The tabulated whole steps include the f32 rounding of levels; the computed ones
            // do not (a relative 1e-6 at 16 bits). Where bins are wider than a step, the
            // computed estimate counts S²/12 per value inside the grid instead of
            // integrating each bin's uniform model step by step: the two differ only by the
            // partial end pieces of those bins, which average out.
            let computed = h.estimate_linear(&p).mse;
            let table = h.estimate(&Staircase::linear(&p)).mse;
            let fine = h.width >= f64::from(p.scale);
            let tolerance = if fine { 2e-3 } else { 1e-5 };
            assert!(
                (computed - table).abs() <= tolerance * table,
                "{bits} bits, fine grid {fine}: {computed} vs {table}"
            );
            let steps = LinearSteps::new(&p, min, max);
            let staircase = Staircase::linear_between(&p, min, max);
            let s = Tabulated::new(&staircase);
            for &x in values.iter().step_by(97) {
                let x = f64::from(x);
                assert_eq!(steps.piece_of(x, 0), s.piece_of(x, 0));
                assert_eq!(steps.piece(x), s.piece_of(x, 0));
            }
        }
    }
}

#[test]
fn fine_grid_covers_the_unsaturated_bins_of_a_grid_finer_than_the_bins() {
    // 2048 values on 0.5 + [0, 2047]: one per bin, bins of width 1 from 0.5.
    let values: Vec<f32> = (0..2048).map(|i| i as f32 + 0.5).collect();
    let h = FineHistogram::from_slice(&values).unwrap();
    assert_eq!((h.bin_count(), h.width), (2048, 2047.0 / 2048.0));
    let grid = IntGrid::new(16, false, false).unwrap();
    // Grid [0, 1000] at 16 bits: steps of 1000/65535, thresholds from S/2 to 1000 − S/2.
    let p = LinearParams::from_range(0.0, 1000.0, grid, false).unwrap();
    let steps = LinearSteps::new(&p, h.min, h.max);
    let fine = FineGrid::of(&steps, h.lo, h.width, h.bin_count()).unwrap();
    // The lowest reachable level is q = 33 (0.5/S = 32.8), so the steps start at the
    // threshold 33.5·S = 0.511 and end at 1000 − S/2. Bins wholly inside: 1..999 (bin 0
    // starts at 0.5, bin 999 ends at 1000.01); less one bin of margin at each end.
    assert_eq!(fine.bins, 2..998);
    let s = 1000.0f64 / 65535.0;
    assert!((fine.step_error - s * s / 12.0).abs() < 1e-9 * fine.step_error);
    // At 8 bits the bins are finer than the steps: no shortcut.
    let coarse = LinearParams::from_range(0.0, 1000.0, IntGrid::UINT8, false).unwrap();
    let steps = LinearSteps::new(&coarse, h.min, h.max);
    assert_eq!(FineGrid::of(&steps, h.lo, h.width, h.bin_count()), None);
}

#[test]
fn quantized_histogram_keeps_the_mass_and_the_estimate_matches_the_closed_form() {
    // Uniform values on [−1, 1] under binary ±0.5: E(x − 0.5·sign x)² = ∫₀¹ (x − ½)² dx
    // = 1/12.
    let values: Vec<f32> = (0..20_000)
        .map(|i| -1.0 + (i as f32 + 0.5) / 10_000.0)
        .collect();
    let fine = FineHistogram::from_slice(&values).unwrap();
    let binary = Quantizer::Binary { alpha: 0.5 };
    let est = fine.estimate_quantizer(&binary).unwrap();
    assert!((est.mse - 1.0 / 12.0).abs() < 1e-4, "{}", est.mse);
    let moved = fine.quantized(&binary);
    assert_eq!(moved, vec![(-0.5, 10_000), (0.5, 10_000)]);
    // Linear quantizers go the computed way; a quantizer without a staircase has no
    // estimate.
    let p =
        LinearParams::from_range(-1.0, 1.0, IntGrid::new(3, true, false).unwrap(), false).unwrap();
    assert_eq!(
        fine.estimate_quantizer(&Quantizer::Linear(p)),
        Some(fine.estimate_linear(&p))
    );
    let bad = Quantizer::Ternary {
        delta: f32::NAN,
        wp: 1.0,
        wn: 1.0,
    };
    assert_eq!(fine.estimate_quantizer(&bad), None);
}

#[test]
fn constant_and_non_finite_values() {
    let h = FineHistogram::from_slice(&[0.3, 0.3, f32::NAN, f32::INFINITY]).unwrap();
    assert_eq!((h.count(), h.non_finite(), h.bin_count()), (2, 2, 1));
    let e = h.estimate_binary(0.5).unwrap();
    assert!((e.mse - 0.04).abs() < 1e-6);
    assert_eq!(
        FineHistogram::from_slice(&[f32::NAN]),
        Err(MetricsError::Empty)
    );
    let perfect = h.estimate_codebook(&[0.3]).unwrap();
    assert_eq!((perfect.mse, perfect.sqnr_db), (0.0, f64::INFINITY));
}
