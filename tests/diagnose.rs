//! Error propagation (`quantscope::diagnose`, `quantscope diagnose`) and the "why this
//! threshold" curves: the folded MobileNet's depthwise layers are the worst own-error layers;
//! a layer's own error equals an evaluation with only that layer quantized; a lone Gemm's own
//! error has a closed form; a real model runs without labels and gives a sane table; the
//! curves' minima are the MSE and KL calibrators' thresholds.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use ndarray::{Array2, ArrayD, IxDyn};
use quantscope::calib::methods::{kl_search, mse_threshold};
use quantscope::calib::{CalibrationStats, Method, ObserverConfig, kl_curve, mse_curve};
use quantscope::diagnose::{DiagnoseOptions, Diagnosis, diagnose, threshold_curves};
use quantscope::ir::{DType, Dim, Graph, Node, Tensor, TensorData, ValueInfo, assign_roles};
use quantscope::load::{load_model, read_arrays};
use quantscope::quant::{ActivationQuant, QuantConfig, WeightQuant, WeightScheme};
use quantscope::transform::FloatGraph;
use quantscope::transform::fold_bn::fold_batch_norm;
use quantscope::workflow::{EvalOptions, Evaluator, RunControl, Samples, calibrate};
use serde_json::Value;

use common::repo_path;

const DEPTHWISE: [&str; 4] = [
    "/block1/dw/Conv",
    "/block2/dw/Conv",
    "/block3/dw/Conv",
    "/block4/dw/Conv",
];

fn int8(per_channel: bool) -> QuantConfig {
    QuantConfig::uniform(
        Some(WeightQuant {
            scheme: WeightScheme::Linear {
                bits: 8,
                symmetric: true,
            },
            per_channel,
        }),
        Some(ActivationQuant {
            bits: 8,
            symmetric: false,
            method: Method::MinMax,
        }),
    )
}

fn digits(graph: &Graph) -> Samples {
    let x = read_arrays(&repo_path("sample_models/data/digits_calib_x.npy")).unwrap();
    let name = graph.inputs[0].name.clone();
    Samples::single(&name, x[0].data.clone(), "calibration digits").unwrap()
}

fn folded_mobilenet() -> Graph {
    let graph = load_model(&repo_path("sample_models/digits_mobilenet.onnx"))
        .unwrap()
        .graph;
    fold_batch_norm(&FloatGraph::new(graph)).unwrap().0.graph
}

fn run(graph: &Graph, config: &QuantConfig, samples: &Samples, leave: bool) -> Diagnosis {
    let control = RunControl::default();
    let stats = calibrate(graph, samples, None, &control).unwrap().stats;
    let options = DiagnoseOptions {
        leave_one_float: leave,
    };
    diagnose(graph, config, &stats, samples, None, &options, &control).unwrap()
}

#[test]
fn depthwise_layers_are_the_worst_own_error_layers_of_the_folded_mobilenet() {
    let graph = folded_mobilenet();
    let samples = digits(&graph);
    let diagnosis = run(&graph, &int8(false), &samples, true);
    let table: Vec<String> = diagnosis
        .worst_first()
        .iter()
        .map(|l| {
            format!(
                "{} own {:.2} accum {:.2} float-one {:?}",
                l.node, l.own_sqnr_db, l.accumulated_sqnr_db, l.output_sqnr_db_with_layer_float
            )
        })
        .collect();
    assert_eq!(diagnosis.layers.len(), 11, "{table:#?}");
    let worst: HashSet<&str> = diagnosis.worst_first()[..4]
        .iter()
        .map(|l| l.node.as_str())
        .collect();
    assert_eq!(worst, HashSet::from(DEPTHWISE), "{table:#?}");
    // Measured: block2/dw and block3/dw near 0 dB, every other layer above 35 dB.
    let blown: Vec<&str> = diagnosis
        .layers
        .iter()
        .filter(|l| l.own_sqnr_db < 10.0)
        .map(|l| l.node.as_str())
        .collect();
    assert_eq!(blown, ["/block2/dw/Conv", "/block3/dw/Conv"], "{table:#?}");
    // Leaving a broken layer float helps the outputs more than leaving a healthy one float.
    let with_float = |node: &str| {
        diagnosis
            .layer(node)
            .and_then(|l| l.output_sqnr_db_with_layer_float)
            .unwrap()
    };
    assert!(
        with_float("/block2/dw/Conv") > with_float("/block1/pw/Conv") + 3.0,
        "{table:#?}"
    );
    let p = diagnosis.passes;
    assert_eq!((p.float, p.quantized, p.single_layer), (3, 12, 1));
    // Per channel, the same layers are healthy: the blow-up is per-tensor's.
    let per_channel = run(&graph, &int8(true), &samples, false);
    for name in DEPTHWISE {
        let l = per_channel.layer(name).unwrap();
        assert!(l.own_sqnr_db > 30.0, "{name}: {}", l.own_sqnr_db);
        assert_eq!(l.output_sqnr_db_with_layer_float, None);
    }
}

