//! The app driven headless with egui_kittest on real state: it opens the sample MobileNet,
//! calibrates and evaluates it on workers, shows a depthwise layer's weights, switches the
//! scheme to ternary and sees the results follow, cancels an evaluation, reports a broken file
//! without losing its state, and greys inference for a weights-only file. Snapshot tests
//! render the main views with wgpu (software Vulkan) and compare with `tests/snapshots/`.

#![cfg(feature = "ui-tests")]

#[path = "common/hostile.rs"]
mod hostile;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::{Harness, SnapshotOptions};
use quantscope::quant::WeightScheme;
use quantscope::ui::{Part, QuantscopeApp, bundled_sample_model};

/// A hang guard for waits on workers (never reached when things work).
const HANG: Duration = Duration::from_secs(180);

fn builder() -> egui_kittest::HarnessBuilder<QuantscopeApp> {
    Harness::builder().with_size(egui::vec2(1280.0, 800.0))
}

fn build(
    builder: egui_kittest::HarnessBuilder<QuantscopeApp>,
    model: PathBuf,
) -> Harness<'static, QuantscopeApp> {
    builder.build_ui_state(
        |ui, app: &mut QuantscopeApp| app.show_ui(ui),
        QuantscopeApp::new(Some(model)),
    )
}

/// Steps frames until `done` holds.
fn wait_until(
    harness: &mut Harness<'static, QuantscopeApp>,
    what: &str,
    done: impl Fn(&QuantscopeApp) -> bool,
) {
    let start = Instant::now();
    // At least one frame first, so that input given before the wait has been applied.
    harness.step();
    while !done(harness.state()) {
        assert!(start.elapsed() < HANG, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(10));
        harness.step();
    }
    frames(harness);
}

/// Two frames: one applies what the last input asked for, the next draws the result. (Not
/// `Harness::run`, which fails while a worker's progress bar animates.)
fn frames(harness: &mut Harness<'static, QuantscopeApp>) {
    harness.step();
    harness.step();
}

/// Whether the current settings have been evaluated and nothing is running.
fn settled(app: &QuantscopeApp) -> bool {
    app.session()
        .is_some_and(|s| s.current_evaluation().is_some() && !s.is_busy() && !s.is_preparing_view())
}

fn opened(model: PathBuf) -> Harness<'static, QuantscopeApp> {
    let mut harness = build(builder(), model);
    wait_until(&mut harness, "the model to load", |app| !app.is_loading());
    harness
}

fn mobilenet_evaluated() -> Harness<'static, QuantscopeApp> {
    let mut harness = opened(bundled_sample_model());
    assert_eq!(harness.state().error(), None);
    wait_until(&mut harness, "calibration and evaluation", settled);
    harness
}

#[test]
fn opens_mobilenet_evaluates_it_and_shows_a_depthwise_weight() {
    let mut harness = mobilenet_evaluated();
    let session = harness.state().session().unwrap();
    let evaluation = session.current_evaluation().unwrap();
    let (float, quant) = (
        evaluation.float_accuracy().unwrap(),
        evaluation.quant_accuracy().unwrap(),
    );
    assert!(float > 0.9, "float accuracy {float}");
    assert!(
        (float - quant).abs() < 0.03,
        "int8 {quant} vs float {float}"
    );
    // The figures are on screen.
    harness.get_by_label("quantized accuracy");
    let shown = format!("{:.2} %", 100.0 * quant);
    assert!(
        harness.get_all_by_label(&shown).next().is_some(),
        "{shown} is shown"
    );

    harness
        .get_by_label("W block2.dw.weight [32, 1, 3, 3]")
        .click();
    wait_until(
        &mut harness,
        "the depthwise weight's view and figures",
        settled,
    );
    let session = harness.state().session().unwrap();
    let (tensor, is_weight, node) = session.selected_tensor().unwrap();
    assert_eq!(tensor, "block2.dw.weight");
    assert!(is_weight, "{node}");
    let input = session
        .distribution_input(None, false)
        .unwrap_or_else(|| panic!("no view data: {:?}", session.view_problem()));
    assert_eq!(input.tensor.name, "block2.dw.weight");
    assert_eq!(
        input.data.channel_ranges.len(),
        32,
        "one range per depthwise channel"
    );
    assert!(!input.clip_is_manual);
    let exact = session
        .exact_figures()
        .expect("exact figures of the shown weight");
    let (per_tensor, per_channel) = (
        exact.per_tensor_sqnr_db.unwrap(),
        exact.per_channel_sqnr_db.unwrap(),
    );
    assert!(per_channel >= per_tensor, "{per_channel} vs {per_tensor}");
    harness.get_by_label("block2.dw.weight");
}

