//! Lecture mode and projector layouts, driven headless with egui_kittest on real state: every
//! lecture step walked with the keyboard (its scheme, transforms, tensor and view set up, its
//! results arriving from the workers), rendered with wgpu at 1280×720 and 1920×1080 with
//! Explain on and compared with `tests/snapshots/lecture_*`, and at every projector size the
//! histogram keeps half the centre, nothing overlaps the plot and the formulas are in view.

#![cfg(feature = "ui-tests")]

use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use quantscope::ui::{
    EXPLAIN_ZOOM, Prefs, QuantscopeApp, STEPS, ScreenLayout, bundled_sample_model, mean_magnitude,
};

/// A hang guard for waits on workers (never reached when things work).
const HANG: Duration = Duration::from_secs(240);

fn explaining_app() -> QuantscopeApp {
    let prefs = Prefs {
        explain: true,
        ..Prefs::default()
    };
    QuantscopeApp::with_prefs(Some(bundled_sample_model()), prefs)
}

fn harness_at(size: (f32, f32), wgpu: bool) -> Harness<'static, QuantscopeApp> {
    let builder = Harness::builder().with_size(egui::vec2(size.0, size.1));
    let builder = if wgpu { builder.wgpu() } else { builder };
    builder.build_ui_state(
        |ui, app: &mut QuantscopeApp| app.show_ui(ui),
        explaining_app(),
    )
}

fn wait_until(
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
    // Layout settles over a few frames (panel sizes, the histogram's measured surroundings).
    for _ in 0..8 {
        harness.step();
    }
}

/// The step's setup is in force, evaluated, and its tensor shown.
fn step_ready(app: &QuantscopeApp, index: usize) -> bool {
    let Some(session) = app.session() else {
        return false;
    };
    let step = &STEPS[index];
    app.lecture.current == Some(index)
        && !app.is_loading()
        && session.transforms() == step.setup.transforms
        && !session.extras.is_busy()
        && session.current_evaluation().is_some()
        && !session.is_busy()
        && !session.is_preparing_view()
        && session
            .selection
            .is_some_and(|s| session.loaded.layers[s.layer].node == step.setup.node)
}

/// Checks step `index`'s setup on the app.
fn check_setup(app: &QuantscopeApp, index: usize) {
    let step = &STEPS[index];
    let session = app.session().unwrap();
    let setup = &step.setup;
    assert_eq!(
        session.config.default.weights,
        Some(setup.weights),
        "{}",
        step.title
    );
    assert_eq!(session.config.default.activations, setup.activations);
    if setup.preset.is_some() {
        let bits: Vec<u32> = session
            .config
            .layers
            .values()
            .filter_map(|l| l.weights.map(|w| w.scheme.bits()))
            .collect();
        assert!(
            bits.contains(&8) && bits.contains(&4),
            "{}: {bits:?}",
            step.title
        );
    } else {
        assert!(session.config.layers.is_empty(), "{}", step.title);
    }
    assert_eq!(session.transforms(), setup.transforms, "{}", step.title);
    let selection = session.selection.unwrap();
    assert_eq!(selection.part, setup.part, "{}", step.title);
    assert_eq!(session.loaded.layers[selection.layer].node, setup.node);
    assert_eq!(app.view().tab, setup.tab, "{}", step.title);
    assert_eq!(app.analysis.open, setup.analysis, "{}", step.title);
    // Results from the workers: the evaluation of exactly this config, and the view's data.
    let evaluation = session.current_evaluation().unwrap();
    assert!(
        evaluation
            .classification
            .as_ref()
            .is_some_and(|c| c.quant_accuracy.is_some()),
        "{}",
        step.title
    );
    assert!(
        session.distribution_input(None, true).is_some(),
        "{}: {:?}",
        step.title,
        session.view_problem()
    );
}

