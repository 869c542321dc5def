//! Metrics benchmarks: the histogram MSE estimate (what runs while a clip handle is dragged) for
//! one tensor's fine histogram, building that histogram, and the exact metrics over 1M values.

use criterion::{Criterion, criterion_group, criterion_main};
use quantscope::metrics::{FineHistogram, MetricOptions, compare_slices};
use quantscope::quant::{IntGrid, LinearParams};
use std::hint::black_box;

/// `n` Laplace-distributed values (deterministic).
fn laplace(n: usize) -> Vec<f32> {
    let mut state = 11u64;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let v = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64 - 0.5;
            (-v.signum() * (1.0 - 2.0 * v.abs()).ln() * 0.05) as f32
        })
        .collect()
}

fn estimate(c: &mut Criterion) {
    let big = laplace(1 << 20);
    // The largest ResNet-18 weight tensor: 512×512×3×3.
    let resnet = laplace(512 * 512 * 9);
    let small = laplace(18_432);
    for (label, values) in [
        ("1M values", &big),
        ("2.36M values", &resnet),
        ("18K values", &small),
    ] {
        let h = FineHistogram::from_slice(values).unwrap();
        let (min, max) = h.range();
        let clip = 0.7 * min.abs().max(max.abs());
        for bits in [2, 4, 8, 12, 16] {
            let grid = IntGrid::new(bits, true, false).unwrap();
            let p = LinearParams::from_range(-clip, clip, grid, false).unwrap();
            c.bench_function(
                &format!(
                    "estimate {bits}-bit clipped ({label}, {} bins)",
                    h.bin_count()
                ),
                |b| b.iter(|| black_box(&h).estimate_linear(black_box(&p))),
            );
        }
        c.bench_function(&format!("estimate ternary ({label})"), |b| {
            b.iter(|| black_box(&h).estimate_ternary(0.03, 0.07))
        });
    }
    c.bench_function("build fine histogram (1M values)", |b| {
        b.iter(|| FineHistogram::from_slice(black_box(&big)))
    });
}

fn exact(c: &mut Criterion) {
    let x = laplace(1 << 20);
    let p = LinearParams::from_range(-0.5, 0.5, IntGrid::INT8, true).unwrap();
    let y: Vec<f32> = x.iter().map(|&v| p.fake_quantize(v)).collect();
    let options = MetricOptions::default();
    c.bench_function("exact metrics (1M values)", |b| {
        b.iter(|| compare_slices(black_box(&x), black_box(&y), &options))
    });
}

criterion_group!(benches, estimate, exact);
criterion_main!(benches);