#[test]
fn switching_to_ternary_updates_the_results() {
    let mut harness = mobilenet_evaluated();
    let before = harness.state().session().unwrap();
    let revision = before.revision;
    let int8 = before.current_evaluation().unwrap().clone();

    harness.get_by_label("scheme").click();
    frames(&mut harness);
    harness.get_by_label("ternary").click();
    frames(&mut harness);
    let session = harness.state().session().unwrap();
    assert_eq!(
        session.config.default.weights.unwrap().scheme,
        WeightScheme::Ternary { ttq: false }
    );
    assert!(session.revision > revision);
    // The int8 results are still there but no longer current.
    assert!(session.current_evaluation().is_none());
    harness.get_by_label_contains("stale:");

    wait_until(&mut harness, "the ternary evaluation", settled);
    let ternary = harness
        .state()
        .session()
        .unwrap()
        .current_evaluation()
        .unwrap()
        .clone();
    let (ternary_cost, int8_cost) = (ternary.cost.unwrap(), int8.cost.unwrap());
    assert!(
        ternary_cost.size_bytes < 0.75 * int8_cost.size_bytes,
        "{} vs {}",
        ternary_cost.size_bytes,
        int8_cost.size_bytes
    );
    let agreement =
        |e: &quantscope::jobs::pipeline::Evaluation| e.classification.as_ref().unwrap().agreement;
    assert!(agreement(&ternary) < agreement(&int8));
    let total = |e: &quantscope::jobs::pipeline::Evaluation| {
        e.layers.iter().map(|l| l.sqnr_db).sum::<f64>()
    };
    assert!(total(&ternary) < total(&int8));
    assert!(harness.query_by_label_contains("stale:").is_none());
}

#[test]
fn ticking_quantize_graph_outputs_requantizes_the_output_and_reevaluates() {
    let mut harness = mobilenet_evaluated();
    let before = harness.state().session().unwrap();
    let output = before.loaded.model.graph.outputs[0].name.clone();
    let plain = before.current_evaluation().unwrap().clone();
    assert!(!plain.activations.iter().any(|a| a.tensor == output));

    harness.get_by_label("quantize graph outputs").click();
    frames(&mut harness);
    assert!(harness.state().session().unwrap().config.quantize_outputs);
    wait_until(
        &mut harness,
        "the evaluation with the output quantized",
        settled,
    );
    let session = harness.state().session().unwrap();
    let quantized = session.current_evaluation().unwrap();
    assert!(quantized.activations.iter().any(|a| a.tensor == output));
    let sqnr = |e: &quantscope::jobs::pipeline::Evaluation| e.outputs[0].sqnr_db;
    assert_ne!(sqnr(quantized), sqnr(&plain), "the output's error moved");
}

#[test]
fn an_evaluation_can_be_started_and_cancelled() {
    let mut harness = mobilenet_evaluated();
    let shown = harness
        .state()
        .session()
        .unwrap()
        .evaluation
        .clone()
        .unwrap();
    harness.get_by_label("Evaluate").click();
    // The click's frame requests the evaluation and starts it after its commands; the next
    // frame draws its progress bar and Cancel (results are only taken after a frame's
    // commands, so a click on that Cancel always wins).
    harness.step();
    harness.step();
    harness.get_by_label("Cancel").click();
    harness.step();
    let session = harness.state().session().unwrap();
    assert!(!session.is_busy(), "cancel stops the evaluation");
    assert_eq!(session.job_message.as_deref(), Some("cancelled"));
    // The earlier results of the same revision stay; nothing half-done replaced them.
    let (revision, evaluation) = session.evaluation.clone().unwrap();
    assert_eq!(revision, shown.0);
    assert!(std::sync::Arc::ptr_eq(&evaluation, &shown.1));
    frames(&mut harness);
    harness.get_by_label("cancelled");
}