/// No overlap of the plot with its key or text; the histogram at least half the centre; the
/// formulas inside the centre's visible area.
fn check_layout(app: &QuantscopeApp, what: &str) {
    let centre = app.centre_rect().expect("the centre was drawn");
    let rects = app.view().rects();
    let plot = rects.plot.unwrap_or_else(|| panic!("{what}: no plot"));
    let overlaps = |other: Option<egui::Rect>| {
        other.is_some_and(|o| {
            let i = plot.intersect(o);
            i.width() > 0.5 && i.height() > 0.5
        })
    };
    assert!(
        !overlaps(rects.key),
        "{what}: key {:?} over plot {plot:?}",
        rects.key
    );
    assert!(
        !overlaps(rects.figures),
        "{what}: figures over plot: {rects:?} in the centre {centre:?}"
    );
    assert!(
        !overlaps(rects.formulas),
        "{what}: formulas over plot: {rects:?} in the centre {centre:?}"
    );
    let formulas = rects
        .formulas
        .unwrap_or_else(|| panic!("{what}: explain mode shows formulas"));
    assert!(
        formulas.bottom() <= centre.bottom() + 0.5 && formulas.right() <= centre.right() + 0.5,
        "{what}: formulas {formulas:?} outside the visible centre {centre:?}"
    );
    if app.view().tab == quantscope::ui::distribution::Tab::Histogram {
        assert!(
            plot.height() >= 0.5 * centre.height() - 0.5,
            "{what}: histogram {} px of a {} px centre",
            plot.height(),
            centre.height()
        );
    }
}

/// The Results panel keeps the height the layout gives it at `size`, whatever it shows (its
/// content scrolls), so it cannot squeeze the centre and its histogram.
fn check_results_panel(app: &QuantscopeApp, size: (f32, f32), what: &str) {
    let layout = ScreenLayout::for_screen(egui::vec2(size.0, size.1), 1.0, true, EXPLAIN_ZOOM);
    let results = app.results_rect().expect("the Results panel is shown");
    let centre = app.centre_rect().unwrap();
    assert!(
        results.height() <= layout.results_default + 0.5,
        "{what}: Results panel {} px tall, its share is {} px",
        results.height(),
        layout.results_default
    );
    assert!(
        centre.height() >= 2.0 * results.height(),
        "{what}: centre {} px over a {} px Results panel",
        centre.height(),
        results.height()
    );
}

fn snapshot_options() -> SnapshotOptions {
    SnapshotOptions::new()
        .threshold(2.0)
        .max_failed_pixels(1500)
}

/// Walks every step with the keyboard at `size`: checks the setup and the layout of each; with
/// wgpu, renders every step and compares the steps in `compared` (1-based) with their
/// committed snapshots.
fn walk(size: (f32, f32), wgpu: bool, compared: &[usize]) {
    let mut harness = harness_at(size, wgpu);
    wait_until(&mut harness, "the model to load", |app| !app.is_loading());
    let ctx = harness.ctx.clone();
    harness.state_mut().go_to_step(&ctx, 0);
    for (index, step) in STEPS.iter().enumerate() {
        wait_until(&mut harness, step.title, |app| step_ready(app, index));
        check_setup(harness.state(), index);
        let what = format!("{}×{} step {}", size.0, size.1, index + 1);
        check_layout(harness.state(), &what);
        check_results_panel(harness.state(), size, &what);
        if wgpu {
            let image = harness
                .render()
                .unwrap_or_else(|e| panic!("{what}: wgpu render failed: {e}"));
            assert_eq!(
                (image.width(), image.height()),
                (size.0 as u32, size.1 as u32),
                "{what}"
            );
            if compared.contains(&(index + 1)) {
                let name = format!("lecture_{}x{}_{:02}", size.0, size.1, index + 1);
                harness.snapshot_options(&name, &snapshot_options());
            }
        }
        // The presenter remote's key on odd steps, the arrow on even ones.
        let key = if index % 2 == 0 {
            egui::Key::ArrowRight
        } else {
            egui::Key::PageDown
        };
        harness.key_press(key);
    }
    // Past the end stays on the last step; back goes one step back, by remote and by arrow.
    harness.step();
    assert_eq!(harness.state().lecture.current, Some(STEPS.len() - 1));
    harness.key_press(egui::Key::PageUp);
    harness.step();
    assert_eq!(harness.state().lecture.current, Some(STEPS.len() - 2));
    harness.key_press(egui::Key::ArrowLeft);
    harness.step();
    assert_eq!(harness.state().lecture.current, Some(STEPS.len() - 3));
}

#[test]
fn every_step_at_1280x720_set_up_by_keyboard_laid_out_and_rendered() {
    walk((1280.0, 720.0), true, &[2, 4, 8]);
}

#[test]
fn every_step_at_1920x1080_set_up_by_keyboard_laid_out_and_rendered() {
    walk((1920.0, 1080.0), true, &[1, 5, 7]);
}

