//! Unit tests of the linear quantizer: round trips per bit width and axis, the bulk paths
//! against the scalar reference, per-channel parameters, stochastic rounding, non-finite values
//! and bad settings.

use super::*;
use ndarray::{Array, Axis, IxDyn, Slice};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

fn random_tensor(shape: &[usize], seed: u64, lo: f32, hi: f32) -> ArrayD<f32> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| lo + (hi - lo) * rng.random::<f32>())
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
}

fn config(bits: u32, granularity: Granularity) -> LinearConfig {
    LinearConfig {
        grid: IntGrid::new(bits, true, false).unwrap(),
        symmetric: false,
        granularity,
        rounding: Rounding::NearestEven,
    }
}

fn mse(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn round_trip_error_is_at_most_half_a_step_for_every_width_and_axis() {
    let x = random_tensor(&[6, 5, 7], 1, -3.0, 2.0);
    for bits in 2..=16 {
        for granularity in [
            Granularity::PerTensor,
            Granularity::PerChannel { axis: 0 },
            Granularity::PerChannel { axis: 1 },
            Granularity::PerChannel { axis: 2 },
        ] {
            let cfg = config(bits, granularity);
            let p = minmax_params(x.view(), &cfg).unwrap();
            let y = fake_quantize(x.view(), &p, granularity, Rounding::NearestEven).unwrap();
            let layout = granularity.layout(x.shape()).unwrap();
            let xs = x.as_standard_layout();
            for (i, (&a, &b)) in xs.iter().zip(y.iter()).enumerate() {
                let s = p[layout.channel_of(i)].scale;
                assert!(
                    (a - b).abs() <= s * 0.5 + a.abs() * 2.0 * f32::EPSILON,
                    "bits {bits} {granularity:?}: {a} -> {b}, S {s}"
                );
            }
        }
    }
}

#[test]
fn bulk_paths_match_the_scalar_reference_bit_for_bit() {
    // Ties, out-of-range values and non-finite values included; big enough for several chunks.
    let mut x = random_tensor(&[3, 40_000], 2, -5.0, 5.0);
    let p = LinearParams::from_scale_zero(0.25, -3, IntGrid::INT8).unwrap();
    for (i, v) in x.iter_mut().enumerate().take(64) {
        *v = (i as f32 - 32.0) * 0.125; // multiples of S/2: exact ties
    }
    x[[0, 100]] = f32::NAN;
    x[[1, 5]] = f32::INFINITY;
    x[[2, 7]] = f32::NEG_INFINITY;
    x[[2, 8]] = 1e30;
    let g = Granularity::PerTensor;
    let q = quantize(x.view(), &[p], g, Rounding::NearestEven).unwrap();
    let y = fake_quantize(x.view(), &[p], g, Rounding::NearestEven).unwrap();
    let d = dequantize(q.view(), &[p], g).unwrap();
    for ((&v, &qv), (&yv, &dv)) in x.iter().zip(&q).zip(y.iter().zip(&d)) {
        assert_eq!(qv, p.quantize(v), "x = {v}");
        assert_eq!(yv.to_bits(), p.fake_quantize(v).to_bits(), "x = {v}");
        assert_eq!(dv, yv);
    }
    assert_eq!(q[[1, 5]], 127);
    assert_eq!(q[[2, 7]], -128);
    assert_eq!(q[[0, 100]], -3);
}

#[test]
fn per_channel_params_equal_per_tensor_params_of_each_slice() {
    let x = random_tensor(&[4, 3, 5], 3, -1.0, 4.0);
    for axis in 0..3 {
        let g = Granularity::PerChannel { axis };
        let pc = minmax_params(x.view(), &config(5, g)).unwrap();
        assert_eq!(pc.len(), x.shape()[axis]);
        for (c, p) in pc.iter().enumerate() {
            let slice = x.slice_axis(Axis(axis), Slice::from(c..c + 1));
            let pt = minmax_params(slice.view(), &config(5, Granularity::PerTensor)).unwrap();
            assert_eq!(pt, vec![*p]);
            // ... and quantize the slice identically.
            let whole = fake_quantize(x.view(), &pc, g, Rounding::NearestEven).unwrap();
            let part =
                fake_quantize(slice, &pt, Granularity::PerTensor, Rounding::NearestEven).unwrap();
            assert_eq!(whole.slice_axis(Axis(axis), Slice::from(c..c + 1)), part);
        }
    }
}

#[test]
fn last_axis_channels_stay_aligned_across_chunks() {
    // 3000·7 values span two work chunks, and 2^14 is not a multiple of 7.
    let x = random_tensor(&[3000, 7], 10, -3.0, 3.0);
    let g = Granularity::PerChannel { axis: 1 };
    let mut ranges = minmax_ranges(x.view(), g).unwrap();
    for (c, r) in ranges.iter_mut().enumerate() {
        *r = (r.0 / (c + 1) as f32, r.1 / (c + 1) as f32); // distinct scales per channel
    }
    let p = params(x.view(), &config(6, g), &ranges).unwrap();
    let y = fake_quantize(x.view(), &p, g, Rounding::NearestEven).unwrap();
    for (index, &v) in x.indexed_iter() {
        assert_eq!(y[&index], p[index[1]].fake_quantize(v), "{index:?}");
    }
    let q = quantize(x.view(), &p, g, Rounding::Stochastic { seed: 4 }).unwrap();
    for (index, &v) in x.indexed_iter() {
        let p = p[index[1]];
        assert!((p.dequantize(q[&index]) - p.fake_quantize(v)).abs() <= p.scale * 1.0001);
    }
}

#[test]
fn non_contiguous_views_are_handled() {
    let x = random_tensor(&[5, 6], 4, -2.0, 2.0);
    let t = x.t();
    let g = Granularity::PerChannel { axis: 0 };
    let p = minmax_params(t.view(), &config(4, g)).unwrap();
    let y = fake_quantize(t.view(), &p, g, Rounding::NearestEven).unwrap();
    assert_eq!(y.shape(), &[6, 5]);
    for (index, &v) in t.indexed_iter() {
        assert_eq!(y[&index], p[index[0]].fake_quantize(v));
    }
}

#[test]
fn per_channel_beats_per_tensor_when_channel_ranges_differ() {
    // Channel ranges differ 100×: per-tensor wastes the small channels' resolution.
    let mut x = random_tensor(&[8, 64], 5, -1.0, 1.0);
    for (c, mut row) in x.axis_iter_mut(Axis(0)).enumerate() {
        row *= if c % 2 == 0 { 100.0 } else { 1.0 };
    }
    let err = |g| {
        let p = minmax_params(x.view(), &config(8, g)).unwrap();
        mse(
            &x,
            &fake_quantize(x.view(), &p, g, Rounding::NearestEven).unwrap(),
        )
    };
    let err_base = err(Granularity::PerTensor);
    let err_new = err(Granularity::PerChannel { axis: 0 });
    assert!(err_new < err_base, "{err_new} vs {err_base}");
    // On the small channels alone the gain is about (100×)² in squared error.
    let small = |g| {
        let p = minmax_params(x.view(), &config(8, g)).unwrap();
        let y = fake_quantize(x.view(), &p, g, Rounding::NearestEven).unwrap();
        let pick = |a: &ArrayD<f32>| a.slice_axis(Axis(0), Slice::new(1, None, 2)).to_owned();
        mse(&pick(&x), &pick(&y))
    };
    assert!(small(Granularity::PerChannel { axis: 0 }) * 1000.0 < small(Granularity::PerTensor));
}

#[test]
fn stochastic_rounding_is_unbiased_and_reproducible() {
    let x = random_tensor(&[50, 40], 6, -1.0, 1.0);
    let g = Granularity::PerChannel { axis: 1 };
    let p = minmax_params(x.view(), &config(3, g)).unwrap();
    let seeds = 400;
    let mut sum = ArrayD::<f64>::zeros(x.raw_dim());
    for seed in 0..seeds {
        let y = fake_quantize(x.view(), &p, g, Rounding::Stochastic { seed }).unwrap();
        sum.zip_mut_with(&y, |s, &v| *s += v as f64);
    }
    let scale = p.iter().map(|p| p.scale).fold(0.0, f32::max) as f64;
    let (mut total_bias, mut inside) = (0.0, 0);
    for (i, (&s, &v)) in sum.iter().zip(&x).enumerate() {
        // Unbiased inside the grid's range; values the rounded zero point leaves outside
        // it (by < S/2) saturate.
        let (lo, hi) = p[i % 40].range();
        if v < lo || v > hi {
            continue;
        }
        inside += 1;
        let bias = s / seeds as f64 - v as f64;
        // One draw has standard deviation ≤ S/2; the mean of 400 is ≤ S/40; allow 5σ.
        assert!(bias.abs() < scale / 8.0, "bias {bias}");
        total_bias += bias;
    }
    assert!(inside > x.len() * 9 / 10);
    assert!((total_bias / inside as f64).abs() < scale / 200.0);
    // Every result is one of the two neighbouring grid points.
    let y = fake_quantize(x.view(), &p, g, Rounding::Stochastic { seed: 9 }).unwrap();
    for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
        let s = p[i % 40].scale;
        assert!((a - b).abs() < s * (1.0 + 1e-5));
    }
    let again = fake_quantize(x.view(), &p, g, Rounding::Stochastic { seed: 9 }).unwrap();
    assert_eq!(y, again);
    let other = fake_quantize(x.view(), &p, g, Rounding::Stochastic { seed: 10 }).unwrap();
    assert_ne!(y, other);
    // Integers and fake quantization agree for the same seed.
    let q = quantize(x.view(), &p, g, Rounding::Stochastic { seed: 9 }).unwrap();
    assert_eq!(dequantize(q.view(), &p, g).unwrap(), y);
}

