//! Helpers shared by the app's headless tests (egui_kittest): a harness on a model, stepping
//! frames until a condition holds, and the session states the tests wait for.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui_kittest::{Harness, HarnessBuilder};
use quantscope::ui::QuantscopeApp;

/// A hang guard for waits on workers (never reached when things work).
pub const HANG: Duration = Duration::from_secs(300);

/// The app on `model`, drawn by `builder` (its size and renderer).
pub fn build(
    builder: HarnessBuilder<QuantscopeApp>,
    model: PathBuf,
) -> Harness<'static, QuantscopeApp> {
    builder.build_ui_state(
        |ui, app: &mut QuantscopeApp| app.show_ui(ui),
        QuantscopeApp::new(Some(model)),
    )
}

/// The app on `model` at 1280×800, stepped until the model has loaded.
pub fn opened_at_1280x800(model: PathBuf) -> Harness<'static, QuantscopeApp> {
    let mut harness = build(
        Harness::builder().with_size(egui::vec2(1280.0, 800.0)),
        model,
    );
    wait_until(&mut harness, "the model to load", |app| !app.is_loading());
    harness
}

/// Steps frames until `done` holds, then two more (one applies, one draws).
pub fn wait_until(
    harness: &mut Harness<'static, QuantscopeApp>,
    what: &str,
    done: impl Fn(&QuantscopeApp) -> bool,
) {
    let start = Instant::now();
    harness.step();
    while !done(harness.state()) {
        assert!(start.elapsed() < HANG, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(10));
        harness.step();
    }
    harness.step();
    harness.step();
}

/// The current settings are evaluated and nothing of the session is running.
pub fn settled(app: &QuantscopeApp) -> bool {
    app.session()
        .is_some_and(|s| s.current_evaluation().is_some() && !s.is_busy() && !s.is_preparing_view())
}

/// The session's data has loaded and been calibrated.
pub fn calibrated(app: &QuantscopeApp) -> bool {
    app.session()
        .is_some_and(|s| s.data.is_some() && s.calibration.is_some())
}