#[test]
fn own_error_equals_an_evaluation_with_only_that_layer_quantized() {
    let graph = folded_mobilenet();
    let samples = digits(&graph);
    let config = int8(false);
    let control = RunControl::default();
    let stats = calibrate(&graph, &samples, None, &control).unwrap().stats;
    let diagnosis = run(&graph, &config, &samples, false);
    let evaluator = Evaluator::new(&graph, &samples, None, &control).unwrap();
    for name in [
        "/stem/Conv",
        "/block2/dw/Conv",
        "/block3/project/Conv",
        "/fc/Gemm",
    ] {
        let mut only = QuantConfig::default();
        only.layers.insert(name.to_string(), *config.layer(name));
        let evaluation = evaluator
            .evaluate(
                &graph,
                &only,
                &stats,
                &EvalOptions {
                    layers: true,
                    ..Default::default()
                },
                &control,
            )
            .unwrap();
        let alone = evaluation.layers.iter().find(|l| l.node == name).unwrap();
        let own = diagnosis.layer(name).unwrap().own_sqnr_db;
        assert!(
            (alone.sqnr_db - own).abs() < 1e-6,
            "{name}: diagnose {own}, evaluation {}",
            alone.sqnr_db
        );
    }
    // The first layer sees the model input either way: own = accumulated.
    let stem = diagnosis.layer("/stem/Conv").unwrap();
    assert!((stem.own_sqnr_db - stem.accumulated_sqnr_db).abs() < 1e-9);
}

/// x [N, 4] → Gemm(W [4, 3], b [3]) → y.
fn lone_gemm(w: &[f32], b: &[f32]) -> Graph {
    let tensor = |name: &str, shape: &[usize], values: &[f32]| {
        let data = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap();
        Tensor::new(name, TensorData::F32(data), DType::F32)
    };
    let info = |name: &str, shape: Vec<Dim>| ValueInfo {
        name: name.into(),
        dtype: Some(DType::F32),
        shape: Some(shape),
    };
    let mut graph = Graph {
        name: "lone gemm".into(),
        nodes: vec![Node {
            name: "fc".into(),
            op_type: "Gemm".into(),
            domain: String::new(),
            inputs: vec!["x".into(), "w".into(), "b".into()],
            outputs: vec!["y".into()],
            attributes: BTreeMap::new(),
        }],
        inputs: vec![info("x", vec![Dim::Symbolic("N".into()), Dim::Fixed(4)])],
        outputs: vec![info("y", vec![Dim::Symbolic("N".into()), Dim::Fixed(3)])],
        initializers: [tensor("w", &[4, 3], w), tensor("b", &[3], b)]
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect(),
        opset: 17,
    };
    assign_roles(&mut graph);
    graph
}

#[test]
fn a_lone_gemm_has_the_closed_form_own_error() {
    let w = [
        0.70f32, -0.13, 0.05, 0.31, 0.22, -0.47, -0.35, 0.09, 0.61, 0.17, -0.66, 0.02,
    ];
    let b = [0.1f32, -0.2, 0.05];
    let graph = lone_gemm(&w, &b);
    let n = 16;
    let x = Array2::from_shape_fn((n, 4), |(i, j)| ((i * 7 + j * 5) % 11) as f32 / 5.0 - 1.0);
    let samples = Samples::single("x", TensorData::F32(x.clone().into_dyn()), "x").unwrap();
    // int4 symmetric per tensor, activations float: S = max|W| / 7, Ŵ = S·round(W / S).
    let config = QuantConfig::uniform(
        Some(WeightQuant {
            scheme: WeightScheme::Linear {
                bits: 4,
                symmetric: true,
            },
            per_channel: false,
        }),
        None,
    );
    let diagnosis = run(&graph, &config, &samples, true);
    let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 7.0;
    let wq: Vec<f32> = w
        .iter()
        .map(|v| (v / scale).round_ties_even() * scale)
        .collect();
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for i in 0..n {
        for k in 0..3 {
            let (mut f, mut q) = (f64::from(b[k]), f64::from(b[k]));
            for j in 0..4 {
                f += f64::from(x[[i, j]]) * f64::from(w[j * 3 + k]);
                q += f64::from(x[[i, j]]) * f64::from(wq[j * 3 + k]);
            }
            signal += f * f;
            noise += (f - q) * (f - q);
        }
    }
    let expected = 10.0 * (signal / noise).log10();
    let fc = diagnosis.layer("fc").unwrap();
    assert!(
        (fc.own_sqnr_db - expected).abs() < 1e-3,
        "own {} expected {expected}",
        fc.own_sqnr_db
    );
    // The only layer: accumulated = own; left float, nothing else is quantized.
    assert!((fc.accumulated_sqnr_db - expected).abs() < 1e-3);
    assert_eq!(fc.output_sqnr_db_with_layer_float, Some(f64::INFINITY));
}