#[test]
fn every_step_at_1366x768_laid_out() {
    walk((1366.0, 768.0), false, &[]);
}

#[test]
fn side_panels_collapse_with_one_key_each_and_the_centre_grows() {
    let mut harness = harness_at((1280.0, 720.0), false);
    wait_until(&mut harness, "the model to load", |app| !app.is_loading());
    let ctx = harness.ctx.clone();
    harness.state_mut().go_to_step(&ctx, 1);
    wait_until(&mut harness, "step 2", |app| step_ready(app, 1));
    let before = harness.state().centre_rect().unwrap();
    for key in [egui::Key::M, egui::Key::S, egui::Key::B] {
        harness.key_press(key);
    }
    for _ in 0..4 {
        harness.step();
    }
    let prefs = &harness.state().prefs;
    assert!(!prefs.show_model && !prefs.show_settings && !prefs.show_results);
    let after = harness.state().centre_rect().unwrap();
    assert!(
        after.width() > before.width() + 300.0,
        "{before:?} -> {after:?}"
    );
    assert!(
        after.height() > before.height() + 50.0,
        "{before:?} -> {after:?}"
    );
    check_layout(harness.state(), "collapsed");
    // The histogram took the room.
    let plot = harness.state().view().rects().plot.unwrap();
    assert!(plot.height() >= 0.5 * after.height() - 0.5);
    harness.key_press(egui::Key::M);
    harness.step();
    assert!(harness.state().prefs.show_model);
}

#[test]
fn equalization_step_draws_the_ranges_before_as_a_ghost() {
    let mut harness = harness_at((1280.0, 720.0), false);
    wait_until(&mut harness, "the model to load", |app| !app.is_loading());
    let index = STEPS
        .iter()
        .position(|s| s.title.contains("equalization"))
        .unwrap();
    let ctx = harness.ctx.clone();
    harness.state_mut().go_to_step(&ctx, index);
    wait_until(&mut harness, "the equalization step", |app| {
        step_ready(app, index)
    });
    let app = harness.state();
    let ghost = app
        .view()
        .ghost
        .as_ref()
        .expect("a ghost of the ranges before");
    assert_eq!(ghost.tensor, "block2.dw.weight");
    // Before equalization (after folding) the channel ranges spread far more than after.
    let spread = |ranges: &[(f32, f32)]| {
        let widths: Vec<f32> = ranges.iter().map(|(lo, hi)| hi - lo).collect();
        let max = widths.iter().copied().fold(0.0, f32::max);
        let min = widths.iter().copied().fold(f32::INFINITY, f32::min);
        max / min
    };
    let session = app.session().unwrap();
    let now = session
        .distribution_input(None, true)
        .unwrap()
        .data
        .channel_ranges
        .clone();
    assert_eq!(ghost.before.len(), now.len());
    assert!(
        spread(&ghost.before) > 5.0 * spread(&now),
        "before {} after {}",
        spread(&ghost.before),
        spread(&now)
    );
    harness.get_by_label("before equalization");
}

#[test]
fn bias_correction_step_shows_the_output_shift_before_and_after() {
    let mut harness = harness_at((1280.0, 720.0), false);
    wait_until(&mut harness, "the model to load", |app| !app.is_loading());
    let index = STEPS
        .iter()
        .position(|s| s.title.contains("Bias correction"))
        .unwrap();
    let ctx = harness.ctx.clone();
    harness.state_mut().go_to_step(&ctx, index);
    wait_until(&mut harness, "the bias-correction step", |app| {
        step_ready(app, index) && app.lecture.shifts.is_some()
    });
    let app = harness.state();
    let shifts = app.lecture.shifts.as_ref().unwrap();
    assert_eq!(shifts.layer, STEPS[index].setup.node);
    assert!(shifts.before.len() > 1, "{shifts:?}");
    assert_eq!(shifts.before.len(), shifts.after.len());
    // Measured by the worker on the evaluation data, in the quantized model before and after
    // correction: the shift left is far smaller.
    let (before, after) = (
        mean_magnitude(&shifts.before),
        mean_magnitude(&shifts.after),
    );
    eprintln!(
        "{}: mean |shift| over {} channels before {before:.4e}, after {after:.4e}",
        shifts.layer,
        shifts.before.len()
    );
    assert!(
        before > 0.0 && after < 0.5 * before,
        "before {before} after {after}"
    );
    check_layout(app, "bias correction with its shift plot");
    check_results_panel(app, (1280.0, 720.0), "bias correction with its shift plot");
    harness.get_by_label_contains("before correction: ");
}

