//! The desktop app (behind the `gui` feature). Panels read state and return commands; the app
//! applies them to the session's `QuantConfig` and starts jobs (`crate::jobs`) on named worker
//! threads that wake the UI when done.

mod activation_distribution;
mod analysis;
mod analysis_jobs;
mod app;
mod badge;
mod commands;
mod diagnose;
pub mod distribution;
mod file_actions;
mod fixed_plot;
mod layers;
mod lecture;
mod load_job;
mod model_panel;
mod panel;
mod results_panel;
mod screen_layout;
mod selection;
mod session;
mod session_file;
mod session_transforms;
mod settings_panel;
mod slide_export;
pub mod train;
mod transforms_panel;
mod waker;

use std::path::PathBuf;

pub use app::{EXPLAIN_ZOOM, Prefs, QuantscopeApp};
pub use commands::AppCommand;
pub use diagnose::{Diagnostics, DiagnosticsCommand, bar_rects as propagation_bar_rects};
pub use layers::{LayerRow, layer_rows};
pub use lecture::{LECTURE_MODEL, Lecture, LectureStep, STEPS, StepSetup, mean_magnitude};
pub use panel::Panel;
pub use screen_layout::ScreenLayout;
pub use selection::{Part, Selection};
pub use session::Session;

/// The sample model opened when none is given (the MobileNet-style one).
pub fn bundled_sample_model() -> PathBuf {
    let relative = PathBuf::from("sample_models/digits_mobilenet.onnx");
    if relative.exists() {
        relative
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
    }
}

/// Opens the main window on `model` (the last opened file, else the bundled sample, when
/// None) and runs until it closes. Preferences persist through eframe's storage.
pub fn run_app(model: Option<PathBuf>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Quantscope")
            .with_inner_size([1280.0, 800.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "Quantscope",
        options,
        Box::new(move |cc| {
            let prefs: Prefs = cc
                .storage
                .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
                .unwrap_or_default();
            let model = model
                .or_else(|| prefs.recent.first().filter(|p| p.exists()).cloned())
                .unwrap_or_else(bundled_sample_model);
            Ok(Box::new(QuantscopeApp::with_prefs(Some(model), prefs)))
        }),
    )
    .map_err(|e| anyhow::anyhow!("could not open the window: {e}"))
}