/// The shared models folder, or None after saying it is absent.
fn shared_models() -> Option<std::path::PathBuf> {
    let root = repo_path("../shared/real_models");
    if root.is_dir() {
        Some(root)
    } else {
        println!("skipped: {} is absent", root.display());
        None
    }
}

#[test]
fn a_real_model_is_diagnosed_without_labels_from_the_command_line() {
    let Some(root) = shared_models() else {
        return;
    };
    let model = root.join("superres-espcn/super_resolution.onnx");
    let images = root.join("images");
    let output = Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .args(["diagnose".as_ref(), model.as_os_str()])
        .args(["--data".as_ref(), images.as_os_str()])
        .args(["--preset", "luma,0..1", "--json"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let layers = report["diagnosis"]["layers"].as_array().unwrap();
    // ESPCN is a chain of four convolutions.
    assert_eq!(layers.len(), 4, "{stdout}");
    let number = |l: &Value, key: &str| {
        l[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number: {l}"))
    };
    for (i, l) in layers.iter().enumerate() {
        let own = number(l, "own_sqnr_db");
        let accumulated = number(l, "accumulated_sqnr_db");
        let float_one = number(l, "output_sqnr_db_with_layer_float");
        for v in [own, accumulated, float_one] {
            assert!(v.is_finite() && v > 10.0 && v < 80.0, "{l}");
        }
        // In a chain, error only adds up: the first layer's own and accumulated coincide.
        assert!(own >= accumulated - 1e-6, "{l}");
        if i == 0 {
            assert!((own - accumulated).abs() < 1e-6, "{l}");
        }
    }
    // The last layer's accumulated error is the model output's.
    let worst = report["worst_output_sqnr_db"].as_f64().unwrap();
    let last = number(&layers[3], "accumulated_sqnr_db");
    assert!(
        (worst - last).abs() < 0.5,
        "output {worst}, last layer {last}"
    );
}

#[test]
fn the_table_lists_every_layer_worst_first() {
    let out = Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .args([
            "diagnose",
            "sample_models/digits_mobilenet.onnx",
            "--data",
            "sample_models/data/digits_calib_x.npy",
            "--fold-bn",
            "--granularity",
            "tensor",
            "--worst-first",
            "--no-leave-one-float",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = stdout.lines().position(|l| l.starts_with("layer")).unwrap();
    let rows: Vec<&str> = stdout.lines().skip(header + 1).take(11).collect();
    assert!(rows[0].starts_with("/block2/dw/Conv"), "{stdout}");
    let own: Vec<f64> = rows
        .iter()
        .map(|r| r.split_whitespace().nth(2).unwrap().parse().unwrap())
        .collect();
    assert!(own.windows(2).all(|w| w[0] <= w[1]), "{stdout}");

    let missing = Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .args(["diagnose", "sample_models/digits_mobilenet.onnx"])
        .args(["--data", "sample_models/data/no_such.npy"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no_such.npy"), "{stderr}");
}

/// Samples of |Laplace| (one-sided) or Laplace (two-sided) with a few outliers.
fn laplace(n: usize, two_sided: bool, seed: u64) -> ArrayD<f32> {
    let mut s = seed;
    ArrayD::from_shape_fn(IxDyn(&[n]), |i| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let u = (((s >> 11) as f64) + 0.5) / (1u64 << 53) as f64;
        let mag = -u.ln() * if i[0] % 997 == 0 { 6.0 } else { 1.0 };
        let sign = if two_sided && (s & 1) == 1 { -1.0 } else { 1.0 };
        (sign * mag) as f32
    })
}

#[test]
fn curve_minima_are_the_mse_and_kl_thresholds() {
    for (two_sided, bits) in [(false, 8), (true, 8), (false, 4), (true, 6)] {
        let values = laplace(200_000, two_sided, 17 + u64::from(bits));
        let stats = CalibrationStats::of_tensor(values.view(), ObserverConfig::default());
        let curves = threshold_curves(&stats, bits).unwrap();
        let case = format!("two-sided {two_sided}, {bits} bits");
        assert_eq!(curves.one_sided, !two_sided, "{case}");
        assert_eq!(
            curves.mse.len(),
            stats.abs_histogram().unwrap().counts.len()
        );
        let (min, max) = stats.min_max().unwrap();
        let clamp = |t: f64| {
            let t = t as f32;
            ((-t).max(min), t.min(max))
        };
        let mse = clamp(curves.mse_choice.unwrap());
        assert_eq!(mse, Method::Mse.range(&stats, bits).unwrap(), "{case}");
        let kl = clamp(curves.kl_choice.unwrap());
        assert_eq!(kl, Method::Kl.range(&stats, bits).unwrap(), "{case}");
        // The searches clip these long tails: both minima lie below max |x|.
        let abs_max = f64::from(stats.abs_max().unwrap());
        assert!(curves.mse_choice.unwrap() < abs_max, "{case}");
        assert!(curves.kl_choice.unwrap() < abs_max, "{case}");
    }
}

#[test]
fn the_calibrators_search_the_curves() {
    let values = laplace(100_000, false, 3);
    let stats = CalibrationStats::of_tensor(values.view(), ObserverConfig::default());
    let h = stats.abs_histogram().unwrap();
    let hi = f64::from(h.hi);
    for bits in [3, 8] {
        let curve = mse_curve(&h.counts, hi, bits, true);
        let best = curve.iter().fold(
            (f64::INFINITY, 0.0),
            |b, &(a, e)| if e < b.0 { (e, a) } else { b },
        );
        assert_eq!(best.1, mse_threshold(&h.counts, hi, bits, true));
        // The error at the chosen clip beats clipping nowhere (min-max).
        assert!(best.0 < curve.last().unwrap().1);
        let levels = 1usize << bits;
        let kl = kl_curve(&h.counts, levels);
        let last_min = kl
            .iter()
            .filter(|c| c.divergence.is_finite())
            .fold(None::<(f64, usize)>, |b, c| match b {
                Some((d, _)) if c.divergence > d => b,
                _ => Some((c.divergence, c.edge)),
            })
            .unwrap();
        assert_eq!(last_min.1, kl_search(&h.counts, levels).unwrap().edge);
    }
}

/// Σ over the weight tensors of squared error (mse × count) and of the float values' energy.
fn weight_noise(graph: &Graph, config: &QuantConfig) -> (f64, f64) {
    let quantized =
        quantscope::quant::QuantizedModel::prepare(graph, config, &BTreeMap::new()).unwrap();
    let noise: f64 = quantized
        .weights
        .iter()
        .map(|w| w.metrics.mse * w.metrics.count as f64)
        .sum();
    let signal: f64 = quantized
        .weights
        .iter()
        .map(|w| {
            graph.initializers[&w.tensor]
                .data
                .to_f32()
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
        })
        .sum();
    (signal, noise)
}

#[test]
fn mse_weight_calibration_beats_min_max_on_a_real_model() {
    let Some(root) = shared_models() else {
        return;
    };
    let graph = load_model(&root.join("yunet/yunet_s_640_640.onnx"))
        .unwrap()
        .graph;
    for (bits, per_channel) in [(4, true), (4, false), (8, false)] {
        let mut config = QuantConfig::uniform(
            Some(WeightQuant {
                scheme: WeightScheme::Linear {
                    bits,
                    symmetric: true,
                },
                per_channel,
            }),
            None,
        );
        let (signal, min_max) = weight_noise(&graph, &config);
        config.weight_calib = Some(Method::Mse);
        let (_, mse) = weight_noise(&graph, &config);
        let db = |noise: f64| 10.0 * (signal / noise).log10();
        println!(
            "{bits} bits, per channel {per_channel}: weight SQNR min-max {:.2} dB, MSE {:.2} dB",
            db(min_max),
            db(mse)
        );
        // Measured: +0.18 dB (int4 per channel), +2.61 dB (int4 per tensor), +0.03 dB (int8
        // per tensor, where little is worth clipping).
        let margin = if bits == 4 && !per_channel { 2.0 } else { 0.0 };
        assert!(
            db(mse) > db(min_max) + margin,
            "{bits} bits, per channel {per_channel}: MSE {:.2} dB, min-max {:.2} dB",
            db(mse),
            db(min_max)
        );
    }
}
