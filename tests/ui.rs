//! The first window, driven headless with egui_kittest: it opens the bundled sample model on a
//! worker, lists its tensors, and shows the selected tensor's statistics; a bad file leaves an
//! error in the status line and the app running.

#![cfg(feature = "ui-tests")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use quantscope::ui::{QuantscopeApp, bundled_sample_model};

fn harness_for(model: PathBuf) -> Harness<'static, QuantscopeApp> {
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1200.0, 760.0))
        .build_ui_state(
            |ui, app: &mut QuantscopeApp| app.show_ui(ui),
            QuantscopeApp::new(Some(model)),
        );
    let start = Instant::now();
    while harness.state().is_loading() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "loading never finished"
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.run();
    harness
}

#[test]
fn opens_the_sample_model_and_lists_its_tensors() {
    let mut harness = harness_for(bundled_sample_model());
    assert_eq!(harness.state().error(), None);
    // The first conv weight is selected and its statistics shown.
    harness.get_by_label("channel range spread");
    harness
        .get_by_label("features.0.weight  [16, 1, 3, 3]")
        .click();
    harness.run();
    harness.get_by_label("log counts").click();
    harness.run();
}

#[test]
fn a_broken_file_reports_an_error_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.onnx");
    std::fs::write(&path, b"not a model").unwrap();
    let harness = harness_for(path);
    let error = harness.state().error().expect("an error is shown");
    assert!(error.contains("broken.onnx"), "{error}");
}
