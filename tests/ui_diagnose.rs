//! The diagnosis views driven headless with egui_kittest on real state: the error-propagation
//! switch diagnoses the BN-folded MobileNet with per-tensor weights on a worker, its worst own
//! SQNR bars are the depthwise layers, the model list colours them, and clicking a bar selects
//! the layer; the integer-only switch on the sample CNN shows per-tensor counts with nothing
//! more than 1 LSB off and, in explain mode, one element's integer arithmetic; a real model
//! from `../shared/real_models/` gets its bars from photos, without labels. All at 1280×720.

#![cfg(feature = "ui-tests")]

#[path = "common/app.rs"]
mod app;

use app::{build, settled, wait_until};
use std::collections::HashSet;
use std::path::PathBuf;

use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use quantscope::jobs::pipeline::DataSource;
use quantscope::transform::toggles::TransformToggles;
use quantscope::ui::{AppCommand, QuantscopeApp, bundled_sample_model, propagation_bar_rects};

const DEPTHWISE: [&str; 4] = [
    "/block1/dw/Conv",
    "/block2/dw/Conv",
    "/block3/dw/Conv",
    "/block4/dw/Conv",
];

fn builder() -> egui_kittest::HarnessBuilder<QuantscopeApp> {
    Harness::builder().with_size(egui::vec2(1280.0, 720.0))
}

/// The diagnosis of the current settings has arrived.
fn diagnosed(app: &QuantscopeApp) -> bool {
    settled(app)
        && app.session().is_some_and(|s| {
            matches!(app.diagnostics.diagnosis(s), Some((true, _))) && !app.diagnostics.is_busy()
        })
}

fn opened(
    builder: egui_kittest::HarnessBuilder<QuantscopeApp>,
    model: PathBuf,
) -> Harness<'static, QuantscopeApp> {
    let mut harness = build(builder, model);
    wait_until(&mut harness, "the model to load", |app| !app.is_loading());
    assert_eq!(harness.state().error(), None);
    harness
}

fn click_at(harness: &mut Harness<'static, QuantscopeApp>, at: egui::Pos2) {
    harness.hover_at(at);
    harness.step();
    harness.drag_at(at);
    harness.step();
    harness.event(egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: egui::Modifiers::NONE,
    });
    harness.step();
    harness.step();
}

fn selected_node(app: &QuantscopeApp) -> Option<String> {
    let session = app.session()?;
    let s = session.selection?;
    session.loaded.layers.get(s.layer).map(|r| r.node.clone())
}

#[test]
fn the_folded_mobilenet_shows_its_depthwise_layers_as_the_worst_own_error_bars() {
    let mut harness = opened(builder().wgpu(), bundled_sample_model());
    wait_until(&mut harness, "calibration and evaluation", settled);
    let ctx = harness.ctx.clone();
    // BN folded, per-tensor int8 weights: the lecture's broken setting.
    let fold = TransformToggles {
        fold_bn: true,
        ..Default::default()
    };
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetTransforms(fold));
    let mut quant = harness.state().session().unwrap().config.default;
    quant.weights.as_mut().unwrap().per_channel = false;
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetDefault(quant));
    wait_until(
        &mut harness,
        "folding and the per-tensor evaluation",
        |app| {
            settled(app)
                && app.session().is_some_and(|s| {
                    !s.extras.reports.is_empty()
                        && !s
                            .loaded
                            .model
                            .graph
                            .nodes
                            .iter()
                            .any(|n| n.op_type == "BatchNormalization")
                })
        },
    );
    // No own error before the switch: the chart shows the accumulated series only.
    assert!(harness.query_by_label("own").is_none());
    harness.get_by_label("error propagation").click();
    wait_until(&mut harness, "the diagnosis from its worker", diagnosed);

    let app = harness.state();
    let session = app.session().unwrap();
    let Some((true, Ok(diagnosis))) = app.diagnostics.diagnosis(session) else {
        panic!("no current diagnosis");
    };
    let diagnosis = diagnosis.clone();
    assert_eq!(diagnosis.layers.len(), 11);
    let worst: HashSet<&str> = diagnosis.worst_first()[..4]
        .iter()
        .map(|l| l.node.as_str())
        .collect();
    assert_eq!(worst, HashSet::from(DEPTHWISE), "{:#?}", diagnosis.layers);
    // The accumulated series is the evaluation's per-layer SQNR.
    let evaluation = session.current_evaluation().unwrap();
    for l in &diagnosis.layers {
        let e = evaluation.layers.iter().find(|e| e.node == l.node).unwrap();
        assert!(
            (e.sqnr_db - l.accumulated_sqnr_db).abs() < 1e-6,
            "{}: {} vs {}",
            l.node,
            e.sqnr_db,
            l.accumulated_sqnr_db
        );
    }
    // The chart and the model list show it.
    harness.get_by_label("own");
    harness.get_by_label("own error:");
    let rects = propagation_bar_rects(&harness.ctx);
    assert_eq!(rects.len(), 11, "{rects:?}");
    harness.snapshot_options(
        "diagnose_propagation",
        &SnapshotOptions::new().threshold(2.0).max_failed_pixels(800),
    );

    // Clicking a depthwise bar selects that layer.
    let target = "/block1/dw/Conv";
    assert_ne!(selected_node(harness.state()).as_deref(), Some(target));
    let (_, rect) = rects.iter().find(|(n, _)| n == target).unwrap();
    click_at(&mut harness, rect.center());
    assert_eq!(selected_node(harness.state()).as_deref(), Some(target));
}