#[test]
fn a_broken_file_reports_an_error_and_keeps_the_open_model() {
    let mut harness = mobilenet_evaluated();
    harness
        .get_by_label("W block1.pw.weight [32, 16, 1, 1]")
        .click();
    frames(&mut harness);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.onnx");
    std::fs::write(&path, b"not a model").unwrap();
    harness.state_mut().request_open(path);
    wait_until(&mut harness, "the broken file", |app| !app.is_loading());
    let error = harness.state().error().expect("an error is shown");
    assert!(error.contains("broken.onnx"), "{error}");
    harness.get_by_label(error);
    let session = harness.state().session().expect("the open model stays");
    assert!(
        session
            .loaded
            .summary
            .path
            .ends_with("digits_mobilenet.onnx")
    );
    assert_eq!(session.selected_tensor().unwrap().0, "block1.pw.weight");
    assert!(session.current_evaluation().is_some());
}

/// Hostile files opened from the GUI (a model declaring 2^40 weights over 64 bytes, a data
/// file declaring 2^31 samples over 128 KiB, a session that is not JSON, a session naming the
/// hostile model) each show one error naming the file; the open model, its settings, its
/// data source and its results stay.
#[test]
fn hostile_files_opened_from_the_gui_keep_the_model_and_the_session() {
    use quantscope::ui::AppCommand;
    use quantscope::workflow::DataSource;
    let mut harness = mobilenet_evaluated();
    let ctx = harness.ctx.clone();
    let (config, source) = {
        let session = harness.state().session().unwrap();
        (session.config.clone(), session.source.clone())
    };
    let unchanged = |app: &QuantscopeApp| {
        let session = app.session().expect("the open model stays");
        assert!(
            session
                .loaded
                .summary
                .path
                .ends_with("digits_mobilenet.onnx")
        );
        assert_eq!(session.config, config);
        assert!(session.current_evaluation().is_some() || session.is_busy());
    };
    let dir = tempfile::tempdir().unwrap();

    let model = hostile::write(
        dir.path(),
        "huge.onnx",
        &hostile::hostile_dims_model(&[1 << 20, 1 << 20], vec![0u8; 64]),
    );
    harness.state_mut().request_open(model.clone());
    wait_until(&mut harness, "the hostile model", |app| !app.is_loading());
    let error = harness.state().error().expect("an error is shown");
    assert!(
        error.contains("huge.onnx") && !error.contains('\n'),
        "{error}"
    );
    unchanged(harness.state());
    assert_eq!(harness.state().session().unwrap().source, source);

    let session = hostile::write(
        dir.path(),
        "broken.qsession",
        b"{\"version\": 1, \"model\":",
    );
    harness
        .state_mut()
        .apply(&ctx, AppCommand::OpenSessionFrom(session));
    frames(&mut harness);
    let error = harness.state().error().expect("an error is shown");
    assert!(error.contains("broken.qsession"), "{error}");
    unchanged(harness.state());

    let session = hostile::write(
        dir.path(),
        "hostile.qsession",
        hostile::session_text(&model).as_bytes(),
    );
    harness
        .state_mut()
        .apply(&ctx, AppCommand::OpenSessionFrom(session));
    wait_until(&mut harness, "the session's hostile model", |app| {
        !app.is_loading()
    });
    let error = harness.state().error().expect("an error is shown");
    assert!(error.contains("huge.onnx"), "{error}");
    unchanged(harness.state());

    let data = hostile::write(
        dir.path(),
        "huge.npy",
        &hostile::npy_bytes("<f4", "(2147483648, 1, 8, 8)", &vec![0u8; 128 << 10]),
    );
    let hostile_source = DataSource::File(data);
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetSource(hostile_source.clone()));
    wait_until(&mut harness, "the hostile data", |app| {
        app.session()
            .is_some_and(|s| !s.is_busy() && s.job_message.is_some())
    });
    let session = harness.state().session().unwrap();
    let message = session.job_message.clone().unwrap();
    assert!(
        message.contains("huge.npy") && !message.contains('\n'),
        "{message}"
    );
    assert_eq!(session.config, config);
    assert!(
        session
            .loaded
            .summary
            .path
            .ends_with("digits_mobilenet.onnx")
    );
}

