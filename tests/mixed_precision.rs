//! Mixed precision on the sample MobileNet-style model and CNN: per-layer sensitivity, greedy
//! bit allocation under a size budget against uniform and inverse assignments, and the
//! depthwise-vs-pointwise presets.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::repo_path;
use quantscope::ir::{Model, TensorData};
use quantscope::load::{load_model, read_arrays};
use quantscope::mixed::{
    AllocationOptions, BitAssignment, Budget, CostModel, SensitivityReport, allocate, analyze,
    config_for, measure, preset, quantizable_layers,
};
use quantscope::workflow::{Evaluator, RunControl, Samples};

fn images() -> ndarray::ArrayD<f32> {
    match read_arrays(&repo_path("sample_models/data/digits_test_x.npy"))
        .unwrap()
        .remove(0)
        .data
    {
        TensorData::F32(a) => a,
        TensorData::I64(_) => panic!("float images expected"),
    }
}

fn labels() -> ndarray::Array1<i64> {
    match read_arrays(&repo_path("sample_models/data/digits_test_y.npy"))
        .unwrap()
        .remove(0)
        .data
    {
        TensorData::I64(a) => a.into_dimensionality().unwrap(),
        TensorData::F32(_) => panic!("int labels expected"),
    }
}

/// The held-out digits with their labels.
fn digits() -> Samples {
    Samples::single("input", TensorData::F32(images()), "digits")
        .unwrap()
        .with_labels(Some(labels()))
        .unwrap()
}

/// An evaluator of `model` on `samples` with the float outputs kept.
fn evaluator<'a>(model: &'a Model, samples: &'a Samples) -> Evaluator<'a> {
    let control = RunControl::default();
    Evaluator::new(&model.graph, samples, None, &control)
        .unwrap()
        .with_float_cache(&control)
        .unwrap()
}

fn load(name: &str) -> Model {
    load_model(&repo_path(&format!("sample_models/{name}.onnx"))).unwrap()
}

fn reports(evaluator: &Evaluator<'_>, options: &AllocationOptions) -> Vec<SensitivityReport> {
    let cancel = AtomicBool::new(false);
    options
        .candidates
        .iter()
        .map(|&b| analyze(evaluator, options.weights(b), &|_, _| {}, &cancel).unwrap())
        .collect()
}

#[test]
fn sensitivity_covers_every_layer_and_grows_as_bits_fall() {
    let model = load("digits_mobilenet");
    let samples = digits();
    let cancel = AtomicBool::new(false);
    let evaluator = evaluator(&model, &samples);
    let options = AllocationOptions {
        per_channel: false,
        ..AllocationOptions::default()
    };
    let calls = AtomicUsize::new(0);
    let at = |bits| {
        analyze(
            &evaluator,
            options.weights(bits),
            &|_, _| {
                calls.fetch_add(1, Ordering::Relaxed);
            },
            &cancel,
        )
        .unwrap()
    };
    let (b8, b2) = (at(8), at(2));
    assert!((b8.float_accuracy.unwrap() - 539.0 / 540.0).abs() < 1e-9);
    let layers = quantizable_layers(&model.graph);
    assert_eq!(layers.len(), 11);
    assert_eq!(b8.layers.len(), 11);
    assert_eq!(calls.load(Ordering::Relaxed), 22);
    for layer in &layers {
        let (s8, s2) = (
            b8.layer(&layer.node).unwrap(),
            b2.layer(&layer.node).unwrap(),
        );
        eprintln!(
            "{:<22} {:>6} params: int8 KL {:.2e} drop {:+.2}%, int2 KL {:.2e} drop {:+.2}%",
            layer.node,
            layer.params,
            s8.evaluation.loss(),
            100.0 * s8.accuracy_drop.unwrap(),
            s2.evaluation.loss(),
            100.0 * s2.accuracy_drop.unwrap()
        );
        assert!(
            s8.evaluation.loss() < s2.evaluation.loss(),
            "{}: int8 {} vs int2 {}",
            layer.node,
            s8.evaluation.loss(),
            s2.evaluation.loss()
        );
        assert!(s8.accuracy_drop.unwrap().abs() <= 0.01, "{}", layer.node);
    }
    // Cancelled before it starts: an error, not a partial report.
    assert!(
        analyze(
            &evaluator,
            options.weights(4),
            &|_, _| {},
            &AtomicBool::new(true)
        )
        .is_err()
    );
}