#[test]
fn the_integer_path_on_the_sample_cnn_is_within_one_lsb_and_explains_an_element() {
    let cnn = bundled_sample_model().with_file_name("digits_cnn.onnx");
    let mut harness = opened(builder(), cnn);
    wait_until(&mut harness, "calibration and evaluation", settled);
    harness.get_by_label("integer-only path").click();
    wait_until(&mut harness, "the integer path from its worker", |app| {
        settled(app)
            && app.session().is_some_and(|s| {
                matches!(app.diagnostics.integer(s), Some((true, _))) && !app.diagnostics.is_busy()
            })
    });
    let app = harness.state();
    let session = app.session().unwrap();
    let Some((true, Ok(comparison))) = app.diagnostics.integer(session) else {
        panic!("no current integer comparison");
    };
    let comparison = comparison.clone();
    assert!(comparison.tensors.len() >= 3, "{comparison:?}");
    for t in &comparison.tensors {
        assert!(t.elements > 0, "{}", t.layer);
        assert_eq!(t.beyond_one, 0, "{}: >1 LSB", t.layer);
    }
    // The table: headers and one row per layer.
    harness.get_by_label(">1 LSB");
    harness.get_by_label("acc bits");
    let first = comparison.tensors[0].layer.clone();
    // Explain mode: the selected layer's element in integers.
    harness.key_press(egui::Key::E);
    harness.step();
    let ctx = harness.ctx.clone();
    let layers = harness.state().session().unwrap().loaded.layers.clone();
    let row = layers.iter().position(|r| r.node == first).unwrap();
    harness.state_mut().apply(
        &ctx,
        AppCommand::Select(quantscope::ui::Selection {
            layer: row,
            part: quantscope::ui::Part::Weight,
        }),
    );
    harness.step();
    harness.step();
    assert!(harness.state().prefs.explain);
    let trace = comparison.trace(&first).unwrap();
    assert!(
        harness
            .query_by_label_contains(&format!("M0 = {}", trace.m0))
            .is_some()
    );
    assert!(
        harness
            .query_by_label_contains("q = round(x/S) + Z")
            .is_some()
    );
}

/// The PP-OCR direction classifier on photos resized to its 48×192 input: bars without labels.
#[test]
fn a_real_model_gets_its_bars_without_labels() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/real_models");
    if !root.is_dir() {
        println!("skipped: {} is absent", root.display());
        return;
    }
    let mut harness = opened(
        builder(),
        root.join("ppocr-cls/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    );
    let ctx = harness.ctx.clone();
    let source = DataSource::ImageFolder {
        dir: root.join("images"),
        preset: "-1..1,48x192".parse().unwrap(),
    };
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetSource(source.clone()));
    harness.get_by_label("error propagation").click();
    wait_until(
        &mut harness,
        "calibration, evaluation and diagnosis",
        |app| diagnosed(app) && app.session().is_some_and(|s| s.source == source),
    );
    let app = harness.state();
    let session = app.session().unwrap();
    assert_eq!(session.job_message, None);
    let Some((true, Ok(diagnosis))) = app.diagnostics.diagnosis(session) else {
        panic!("no current diagnosis");
    };
    assert!(diagnosis.layers.len() > 10, "{}", diagnosis.layers.len());
    for l in &diagnosis.layers {
        assert!(
            !l.own_sqnr_db.is_nan() && !l.accumulated_sqnr_db.is_nan(),
            "{l:?}"
        );
    }
    let rects = propagation_bar_rects(&harness.ctx);
    assert_eq!(rects.len(), diagnosis.layers.len());
}