#[test]
fn a_weights_only_file_shows_its_weights_and_greys_inference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.npz");
    let weight = ndarray::Array4::<f32>::from_shape_fn((8, 4, 3, 3), |(o, i, y, x)| {
        ((o * 36 + i * 9 + y * 3 + x) as f32 * 0.37).sin() * (1.0 + o as f32)
    });
    let data = quantscope::ir::TensorData::F32(weight.into_dyn());
    quantscope::load::write_npz(&path, &[("conv1.weight", &data)]).unwrap();
    let mut harness = opened(path);
    assert_eq!(harness.state().error(), None);
    wait_until(&mut harness, "the weight's view", |app| {
        app.session()
            .is_some_and(|s| s.distribution_input(None, false).is_some())
    });
    let session = harness.state().session().unwrap();
    let reason = session
        .inference_unavailable()
        .expect("inference is unavailable");
    assert!(reason.contains("weights only"), "{reason}");
    assert_eq!(session.selected_tensor().unwrap().0, "conv1.weight");
    harness.get_by_label_contains("inference unavailable");
    assert!(
        harness
            .get_by_label("Evaluate")
            .accesskit_node()
            .is_disabled()
    );
    assert!(session.current_evaluation().is_none() && !session.is_busy());
}

#[test]
fn keys_step_through_layers_and_toggle_explain_mode() {
    let mut harness = mobilenet_evaluated();
    let first = harness.state().session().unwrap().selection.unwrap();
    assert_eq!(first.part, Part::Weight);
    harness.key_press(egui::Key::J);
    frames(&mut harness);
    let next = harness.state().session().unwrap().selection.unwrap();
    assert!(next.layer > first.layer && next.part == Part::Weight);
    harness.key_press(egui::Key::K);
    frames(&mut harness);
    assert_eq!(harness.state().session().unwrap().selection, Some(first));
    assert!(!harness.state().prefs.explain);
    harness.key_press(egui::Key::E);
    frames(&mut harness);
    assert!(harness.state().prefs.explain);
    // Explain zooms in as far as the window keeps room for the centre view (1280×800: ~1.08).
    assert!(harness.ctx.zoom_factor() > 1.05);
}

/// Snapshot tolerance: text anti-aliasing differs a little between GPUs and drivers.
fn snapshot_options() -> SnapshotOptions {
    SnapshotOptions::new().threshold(2.0).max_failed_pixels(800)
}

#[test]
fn snapshot_of_the_main_window() {
    let mut harness = build(builder().wgpu(), bundled_sample_model());
    wait_until(&mut harness, "loading", |app| !app.is_loading());
    wait_until(&mut harness, "calibration and evaluation", settled);
    harness.snapshot_options("main_window", &snapshot_options());
}

/// The depthwise weight with the widest per-channel range spread of the shown model.
fn widest_depthwise_spread(app: &QuantscopeApp) -> f32 {
    let session = app.session().unwrap();
    session
        .loaded
        .summary
        .tensors
        .iter()
        .filter(|t| t.name.contains("dw") && t.role == "weight")
        .filter_map(|t| t.channel_range_spread)
        .fold(0.0, f32::max)
}

fn quantized_accuracy(app: &QuantscopeApp) -> f64 {
    let evaluation = app.session().unwrap().current_evaluation().unwrap();
    evaluation.quant_accuracy().unwrap()
}