#[test]
fn stochastic_rounding_keeps_grid_points_and_is_reproducible_across_chunks() {
    let p = LinearParams::from_scale_zero(0.5, 0, IntGrid::INT8).unwrap();
    let on_grid = Array::from_shape_fn(IxDyn(&[100_000]), |i| (i[0] % 200) as f32 * 0.5 - 50.0);
    let y = fake_quantize(
        on_grid.view(),
        &[p],
        Granularity::PerTensor,
        Rounding::Stochastic { seed: 1 },
    )
    .unwrap();
    let expected = on_grid.mapv(|v| p.fake_quantize(v));
    assert_eq!(y, expected);
    let big = random_tensor(&[70_000], 8, -10.0, 10.0);
    let a = fake_quantize(
        big.view(),
        &[p],
        Granularity::PerTensor,
        Rounding::Stochastic { seed: 3 },
    )
    .unwrap();
    let b = fake_quantize(
        big.view(),
        &[p],
        Granularity::PerTensor,
        Rounding::Stochastic { seed: 3 },
    )
    .unwrap();
    assert_eq!(a, b);
}

#[test]
fn non_finite_values_are_ignored_in_ranges_and_saturated() {
    let x = ArrayD::from_shape_vec(
        IxDyn(&[2, 3]),
        vec![1.0, f32::NAN, -2.0, f32::INFINITY, 0.5, 3.0],
    )
    .unwrap();
    let g = Granularity::PerChannel { axis: 0 };
    assert_eq!(
        minmax_ranges(x.view(), g).unwrap(),
        vec![(-2.0, 1.0), (0.5, 3.0)]
    );
    let p = minmax_params(x.view(), &config(8, g)).unwrap();
    let q = quantize(x.view(), &p, g, Rounding::NearestEven).unwrap();
    assert_eq!(q[[0, 1]], p[0].zero_point);
    assert_eq!(q[[1, 0]], 127);
    let err = check_finite(x.view()).unwrap_err();
    assert!(err.0.contains("1 NaN and 1 infinite"), "{err}");
    assert!(err.0.contains("[0, 1]"), "{err}");
    assert!(check_finite(x.slice_axis(Axis(1), Slice::from(2..3))).is_ok());
}

