//! Sensitivity benchmark: every layer of the sample MobileNet-style model alone at int4
//! (per channel), the rest float, on 512 held-out digits (issue 6: < 10 s on 2 cores).

use std::path::Path;
use std::sync::atomic::AtomicBool;

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{Axis, Slice};
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays};
use quantscope::mixed::{AllocationOptions, analyze};
use quantscope::workflow::{Evaluator, RunControl, Samples};

fn sensitivity(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model =
        load_model(&root.join("sample_models/digits_mobilenet.onnx")).expect("sample model");
    let read = |name: &str| {
        read_arrays(&root.join("sample_models/data").join(name))
            .expect("digits")
            .remove(0)
            .data
    };
    let (TensorData::F32(x), TensorData::I64(y)) =
        (read("digits_test_x.npy"), read("digits_test_y.npy"))
    else {
        panic!("float images and integer labels expected");
    };
    let x = x.slice_axis(Axis(0), Slice::from(..512)).to_owned();
    let y = y
        .slice_axis(Axis(0), Slice::from(..512))
        .to_owned()
        .into_dimensionality::<ndarray::Ix1>()
        .expect("1-D labels");
    let cancel = AtomicBool::new(false);
    let samples = Samples::single("input", TensorData::F32(x), "digits")
        .and_then(|s| s.with_labels(Some(y)))
        .expect("samples");
    let control = RunControl::cancel(&cancel);
    let evaluator = Evaluator::new(&model.graph, &samples, None, &control)
        .and_then(|e| e.with_float_cache(&control))
        .expect("float run");
    let weights = AllocationOptions::default().weights(4);
    let mut group = c.benchmark_group("sensitivity");
    group.sample_size(10);
    group.bench_function("sample MobileNet, 11 layers at int4, 512 digits", |b| {
        b.iter(|| {
            analyze(&evaluator, weights, &|_, _| {}, &cancel)
                .expect("sensitivity")
                .layers
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, sensitivity);
criterion_main!(benches);
