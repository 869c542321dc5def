//! AdaRound benchmark: 1000 iterations on one sample-CNN layer (the 32→64 3×3 conv, 18,432
//! weights, K = 288), int4 per tensor, from inputs collected on the 512 calibration digits
//! (issue 6: < 10 s).

use std::path::Path;
use std::sync::atomic::AtomicBool;

use criterion::{Criterion, criterion_group, criterion_main};
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays};
use quantscope::quant::{QuantConfig, WeightQuant, WeightScheme};
use quantscope::transform::adaround::{AdaRoundOptions, layer_problems};
use quantscope::workflow::Samples;

fn adaround_layer(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = load_model(&root.join("sample_models/digits_cnn.onnx")).expect("sample CNN");
    let calibration = match read_arrays(&root.join("sample_models/data/digits_calib_x.npy"))
        .expect("calibration digits")
        .remove(0)
        .data
    {
        TensorData::F32(a) => a,
        TensorData::I64(_) => panic!("float images expected"),
    };
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
    let options = AdaRoundOptions {
        iterations: 1000,
        ..AdaRoundOptions::default()
    };
    let cancel = AtomicBool::new(false);
    let samples = Samples::single("input", TensorData::F32(calibration), "calibration digits")
        .expect("samples");
    let problems =
        layer_problems(&model.graph, &config, &samples, &options, &cancel).expect("layer problems");
    let problem = problems
        .iter()
        .find(|p| p.layer.node == "/features/features.7/Conv")
        .expect("the third conv");
    let mut group = c.benchmark_group("adaround");
    group.sample_size(10);
    group.bench_function("sample CNN conv 32→64 3×3, 1000 iterations", |b| {
        b.iter(|| {
            problem
                .optimize(&options, &mut |_| {}, &cancel)
                .expect("adaround")
                .adaround_error
        })
    });
    group.finish();
}

criterion_group!(benches, adaround_layer);
criterion_main!(benches);