#[test]
fn folding_breaks_per_tensor_int8_and_equalization_fixes_it() {
    use quantscope::transform::toggles::TransformToggles;
    use quantscope::ui::AppCommand;
    let mut harness = mobilenet_evaluated();
    let ctx = harness.ctx.clone();
    // Per-tensor int8 weights, uint8 activations: the lecture's setting.
    let mut quant = harness.state().session().unwrap().config.default;
    quant.weights.as_mut().unwrap().per_channel = false;
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetDefault(quant));
    wait_until(&mut harness, "the per-tensor evaluation", settled);
    let unfolded_spread = widest_depthwise_spread(harness.state());

    let fold = TransformToggles {
        fold_bn: true,
        ..Default::default()
    };
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetTransforms(fold));
    wait_until(&mut harness, "folding and its evaluation", |app| {
        settled(app) && !app.session().unwrap().extras.reports.is_empty()
    });
    let session = harness.state().session().unwrap();
    assert!(
        !session
            .loaded
            .model
            .graph
            .nodes
            .iter()
            .any(|n| n.op_type == "BatchNormalization")
    );
    let report = &session.extras.reports[0];
    assert_eq!(report.transform, "BN folding");
    assert!(!report.applied.is_empty());
    let folded_spread = widest_depthwise_spread(harness.state());
    let folded_accuracy = quantized_accuracy(harness.state());
    assert!(
        folded_spread > 100.0 && folded_spread > 10.0 * unfolded_spread,
        "folding should blow up a depthwise layer's channel ranges: {unfolded_spread} -> {folded_spread}"
    );
    // The settings panel says what folding did.
    harness.get_by_label(&format!(
        "BN folding: {} applied, {} skipped",
        report.applied.len(),
        report.skipped.len()
    ));

    let fold_and_equalize = TransformToggles {
        equalize: true,
        ..fold
    };
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetTransforms(fold_and_equalize));
    wait_until(&mut harness, "equalization and its evaluation", |app| {
        settled(app) && app.session().unwrap().extras.reports.len() == 2
    });
    let equalized_spread = widest_depthwise_spread(harness.state());
    let equalized_accuracy = quantized_accuracy(harness.state());
    assert!(
        equalized_spread < 10.0,
        "equalization should even out the channel ranges: {equalized_spread}"
    );
    assert!(
        equalized_accuracy > folded_accuracy + 0.5,
        "CLE should recover per-tensor int8: folded {folded_accuracy}, equalized {equalized_accuracy}"
    );
}

#[test]
fn exports_a_qdq_model_and_reopens_a_saved_session() {
    use quantscope::transform::toggles::{BiasCorrection, TransformToggles};
    use quantscope::ui::AppCommand;
    use quantscope::ui::distribution::DistributionCommand;
    let dir = tempfile::tempdir().unwrap();
    let mut harness = mobilenet_evaluated();
    let ctx = harness.ctx.clone();
    let toggles = TransformToggles {
        fold_bn: true,
        equalize: true,
        absorb_bias: false,
        bias_correction: BiasCorrection::Empirical,
    };
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetTransforms(toggles));
    wait_until(&mut harness, "the transforms", |app| {
        settled(app) && app.session().unwrap().extras.reports.len() == 2
    });
    // A manual clip range on the shown tensor.
    harness.state_mut().apply(
        &ctx,
        AppCommand::Distribution(DistributionCommand::SetClip { lo: -0.5, hi: 0.5 }),
    );
    wait_until(&mut harness, "the manual range's evaluation", settled);
    let config = harness.state().session().unwrap().config.clone();
    assert!(
        !config.weight_ranges.is_empty() || !config.activation_ranges.is_empty(),
        "the clip range is kept as a manual range"
    );

    let qdq = dir.path().join("mobilenet_qdq.onnx");
    harness.state_mut().apply(
        &ctx,
        AppCommand::ExportTo(quantscope::export::ExportFormat::Qdq, qdq.clone()),
    );
    wait_until(&mut harness, "the export", |app| {
        !app.session().unwrap().is_busy()
    });
    let message = harness.state().session().unwrap().extras.message.clone();
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.starts_with("exported")),
        "{message:?}"
    );
    let exported = quantscope::load::load_model(&qdq).unwrap();
    assert!(
        exported
            .graph
            .nodes
            .iter()
            .any(|n| n.op_type == "QuantizeLinear")
    );

    let saved = dir.path().join("session.json");
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SaveSessionTo(saved.clone()));
    assert_eq!(harness.state().error(), None);

    let mut reopened = build(builder(), bundled_sample_model());
    wait_until(&mut reopened, "the model to load", |app| !app.is_loading());
    let ctx = reopened.ctx.clone();
    reopened
        .state_mut()
        .apply(&ctx, AppCommand::OpenSessionFrom(saved));
    wait_until(&mut reopened, "the session and its transforms", |app| {
        !app.is_loading() && settled(app) && app.session().unwrap().extras.reports.len() == 2
    });
    let session = reopened.state().session().unwrap();
    assert_eq!(session.config, config);
    assert_eq!(session.transforms(), toggles);
}

