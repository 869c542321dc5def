//! Calibration benchmarks: |x| histogram throughput (100M f32 values, 2048 output bins with the
//! default 8× oversampled internal bins), one TensorRT KL search on a 2048-bin histogram, and a
//! full calibration of the sample CNN on 512 images (collection + every method at 8 bits).

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quantscope::calib::{ActivationCollector, GrowingHistogram, Method, kl_search};
use quantscope::engine::Plan;
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays};

fn laplace(n: usize) -> Vec<f32> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let sign = if s & 1 == 0 { 1.0 } else { -1.0 };
            (sign * -u.ln()) as f32
        })
        .collect()
}

fn histogram(c: &mut Criterion) {
    let values = laplace(100_000_000);
    let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut group = c.benchmark_group("calibration");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((values.len() * 4) as u64));
    group.bench_function("abs histogram 100M f32, 2048 bins (x8 internal)", |b| {
        b.iter(|| {
            let mut h = GrowingHistogram::new(2048 * 8);
            h.ensure_range(0.0, f64::from(max));
            h.add(&values, true);
            h.total()
        })
    });
    group.bench_function("abs histogram 100M f32, 2048 bins (no oversampling)", |b| {
        b.iter(|| {
            let mut h = GrowingHistogram::new(2048);
            h.ensure_range(0.0, f64::from(max));
            h.add(&values, true);
            h.total()
        })
    });
    group.finish();

    let mut h = GrowingHistogram::new(2048);
    h.ensure_range(0.0, f64::from(max));
    h.add(&values[..1_000_000], true);
    let counts = h.counts().to_vec();
    c.bench_function("KL search, 2048 bins, 128 levels", |b| {
        b.iter(|| kl_search(&counts, 128))
    });
}

fn full_cnn(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = load_model(&root.join("sample_models/digits_cnn.onnx")).expect("sample CNN");
    let plan = Plan::new(&model.graph).expect("runnable");
    let arrays = read_arrays(&root.join("sample_models/data/digits_calib_x.npy")).expect("data");
    let TensorData::F32(images) = &arrays[0].data else {
        panic!("float images expected")
    };
    let mut group = c.benchmark_group("calibration");
    group.sample_size(10);
    group.bench_function("digits_cnn 512 images (batches of 64), all methods", |b| {
        b.iter(|| {
            let mut collector = ActivationCollector::new();
            collector
                .run_batches(&plan, "input", images.view(), 64)
                .expect("run");
            let mut ranges = 0;
            for stats in collector.stats().values() {
                for method in Method::ALL {
                    ranges += usize::from(method.range(stats, 8).is_ok());
                }
            }
            ranges
        })
    });
    group.finish();
}

criterion_group!(benches, histogram, full_cnn);
criterion_main!(benches);
