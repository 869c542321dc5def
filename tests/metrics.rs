//! Error metrics and the histogram estimate on the sample models' weights and on closed forms.
//!
//! The requirement: on every float weight tensor of every sample model, the histogram estimate
//! of the linear quantization MSE is within 5% of the exact element-wise MSE (computed with
//! `LinearParams::fake_quantize`), at 4 and 8 bits (and 12, where bins are about a step wide,
//! and 16, where they are wider), asymmetric and symmetric, at the min-max range and at a range
//! clipped to 70% of max|x|.

mod common;

use common::repo_path;
use ndarray::{Array1, ArrayD, Ix2};
use quantscope::engine::{Plan, RunOptions};
use quantscope::ir::{ParamRole, TensorData};
use quantscope::load::{load_model, read_arrays};
use quantscope::metrics::{
    FineHistogram, MetricOptions, compare, compare_channels, compare_logits, layer_sqnr,
};
use quantscope::quant::{IntGrid, LinearParams, Staircase};
use quantscope::stats::Histogram;

const MODELS: [&str; 4] = [
    "digits_mlp",
    "digits_cnn",
    "digits_mobilenet",
    "digits_transformer",
];

/// (model, tensor name, values, channel axis) of every float weight tensor.
fn weight_tensors() -> Vec<(String, String, ArrayD<f32>, Option<usize>)> {
    let mut out = Vec::new();
    for model in MODELS {
        let m = load_model(&repo_path(&format!("sample_models/{model}.onnx"))).expect(model);
        for (name, t) in &m.graph.initializers {
            if t.role != ParamRole::Weight {
                continue;
            }
            if let TensorData::F32(a) = &t.data {
                out.push((model.to_string(), name.clone(), a.clone(), t.channel_axis));
            }
        }
    }
    assert!(out.len() >= 10, "only {} weight tensors found", out.len());
    out
}

fn exact_mse(values: &[f32], q: impl Fn(f32) -> f32) -> f64 {
    values
        .iter()
        .map(|&x| (f64::from(x) - f64::from(q(x))).powi(2))
        .sum::<f64>()
        / values.len() as f64
}

#[test]
fn estimate_is_within_5_percent_on_every_sample_weight() {
    let mut worst = (0.0f64, String::new());
    let mut checked = 0;
    for (model, name, a, _) in weight_tensors() {
        let values: Vec<f32> = a.iter().copied().collect();
        let h = FineHistogram::from_slice(&values).unwrap();
        let (min, max) = h.range();
        let abs_max = min.abs().max(max.abs());
        let clip = 0.7 * abs_max;
        let ranges = [
            ("min-max", min, max),
            ("clipped 70%", min.max(-clip), max.min(clip)),
        ];
        for bits in [4, 8, 12, 16] {
            let grid = IntGrid::new(bits, true, false).unwrap();
            for symmetric in [false, true] {
                for (label, lo, hi) in ranges {
                    let p = LinearParams::from_range(lo, hi, grid, symmetric).unwrap();
                    let exact = exact_mse(&values, |x| p.fake_quantize(x));
                    let est = h.estimate_linear(&p);
                    let rel = (est.mse - exact).abs() / exact;
                    let case = format!(
                        "{model}/{name} ({} values) {bits}-bit {} {label}: estimate {:.4e}, \
                         exact {exact:.4e}, rel {rel:.4}",
                        values.len(),
                        if symmetric { "sym" } else { "asym" },
                        est.mse
                    );
                    assert!(rel < 0.05, "{case}");
                    if rel > worst.0 {
                        worst = (rel, case);
                    }
                    checked += 1;
                }
            }
        }
    }
    println!("{checked} cases; worst: {}", worst.1);
}

#[test]
fn estimate_of_binary_ternary_and_codebooks_on_sample_weights() {
    let mut worst = (0.0f64, String::new());
    for (model, name, a, _) in weight_tensors() {
        let values: Vec<f32> = a.iter().copied().collect();
        let h = FineHistogram::from_slice(&values).unwrap();
        let n = values.len() as f32;
        let mean_abs = values.iter().map(|v| v.abs()).sum::<f32>() / n;
        // TWN: Δ = 0.7·E|w|, α = mean |w| over |w| > Δ.
        let delta = 0.7 * mean_abs;
        let big: Vec<f32> = values
            .iter()
            .map(|v| v.abs())
            .filter(|&v| v > delta)
            .collect();
        let alpha_t = big.iter().sum::<f32>() / big.len().max(1) as f32;
        // A 16-level codebook at quantiles (any sorted level set works).
        let mut sorted = values.clone();
        sorted.sort_by(f32::total_cmp);
        let codebook: Vec<f32> = (0..16)
            .map(|i| sorted[(2 * i + 1) * sorted.len() / 32])
            .collect();
        let schemes = [
            ("binary", Staircase::binary(mean_abs).unwrap()),
            ("ternary", Staircase::ternary(delta, alpha_t).unwrap()),
            ("codebook16", Staircase::nearest(&codebook).unwrap()),
        ];
        for (label, s) in schemes {
            let exact = exact_mse(&values, |x| s.apply(x));
            let est = h.estimate(&s).mse;
            let rel = (est - exact).abs() / exact;
            let case = format!("{model}/{name} {label}: estimate {est:.4e}, exact {exact:.4e}");
            assert!(rel < 0.05, "{case}");
            if rel > worst.0 {
                worst = (rel, case);
            }
        }
    }
    println!("worst: {:.5} {}", worst.0, worst.1);
}