#[test]
fn allocation_beats_uniform_and_inverse_at_equal_size() {
    let model = load("digits_mobilenet");
    let samples = digits();
    let cancel = AtomicBool::new(false);
    let evaluator = evaluator(&model, &samples);
    let options = AllocationOptions {
        candidates: vec![8, 6, 4, 3, 2],
        per_channel: false,
        ..AllocationOptions::default()
    };
    let reports = reports(&evaluator, &options);
    let costs = CostModel::of(&evaluator).unwrap();
    let layers = quantizable_layers(&model.graph);
    // The budget: every layer at 4 bits.
    let uniform: BitAssignment = layers.iter().map(|l| (l.node.clone(), 4)).collect();
    let budget = costs.size_bytes(&uniform, &options);
    let mut measured = 0;
    let allocation = allocate(
        &evaluator,
        &costs,
        &reports,
        Budget::SizeBytes(budget),
        &options,
        16,
        &mut |done, _| measured = done,
        &cancel,
    )
    .unwrap();
    assert_eq!(measured, allocation.curve.len());
    assert!(allocation.curve.len() >= 16);
    assert!(allocation.chosen.size_bytes <= budget);
    // The curve runs from all-2-bit to all-8-bit, by increasing size.
    assert!(
        allocation
            .curve
            .windows(2)
            .all(|w| w[0].size_bytes <= w[1].size_bytes)
    );
    let (smallest, largest) = (&allocation.curve[0], allocation.curve.last().unwrap());
    assert!(smallest.bits.values().all(|&b| b == 2));
    assert!(largest.bits.values().all(|&b| b == 8));

    // Inverse: lower the most sensitive layers (by 4-bit KL) first, to 2 bits, until the
    // budget holds.
    let four = reports.iter().find(|r| r.weights == "int4").unwrap();
    let mut by_sensitivity = layers.clone();
    by_sensitivity.sort_by(|a, b| {
        let kl = |n: &str| four.layer(n).unwrap().evaluation.loss();
        kl(&b.node).total_cmp(&kl(&a.node))
    });
    let mut inverse: BitAssignment = layers.iter().map(|l| (l.node.clone(), 8)).collect();
    for layer in &by_sensitivity {
        if costs.size_bytes(&inverse, &options) <= budget {
            break;
        }
        inverse.insert(layer.node.clone(), 2);
    }
    assert!(costs.size_bytes(&inverse, &options) <= budget);
    let measure =
        |bits: &BitAssignment| measure(&evaluator, &config_for(bits, &options), &cancel).unwrap();
    let (uniform_eval, inverse_eval) = (measure(&uniform), measure(&inverse));
    let chosen = &allocation.chosen;
    eprintln!(
        "budget {:.2} KiB (uniform int4): allocation {:.2} KiB acc {:.2}% KL {:.3e}; \
         uniform int4 acc {:.2}% KL {:.3e}; inverse {:.2} KiB acc {:.2}% KL {:.3e}",
        budget / 1024.0,
        chosen.size_bytes / 1024.0,
        100.0 * chosen.evaluation.quant_accuracy().unwrap(),
        chosen.evaluation.loss(),
        100.0 * uniform_eval.quant_accuracy().unwrap(),
        uniform_eval.loss(),
        costs.size_bytes(&inverse, &options) / 1024.0,
        100.0 * inverse_eval.quant_accuracy().unwrap(),
        inverse_eval.loss()
    );
    eprintln!("allocation bits: {:?}", chosen.bits);
    for p in &allocation.curve {
        eprintln!(
            "  curve: {:.2} KiB, acc {:.2}%, KL {:.3e} (predicted {:.3e})",
            p.size_bytes / 1024.0,
            100.0 * p.evaluation.quant_accuracy().unwrap(),
            p.evaluation.loss(),
            p.predicted_kl
        );
    }
    assert!(chosen.evaluation.loss() < uniform_eval.loss());
    assert!(chosen.evaluation.loss() < inverse_eval.loss());
    assert!(chosen.evaluation.quant_accuracy() > inverse_eval.quant_accuracy());
    assert!(chosen.evaluation.quant_accuracy() >= uniform_eval.quant_accuracy());

    // A budget below all-2-bit is refused with the reachable minimum.
    let err = allocate(
        &evaluator,
        &costs,
        &reports,
        Budget::SizeBytes(100.0),
        &options,
        16,
        &mut |_, _| {},
        &cancel,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("below the smallest allocation"),
        "{err}"
    );
}

#[test]
fn depthwise_vs_pointwise_presets_on_the_mobilenet_sample() {
    let model = load("digits_mobilenet");
    let samples = digits();
    let cancel = AtomicBool::new(false);
    let evaluator = evaluator(&model, &samples);
    let costs = CostModel::of(&evaluator).unwrap();
    for per_channel in [false, true] {
        let options = AllocationOptions {
            per_channel,
            ..AllocationOptions::default()
        };
        let mut results = Vec::new();
        for name in ["dw8-pw4", "dw4-pw8"] {
            let bits = preset(&model.graph, name, 8).unwrap();
            // 4 depthwise and 5 pointwise (expand and project included) convolutions.
            let expected = if name == "dw8-pw4" { 5 } else { 4 };
            assert_eq!(
                bits.values().filter(|&&b| b == 4).count(),
                expected,
                "{name}"
            );
            let evaluation = measure(&evaluator, &config_for(&bits, &options), &cancel).unwrap();
            let size = costs.size_bytes(&bits, &options);
            eprintln!(
                "{name} ({}): {:.2} KiB, accuracy {:.2}%, output KL {:.3e}",
                if per_channel {
                    "per channel"
                } else {
                    "per tensor"
                },
                size / 1024.0,
                100.0 * evaluation.quant_accuracy().unwrap(),
                evaluation.loss()
            );
            results.push((size, evaluation));
        }
        // Pointwise layers hold most weights: 4-bit pointwise is the smaller model.
        assert!(results[0].0 < results[1].0);
    }
    assert!(preset(&load("digits_cnn").graph, "dw8-pw4", 8).is_err());
    assert!(preset(&model.graph, "dw8", 8).is_err());
}