#[test]
fn bad_settings_are_errors() {
    let x = random_tensor(&[3, 4], 7, -1.0, 1.0);
    let axis9 = Granularity::PerChannel { axis: 2 };
    assert!(
        minmax_ranges(x.view(), axis9)
            .unwrap_err()
            .0
            .contains("axis 2")
    );
    let empty = ArrayD::<f32>::zeros(IxDyn(&[0, 4]));
    assert!(
        minmax_ranges(empty.view(), Granularity::PerTensor)
            .unwrap_err()
            .0
            .contains("empty")
    );
    let p = minmax_params(x.view(), &config(8, Granularity::PerTensor)).unwrap();
    assert!(
        fake_quantize(
            empty.view(),
            &p,
            Granularity::PerTensor,
            Rounding::NearestEven
        )
        .is_err()
    );
    // Wrong number of ranges / params.
    let g = Granularity::PerChannel { axis: 1 };
    assert!(params(x.view(), &config(8, g), &[(0.0, 1.0)]).is_err());
    assert!(quantize(x.view(), &p, g, Rounding::NearestEven).is_err());
    assert!(
        params(
            x.view(),
            &config(8, Granularity::PerTensor),
            &[(f32::NAN, 1.0)]
        )
        .is_err()
    );
    // A channel with no finite value has no range; the message says what it holds.
    let mut bad = x.clone();
    bad.index_axis_mut(Axis(1), 2).fill(f32::NAN);
    bad[[1, 2]] = f32::NEG_INFINITY;
    let err = minmax_ranges(bad.view(), g).unwrap_err();
    assert!(
        err.0.contains("channel 2 (axis 1)") && err.0.contains("2 NaN, 1 infinite"),
        "{err}"
    );
    assert!(IntGrid::new(17, true, false).is_err());
}