#[test]
fn the_analysis_window_computes_the_paper_table_and_applies_a_bit_allocation() {
    let mut harness = mobilenet_evaluated();
    harness.state_mut().analysis.open = true;
    frames(&mut harness);
    harness.get_by_label("Compute the table").click();
    wait_until(&mut harness, "the paper's table", |app| {
        !app.analysis.is_busy()
    });
    harness.get_by_label("BN folded, per-tensor");
    harness.get_by_label("+ CLE");
    harness.get_by_label("BN folded, per-channel");
    assert_eq!(
        harness.query_all_by_label_contains("/540").count(),
        7,
        "one 'correct' cell per row"
    );

    harness.get_by_label("Mixed precision").click();
    frames(&mut harness);
    harness
        .get_by_label("Analyse sensitivity and allocate bits")
        .click();
    wait_until(&mut harness, "sensitivity and allocation", |app| {
        !app.analysis.is_busy()
    });
    harness.get_by_label_contains("chosen:");
    assert!(harness.state().session().unwrap().config.layers.is_empty());
    harness.get_by_label("Apply this allocation").click();
    wait_until(&mut harness, "the allocation's evaluation", settled);
    let config = &harness.state().session().unwrap().config;
    assert!(
        !config.layers.is_empty(),
        "per-layer weight bits were applied"
    );
    let widths: std::collections::BTreeSet<u32> = config
        .layers
        .values()
        .filter_map(|l| l.weights.map(|w| w.scheme.bits()))
        .collect();
    assert!(widths.iter().all(|b| [8, 4, 2].contains(b)), "{widths:?}");
}

/// A zoo model that declares batch 1 (YuNet, 640×640, 12 outputs) calibrates and evaluates in
/// the app on a folder of photos with a BGR 0..255 preset, one image per run.
#[test]
fn the_app_calibrates_and_evaluates_a_declared_batch_one_detector_on_photos() {
    use quantscope::jobs::pipeline::DataSource;
    use quantscope::ui::AppCommand;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/real_models");
    if !root.is_dir() {
        println!("skipped: {} is absent", root.display());
        return;
    }
    let mut harness = opened(root.join("yunet/yunet_s_640_640.onnx"));
    assert_eq!(harness.state().error(), None);
    let ctx = harness.ctx.clone();
    let source = DataSource::ImageFolder {
        dir: root.join("images"),
        preset: "bgr,0..255".parse().unwrap(),
    };
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetSource(source.clone()));
    wait_until(
        &mut harness,
        "calibration and evaluation on photos",
        |app| settled(app) && app.session().is_some_and(|s| s.source == source),
    );
    let session = harness.state().session().unwrap();
    assert_eq!(session.job_message, None);
    let calibration = session.calibration.as_ref().unwrap();
    assert_eq!((calibration.samples, calibration.batch.size), (6, 1));
    let evaluation = session.current_evaluation().unwrap();
    assert_eq!(evaluation.outputs.len(), 12);
    assert!(evaluation.classification.is_none());
    assert!(evaluation.worst_output_sqnr_db().unwrap() > 5.0);
    assert!(harness.query_by_label_contains("worst output").is_some());
    assert!(
        harness
            .query_by_label_contains("chunks of 1 sample")
            .is_some()
    );
}
