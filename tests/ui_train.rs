//! The Train (QAT) window driven headless with egui_kittest on real state: a short run on the
//! sample CNN at 2-bit weights grows its curves, "Use trained model" makes the trained model
//! the session's (Results re-evaluate it at the run's held-out accuracy, exports and the
//! session file carry it), and a second run is cancelled without touching the session. On a
//! real model without labels (PP-OCR's direction classifier) the window says why it cannot
//! train, and trains towards the float model's classes when asked.

#![cfg(feature = "ui-tests")]

#[path = "common/app.rs"]
mod app;

use app::{calibrated, settled, wait_until};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use quantscope::ir::{Graph, TensorData};
use quantscope::jobs::pipeline::DataSource;
use quantscope::quant::{LayerQuant, WeightQuant};
use quantscope::ui::train::TrainState;
use quantscope::ui::{AppCommand, QuantscopeApp};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn build(model: PathBuf) -> Harness<'static, QuantscopeApp> {
    let mut builder = Harness::builder().with_size(egui::vec2(1280.0, 800.0));
    if std::env::var_os("QUANTSCOPE_TRAIN_SHOT").is_some() {
        builder = builder.wgpu();
    }
    builder.build_ui_state(
        |ui, app: &mut QuantscopeApp| app.show_ui(ui),
        QuantscopeApp::new(Some(model)),
    )
}

fn opened(model: PathBuf) -> Harness<'static, QuantscopeApp> {
    let mut harness = build(model);
    wait_until(&mut harness, "the model to load", |app| !app.is_loading());
    assert_eq!(harness.state().error(), None);
    harness
}

/// Saves a picture of the window when `QUANTSCOPE_TRAIN_SHOT` names a folder (to look at).
fn shot(harness: &mut Harness<'static, QuantscopeApp>, name: &str) {
    if let Some(dir) = std::env::var_os("QUANTSCOPE_TRAIN_SHOT") {
        let image = harness.render().expect("a wgpu render");
        image
            .save(PathBuf::from(dir).join(format!("{name}.png")))
            .unwrap();
    }
}

/// The initializers' values by name.
fn values(graph: &Graph) -> BTreeMap<String, TensorData> {
    graph
        .initializers
        .iter()
        .map(|(name, t)| (name.clone(), t.data.clone()))
        .collect()
}

fn quant_accuracy(app: &QuantscopeApp) -> f64 {
    let session = app.session().unwrap();
    session
        .current_evaluation()
        .unwrap()
        .quant_accuracy()
        .unwrap()
}