#[test]
fn uniform_data_estimate_is_step_squared_over_12() {
    // A counts-only histogram of uniform data over [−100.5, 100.5] is uniform within every bin;
    // with S = 1 nothing is clipped and the MSE is exactly S²/12, wherever bin edges fall.
    for bins in [201, 256, 1000, 4096] {
        let h = Histogram {
            lo: -100.5,
            hi: 100.5,
            counts: vec![1000; bins],
        };
        let fine = FineHistogram::from_histogram(&h).unwrap();
        let p = LinearParams::from_scale_zero(1.0, 0, IntGrid::INT8).unwrap();
        let est = fine.estimate_linear(&p);
        assert!(
            (est.mse - 1.0 / 12.0).abs() < 1e-9,
            "{bins} bins: {}",
            est.mse
        );
        // Signal power of uniform [−a, a] is a²/3.
        assert!((est.signal_power - 100.5f64.powi(2) / 3.0).abs() < 1e-6);
        assert!((est.sqnr_db - 10.0 * (100.5f64.powi(2) / 3.0 * 12.0).log10()).abs() < 1e-6);
    }
    // The same from samples: a fine grid of uniform values, 8-bit over [−1, 1].
    let values: Vec<f32> = (0..1_000_000)
        .map(|i| -1.0 + 2.0 * (i as f32 + 0.5) / 1e6)
        .collect();
    let p = LinearParams::from_range(-1.0, 1.0, IntGrid::INT8, true).unwrap();
    let est = FineHistogram::from_slice(&values)
        .unwrap()
        .estimate_linear(&p);
    let s = f64::from(p.scale);
    let analytic = s * s / 12.0;
    assert!((est.mse - analytic).abs() / analytic < 0.01, "{}", est.mse);
}

#[test]
fn clip_only_error_is_the_integrated_tail() {
    // Uniform density on [−2, 2], a 16-bit grid over [−1, 1]: rounding error is negligible and
    // the clipped tails give 2·∫₁²(x − 1)²/4 dx = 1/6.
    let h = Histogram {
        lo: -2.0,
        hi: 2.0,
        counts: vec![5; 2048],
    };
    let fine = FineHistogram::from_histogram(&h).unwrap();
    let grid = IntGrid::new(16, true, true).unwrap();
    let p = LinearParams::from_range(-1.0, 1.0, grid, true).unwrap();
    let est = fine.estimate_linear(&p);
    let rounding = f64::from(p.scale).powi(2) / 12.0 / 2.0;
    assert!(
        (est.mse - (1.0 / 6.0 + rounding)).abs() < 1e-6,
        "{}",
        est.mse
    );
    // A single level is a clip on both sides: E[(x − L)²] = Var + (mean − L)² = 4/3 + L².
    let one = Staircase::new(vec![], vec![0.5]).unwrap();
    assert!((fine.estimate(&one).mse - (4.0 / 3.0 + 0.25)).abs() < 1e-9);
}

#[test]
fn exact_metrics_on_a_quantized_weight_per_tensor_and_per_channel() {
    let (_, name, a, axis) = weight_tensors()
        .into_iter()
        .find(|(m, _, _, axis)| m == "digits_cnn" && axis.is_some())
        .expect("a CNN weight with a channel axis");
    let axis = axis.unwrap();
    let values: Vec<f32> = a.iter().copied().collect();
    let h = FineHistogram::from_slice(&values).unwrap();
    let (min, max) = h.range();
    let options = MetricOptions::default();
    let mut last_sqnr = f64::NEG_INFINITY;
    for bits in [4, 6, 8] {
        let grid = IntGrid::new(bits, true, false).unwrap();
        let p = LinearParams::from_range(min, max, grid, true).unwrap();
        let q = a.mapv(|x| p.fake_quantize(x));
        let m = compare(a.view(), q.view(), &options).unwrap();
        assert!((m.mse - exact_mse(&values, |x| p.fake_quantize(x))).abs() < 1e-12);
        assert!(m.max_abs_error <= f64::from(p.scale) / 2.0 + 1e-7, "{name}");
        assert!(m.cosine > 0.9 && m.cosine <= 1.0);
        assert!(m.sqnr_db > last_sqnr + 10.0, "{bits} bits: {}", m.sqnr_db);
        last_sqnr = m.sqnr_db;
        let est = h.estimate_linear(&p);
        assert!(
            (est.sqnr_db - m.sqnr_db).abs() < 0.25,
            "{} vs {}",
            est.sqnr_db,
            m.sqnr_db
        );
        let per = compare_channels(a.view(), q.view(), axis, &options).unwrap();
        assert_eq!(per.len(), a.shape()[axis]);
        let pooled: f64 =
            per.iter().map(|c| c.mse * c.count as f64).sum::<f64>() / values.len() as f64;
        assert!((pooled - m.mse).abs() < 1e-12);
    }
}