/// Timing check, run by hand in release:
/// `cargo test --release --no-default-features --lib quant::linear::tests::speed -- --ignored --nocapture`.
mod speed {
    use super::*;
    use crate::quant::kmeans::{KMeansConfig, kmeans};
    use ndarray::IxDyn;
    use std::time::Instant;

    #[test]
    #[ignore = "timing; run in release"]
    fn fake_quantize_and_kmeans_speed() {
        let shape = [4096, 6144];
        let x = ArrayD::from_shape_fn(IxDyn(&shape), |i| {
            ((i[0] * 7919 + i[1] * 104_729) % 10_007) as f32 / 5000.0 - 1.0
        });
        let grid = IntGrid::INT8;
        for granularity in [
            Granularity::PerTensor,
            Granularity::PerChannel { axis: 0 },
            Granularity::PerChannel { axis: 1 },
        ] {
            let cfg = LinearConfig {
                grid,
                symmetric: false,
                granularity,
                rounding: Rounding::NearestEven,
            };
            let t = Instant::now();
            let p = minmax_params(x.view(), &cfg).unwrap();
            let ranges = t.elapsed();
            for rounding in [Rounding::NearestEven, Rounding::Stochastic { seed: 1 }] {
                let t = Instant::now();
                let y = fake_quantize(x.view(), &p, granularity, rounding).unwrap();
                eprintln!(
                    "{granularity:?} {rounding:?}: ranges {ranges:?}, fake_quantize {:?} ({} values, {:.2} ns/value)",
                    t.elapsed(),
                    y.len(),
                    t.elapsed().as_nanos() as f64 / y.len() as f64
                );
            }
        }
        let w = x
            .slice_axis(Axis(0), ndarray::Slice::from(0..512))
            .to_owned();
        for granularity in [Granularity::PerTensor, Granularity::PerChannel { axis: 0 }] {
            let t = Instant::now();
            let q = kmeans(w.view(), &KMeansConfig::new(4, granularity)).unwrap();
            eprintln!(
                "k-means 4 bits {granularity:?} on {} values: {:?}, max iterations {:?}",
                w.len(),
                t.elapsed(),
                q.iterations.iter().max()
            );
        }
    }
}