#[test]
fn trains_the_sample_cnn_uses_the_trained_model_and_cancels_a_second_run() {
    let mut harness = opened(repo("sample_models/digits_cnn.onnx"));
    let ctx = harness.ctx.clone();
    // 2-bit weights, float activations: PTQ loses much of the accuracy.
    let int2 = LayerQuant {
        weights: Some(WeightQuant {
            scheme: "int2".parse().unwrap(),
            per_channel: true,
        }),
        activations: None,
    };
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetDefault(int2));
    wait_until(&mut harness, "the int2 evaluation", settled);
    let ptq = quant_accuracy(harness.state());
    let before = harness.state().session().unwrap().loaded.model.clone();

    harness.get_by_label("Train (QAT)").click();
    {
        let settings = &mut harness.state_mut().train.settings;
        settings.epochs = 3;
        settings.max_samples = 384;
        settings.learning_rate = 3e-3;
    }
    wait_until(&mut harness, "the window", |_| true);
    harness.get_by_label_contains("weights int2 per-channel");
    harness.get_by_label_contains("training split digits_train.npz");
    harness.get_by_label("Start training").click();
    wait_until(&mut harness, "the first epoch", |app| {
        !app.train.job.curve.points.is_empty()
    });
    assert!(
        harness.state().train.job.is_running()
            || harness.state().train.job.state == TrainState::Done
    );
    wait_until(&mut harness, "the run", |app| !app.train.job.is_running());
    let job = &harness.state().train.job;
    assert_eq!(job.state, TrainState::Done, "{:?}", job.state);
    let points = &job.curve.points;
    assert_eq!(points.len(), 3, "one point per epoch");
    assert!(
        points.last().unwrap().train_loss < points[0].train_loss,
        "the loss falls: {points:?}"
    );
    let result = &job.trained.as_ref().unwrap().result;
    let (float, ptq_run, qat) = (
        result.float_accuracy.unwrap(),
        result.ptq_accuracy.unwrap(),
        result.qat_accuracy.unwrap(),
    );
    assert!(
        (ptq_run - ptq).abs() < 1e-9,
        "the run's PTQ {ptq_run} is the Results' {ptq}"
    );
    assert!(qat > ptq + 0.1, "QAT {qat} vs PTQ {ptq} (float {float})");
    assert_eq!(job.curve.ptq_accuracy, Some(ptq_run));
    shot(&mut harness, "train_window_done");
    // The session's model stays until the user takes the trained one.
    assert!(Arc::ptr_eq(
        &before,
        &harness.state().session().unwrap().loaded.model
    ));

    harness.get_by_label("Use trained model").click();
    wait_until(&mut harness, "the trained model's evaluation", |app| {
        settled(app) && app.session().unwrap().trained.is_some()
    });
    let session = harness.state().session().unwrap();
    let trained_graph = &harness
        .state()
        .train
        .job
        .trained
        .as_ref()
        .unwrap()
        .result
        .graph;
    assert_eq!(values(&session.loaded.model.graph), values(trained_graph));
    let used = quant_accuracy(harness.state());
    assert!(
        (used - qat).abs() <= 2.0 / 540.0,
        "Results {used} vs the run's held-out {qat}"
    );
    let shown = format!("{:.2} %", 100.0 * used);
    assert!(
        harness.get_all_by_label(&shown).next().is_some(),
        "Results show {shown}"
    );
    let trained_model = session.loaded.model.clone();
    let revision = session.revision;

    // Exports and the session file carry the trained model.
    let dir = tempfile::tempdir().unwrap();
    let baked = dir.path().join("trained_baked.onnx");
    harness.state_mut().apply(
        &ctx,
        AppCommand::ExportTo(quantscope::export::ExportFormat::Baked, baked.clone()),
    );
    wait_until(&mut harness, "the export", |app| {
        !app.session().unwrap().is_busy()
    });
    let exported = quantscope::load::load_model(&baked).unwrap();
    assert_eq!(exported.graph.nodes.len(), trained_model.graph.nodes.len());
    let saved = dir.path().join("lab.json");
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SaveSessionTo(saved.clone()));
    assert_eq!(harness.state().error(), None);
    assert!(dir.path().join("lab.trained.onnx").exists());

    // A second, long run is cancelled: the trained model stays.
    harness.state_mut().train.settings.epochs = 200;
    harness.get_by_label("Start training").click();
    wait_until(&mut harness, "the second run to progress", |app| {
        app.train.job.progress().is_some_and(|p| p > 0.0)
    });
    harness.get_by_label("Cancel").click();
    wait_until(&mut harness, "the cancellation", |app| {
        !app.train.job.is_running()
    });
    assert_eq!(harness.state().train.job.state, TrainState::Cancelled);
    harness.get_by_label_contains("Cancelled");
    let session = harness.state().session().unwrap();
    assert!(Arc::ptr_eq(&trained_model, &session.loaded.model));
    assert_eq!(session.revision, revision);

    // Reopening the session shows the trained model again.
    let mut reopened = opened(repo("sample_models/digits_cnn.onnx"));
    let ctx = reopened.ctx.clone();
    reopened
        .state_mut()
        .apply(&ctx, AppCommand::OpenSessionFrom(saved));
    wait_until(&mut reopened, "the saved session", |app| {
        !app.is_loading() && settled(app) && app.session().unwrap().trained.is_some()
    });
    let session = reopened.state().session().unwrap();
    assert_eq!(
        values(&session.loaded.model.graph),
        values(&trained_model.graph)
    );
    assert_eq!(session.config, harness.state().session().unwrap().config);
    let reopened_accuracy = quant_accuracy(reopened.state());
    assert!((reopened_accuracy - used).abs() < 1e-9);
}

#[test]
fn a_real_classifier_without_labels_says_so_then_trains_towards_the_float_model() {
    let model = repo("../shared/real_models/ppocr-cls/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    if !model.exists() {
        eprintln!("skipped: {} is not here", model.display());
        return;
    }
    let mut harness = opened(model);
    // Its height and width are free: synthetic inputs calibrate it at 224x224.
    wait_until(&mut harness, "calibration on synthetic inputs", calibrated);
    // The Data line says which size those inputs have.
    harness.get_by_label("Using: synthetic inputs (no labels; free image sizes at 224x224)");
    harness.state_mut().train.open = true;
    wait_until(&mut harness, "the window", |_| true);
    harness.get_by_label_contains("the data source is synthetic inputs");
    assert!(
        harness
            .get_by_label("Start training")
            .accesskit_node()
            .is_disabled()
    );

    let ctx = harness.ctx.clone();
    let feed = repo("tests/fixtures/real_models/feeds/ch_ppocr_mobile_v2.0_cls_infer.npz");
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetSource(DataSource::File(feed)));
    wait_until(&mut harness, "calibration on the feed", calibrated);
    harness.get_by_label_contains("has no labels");
    assert!(
        harness
            .get_by_label("Start training")
            .accesskit_node()
            .is_disabled()
    );
    shot(&mut harness, "train_window_no_labels");

    harness
        .get_by_label("from the float model when the data has none")
        .click();
    {
        let settings = &mut harness.state_mut().train.settings;
        settings.epochs = 1;
        settings.batch_size = 4;
    }
    wait_until(&mut harness, "the plan", |_| true);
    harness.get_by_label_contains("the float model's top-1");
    harness.get_by_label("Start training").click();
    wait_until(&mut harness, "the run", |app| !app.train.job.is_running());
    let job = &harness.state().train.job;
    assert_eq!(job.state, TrainState::Done, "{:?}", job.state);
    assert_eq!(job.curve.points.len(), 1);
    assert!(job.curve.points[0].train_loss.is_finite());
}
