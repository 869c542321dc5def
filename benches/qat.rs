//! Quantization-aware training benchmark: one epoch of the sample CNN on the 745 training digits
//! (batches of 64, Adam, int4 weights and 4-bit activations with the STE and EMA ranges), on
//! every core rayon gets; the target is ≤ 2 s on 2 cores. Float/PTQ evaluation is left
//! out (no held-out data), so the figure is the training itself.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::ArrayD;
use quantscope::calib::{ActivationCollector, CalibrationStats, Method};
use quantscope::engine::Plan;
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays};
use quantscope::quant::{ActivationQuant, QuantConfig, WeightQuant};
use quantscope::train::{Labelled, QatConfig, QatInputs, QatOptions, run_qat};

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn training_digits() -> Labelled {
    let mut arrays = read_arrays(&repo("sample_models/data/digits_train.npz"))
        .expect("training digits")
        .into_iter();
    let (Some(x), Some(y)) = (arrays.next(), arrays.next()) else {
        panic!("digits_train.npz holds x and y");
    };
    let (TensorData::F32(x), TensorData::I64(y)) = (x.data, y.data) else {
        panic!("float images and int labels expected");
    };
    Labelled::new(x, y.iter().copied().collect()).expect("one label per digit")
}

fn stats(graph: &quantscope::ir::Graph, x: &ArrayD<f32>) -> BTreeMap<String, CalibrationStats> {
    let plan = Plan::new(graph).expect("plan");
    let mut collector = ActivationCollector::new();
    collector
        .run_batches(&plan, "input", x.view(), 128)
        .expect("calibration");
    collector.into_stats()
}

fn one_epoch(c: &mut Criterion) {
    let graph = load_model(&repo("sample_models/digits_cnn.onnx"))
        .expect("sample CNN")
        .graph;
    let train = training_digits();
    let stats = stats(&graph, &train.x);
    let config = QatConfig::new(QuantConfig::uniform(
        Some(WeightQuant {
            scheme: "int4".parse().expect("scheme"),
            per_channel: true,
        }),
        Some(ActivationQuant {
            bits: 4,
            symmetric: false,
            method: Method::MinMax,
        }),
    ));
    let options = QatOptions {
        epochs: 1,
        ..QatOptions::default()
    };
    let mut group = c.benchmark_group("qat");
    group.sample_size(10);
    group.bench_function("one epoch, sample CNN, 745 digits, w4a4", |b| {
        b.iter(|| {
            let inputs = QatInputs {
                graph: &graph,
                config: &config,
                stats: &stats,
                train: &train,
                eval: None,
            };
            run_qat(&inputs, &options, &mut |_| {}, &AtomicBool::new(false)).expect("QAT")
        })
    });
    group.finish();
}

criterion_group!(benches, one_epoch);
criterion_main!(benches);