#[test]
fn model_metrics_on_the_sample_cnn() {
    let model = load_model(&repo_path("sample_models/digits_cnn.onnx")).unwrap();
    let images = read_arrays(&repo_path("sample_models/data/digits_test_x.npy")).unwrap();
    let labels = read_arrays(&repo_path("sample_models/data/digits_test_y.npy")).unwrap();
    let labels: Array1<i64> = labels[0]
        .data
        .as_i64()
        .expect("integer labels")
        .clone()
        .into_dimensionality()
        .unwrap();
    let run = |graph: &quantscope::ir::Graph| {
        let plan = Plan::new(graph).unwrap();
        let feeds = [("input".to_string(), images[0].data.clone())].into();
        let out = plan.run(feeds, None, RunOptions::default()).unwrap();
        out.into_iter()
            .find(|(n, _)| n == "logits")
            .unwrap()
            .1
            .as_f32()
            .unwrap()
            .clone()
    };
    let float = run(&model.graph);
    // Fake-quantize every weight to 4 bits, per tensor, symmetric.
    let mut quantized = model.graph.clone();
    for t in quantized.initializers.values_mut() {
        if t.role != ParamRole::Weight {
            continue;
        }
        if let TensorData::F32(a) = &mut t.data {
            let m = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let p = LinearParams::from_range(-m, m, IntGrid::new(4, true, false).unwrap(), true)
                .unwrap();
            a.mapv_inplace(|x| p.fake_quantize(x));
        }
    }
    let quant = run(&quantized);
    let f2 = float.view().into_dimensionality::<Ix2>().unwrap();
    let q2 = quant.view().into_dimensionality::<Ix2>().unwrap();
    let c = compare_logits(f2, q2, Some(labels.view())).unwrap();
    // sample_models/metrics.json: 539/540 correct in float.
    assert_eq!(c.float_accuracy, Some(539.0 / 540.0));
    assert!(c.agreement > 0.5 && c.agreement <= 1.0);
    assert!(c.mean_kl > 0.0);
    let same = compare_logits(f2, f2, None).unwrap();
    assert_eq!((same.agreement, same.mean_kl), (1.0, 0.0));
    let layers = layer_sqnr([("logits", float.view(), quant.view())]).unwrap();
    assert!(layers[0].sqnr_db.is_finite() && layers[0].sqnr_db > 0.0);
    println!(
        "4-bit CNN: float acc {:?}, quant acc {:?}, agreement {}, KL {:.4}, logits SQNR {:.1} dB",
        c.float_accuracy, c.quant_accuracy, c.agreement, c.mean_kl, layers[0].sqnr_db
    );
}

/// Deterministic pseudo-random numbers in (0, 1) (splitmix64).
fn uniform_stream(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

#[test]
fn estimate_holds_from_2_to_16_bits_on_synthetic_tensors() {
    let mut u = uniform_stream(7);
    let mut normal = move || (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos();
    // Laplace (heavy tails, like weights) of 1M values, Student-t with 3 degrees of freedom
    // (heavier: rare values hundreds of σ out stretch the histogram, so its 8192 bins are
    // coarse where the mass is), and a small Gaussian tensor.
    let mut v = uniform_stream(11);
    let laplace: Vec<f32> = (0..1_000_000)
        .map(|_| {
            let r = v() - 0.5;
            (-r.signum() * (1.0 - 2.0 * r.abs()).ln() * 0.05) as f32
        })
        .collect();
    let student: Vec<f32> = (0..400_000)
        .map(|_| {
            let z = normal();
            let chi2: f64 = (0..3).map(|_| normal().powi(2)).sum();
            (z / (chi2 / 3.0).sqrt()) as f32
        })
        .collect();
    let gauss: Vec<f32> = (0..300).map(|_| normal() as f32).collect();
    let mut worst = (0.0f64, String::new());
    for (label, values) in [
        ("laplace 1M", &laplace),
        ("student-t3 400K", &student),
        ("gauss 300", &gauss),
    ] {
        let h = FineHistogram::from_slice(values).unwrap();
        let (min, max) = h.range();
        for bits in [2, 3, 4, 6, 8, 10, 12, 14, 16] {
            let grid = IntGrid::new(bits, true, false).unwrap();
            for symmetric in [false, true] {
                for clip in [0.01f32, 0.1, 0.3, 0.7, 1.0] {
                    let (lo, hi) = (min * clip, max * clip);
                    let p = LinearParams::from_range(lo, hi, grid, symmetric).unwrap();
                    let exact = exact_mse(values, |x| p.fake_quantize(x));
                    let est = h.estimate_linear(&p).mse;
                    let rel = (est - exact).abs() / exact;
                    let case = format!(
                        "{label} {bits}-bit sym {symmetric} clip {clip}: {est:.4e} vs {exact:.4e}"
                    );
                    assert!(rel < 0.05, "{case}");
                    if rel > worst.0 {
                        worst = (rel, case);
                    }
                }
            }
        }
    }
    println!("worst: {:.5} {}", worst.0, worst.1);
}