#[test]
fn slide_export_renders_the_centre_view_at_twice_the_screen_resolution() {
    let folder = tempfile::tempdir().unwrap();
    let mut harness = harness_at((1280.0, 720.0), true);
    harness.state_mut().slides.folder = folder.path().to_path_buf();
    wait_until(&mut harness, "the model to load", |app| !app.is_loading());
    let index = 3;
    let ctx = harness.ctx.clone();
    harness.state_mut().go_to_step(&ctx, index);
    wait_until(&mut harness, "step 4", |app| step_ready(app, index));
    let screen = harness.render().expect("wgpu render");
    let centre = harness.state().centre_rect().unwrap();
    let pixels_per_point = harness.ctx.pixels_per_point();
    harness.key_press(egui::Key::F12);
    wait_until(&mut harness, "the slide", |app| !app.slides.is_busy());
    assert_eq!(harness.state().error(), None);
    let path = folder.path().join("step-04.png");
    // To look at it: QUANTSCOPE_SLIDE_COPY=/tmp/slide.png.
    if let Some(copy) = std::env::var_os("QUANTSCOPE_SLIDE_COPY") {
        std::fs::copy(&path, copy).unwrap();
    }
    let slide = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8();
    let expected = (centre.size() * pixels_per_point * 2.0).round();
    assert_eq!(
        (slide.width(), slide.height()),
        (expected.x as u32, expected.y as u32),
        "centre {centre:?} at {pixels_per_point} px per point"
    );
    // Rendered at 2×, not scaled up: many 2×2 blocks are not one colour (edges of text and
    // lines fall inside them), which a pixel-doubled screenshot never has.
    let mut mixed = 0usize;
    let mut blocks = 0usize;
    for y in (0..slide.height() - 1).step_by(2) {
        for x in (0..slide.width() - 1).step_by(2) {
            let p = slide.get_pixel(x, y);
            blocks += 1;
            mixed += usize::from(
                [(1, 0), (0, 1), (1, 1)]
                    .iter()
                    .any(|(dx, dy)| slide.get_pixel(x + dx, y + dy) != p),
            );
        }
    }
    // And it is the centre view: averaged back down to 1×, it matches the window's centre.
    let left = (centre.left() * pixels_per_point).round() as u32;
    let top = (centre.top() * pixels_per_point).round() as u32;
    let mut difference = 0.0f64;
    let mut count = 0usize;
    for y in 0..slide.height() / 2 {
        for x in 0..slide.width() / 2 {
            let (sx, sy) = (left + x, top + y);
            if sx >= screen.width() || sy >= screen.height() {
                continue;
            }
            for c in 0..3 {
                let mean: f64 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                    .iter()
                    .map(|(dx, dy)| f64::from(slide.get_pixel(2 * x + dx, 2 * y + dy)[c]))
                    .sum::<f64>()
                    / 4.0;
                difference += (mean - f64::from(screen.get_pixel(sx, sy)[c])).abs();
                count += 1;
            }
        }
    }
    let difference = difference / count as f64;
    eprintln!(
        "slide {}×{}: {mixed} of {blocks} 2×2 blocks mixed; mean |slide at 1× − screen| {difference:.2} of 255",
        slide.width(),
        slide.height()
    );
    assert!(
        mixed * 50 > blocks,
        "{mixed} of {blocks} blocks mixed: scaled up?"
    );
    assert!(difference < 12.0, "the slide differs from the centre view");
    // Outside lecture mode the key writes the first free view-NN.png.
    harness.state_mut().lecture.end();
    harness.step();
    harness.key_press(egui::Key::F12);
    wait_until(&mut harness, "the second slide", |app| {
        !app.slides.is_busy()
    });
    let view = image::open(folder.path().join("view-01.png")).expect("view-01.png");
    let centre = harness.state().centre_rect().unwrap();
    let expected = (centre.size() * pixels_per_point * 2.0).round();
    assert_eq!(
        (view.width(), view.height()),
        (expected.x as u32, expected.y as u32)
    );
}
