//! The desktop app (behind the `gui` feature). Panels read state and emit commands; all
//! loading and statistics run on named worker threads that wake the UI when done.

mod app;
pub mod distribution;
mod load_job;
mod tensor_list;
mod tensor_view;

use std::path::PathBuf;

pub use app::QuantscopeApp;

/// The sample model opened when none is given.
pub fn bundled_sample_model() -> PathBuf {
    let relative = PathBuf::from("sample_models/digits_cnn.onnx");
    if relative.exists() {
        relative
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
    }
}

/// Opens the main window on `model` (the bundled sample when None) and runs until it closes.
pub fn run_app(model: Option<PathBuf>) -> anyhow::Result<()> {
    let model = model.unwrap_or_else(bundled_sample_model);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Quantscope")
            .with_inner_size([1200.0, 760.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "Quantscope",
        options,
        Box::new(move |_cc| Ok(Box::new(QuantscopeApp::new(Some(model))))),
    )
    .map_err(|e| anyhow::anyhow!("could not open the window: {e}"))
}
