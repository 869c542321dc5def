//! Time from opening a sample model to its first histogram on screen: a fresh app (egui_kittest
//! harness, the real `show_ui`) loads the model on its worker, prepares the first weight's view
//! data on another, and draws it; an iteration ends on the first frame that shows the
//! distribution view. Targets: < 1 s for the sample models, ≤ 2 s for ResNet-50 and BERT-base
//! (made in `bench_models/` by `scripts/make_large_models.py`; skipped with a line when absent).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use egui_kittest::Harness;
use quantscope::ui::QuantscopeApp;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sample_models")
        .join(name)
}

/// Opens `model` in a new app and steps frames until its first histogram is drawn.
fn open_to_first_histogram(model: PathBuf) -> Duration {
    let start = Instant::now();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(
            |ui, app: &mut QuantscopeApp| app.show_ui(ui),
            QuantscopeApp::new(Some(model)),
        );
    loop {
        harness.step();
        let shown = harness
            .state()
            .session()
            .is_some_and(|s| s.shown.as_ref().is_some_and(|shown| shown.data.is_ok()));
        if shown {
            // One more frame draws what has just arrived.
            harness.step();
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never shown");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("open to first histogram");
    group.sample_size(10);
    for name in ["digits_mobilenet.onnx", "digits_cnn.onnx"] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| open_to_first_histogram(sample(name)))
                    .sum()
            })
        });
    }
    let large = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench_models");
    for name in ["resnet50.onnx", "bert_base.onnx"] {
        let path = large.join(name);
        if !path.exists() {
            println!(
                "skipping {name}: run `python3 scripts/make_large_models.py` to create {}",
                path.display()
            );
            continue;
        }
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| open_to_first_histogram(path.clone()))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
