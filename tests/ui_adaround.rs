//! AdaRound and weight calibration in the app, driven headless with egui_kittest on real
//! state (the sample MobileNet at int4): the Analysis window learns the rounding, "Apply to
//! session" puts it in the config and the Results follow, the settings panel shows it and
//! drops it (by hand, or with a message when the bits change); switching the weights' range
//! method to MSE at int4 per tensor narrows the shown weight's range and raises its SQNR.

#![cfg(feature = "ui-tests")]

#[path = "common/app.rs"]
mod app;

use app::{opened_at_1280x800 as opened, wait_until};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use quantscope::calib::Method;
use quantscope::quant::{LayerQuant, WeightQuant, WeightScheme};
use quantscope::ui::{AppCommand, QuantscopeApp, bundled_sample_model};

fn frames(harness: &mut Harness<'static, QuantscopeApp>) {
    harness.step();
    harness.step();
}

/// The current settings are evaluated (with the shown tensor's exact figures) and nothing runs.
fn settled(app: &QuantscopeApp) -> bool {
    app.session().is_some_and(|s| {
        s.current_evaluation().is_some()
            && s.exact_figures().is_some()
            && !s.is_busy()
            && !s.is_preparing_view()
    })
}

/// The MobileNet evaluated with `bits`-bit symmetric weights (per channel or per tensor).
fn mobilenet_at(bits: u32, per_channel: bool) -> Harness<'static, QuantscopeApp> {
    let mut harness = opened(bundled_sample_model());
    wait_until(&mut harness, "calibration and evaluation", settled);
    set_weights(&mut harness, bits, per_channel);
    harness
}

fn set_weights(harness: &mut Harness<'static, QuantscopeApp>, bits: u32, per_channel: bool) {
    let ctx = harness.ctx.clone();
    let quant = LayerQuant {
        weights: Some(WeightQuant {
            scheme: WeightScheme::Linear {
                bits,
                symmetric: true,
            },
            per_channel,
        }),
        ..harness.state().session().unwrap().config.default
    };
    harness
        .state_mut()
        .apply(&ctx, AppCommand::SetDefault(quant));
    wait_until(harness, "the new evaluation", settled);
}

/// The current evaluation's output SQNR (dB) and every layer's output SQNR.
fn results(app: &QuantscopeApp) -> (f64, Vec<f64>) {
    let e = app.session().unwrap().current_evaluation().unwrap();
    (
        e.worst_output_sqnr_db().unwrap(),
        e.layers.iter().map(|l| l.sqnr_db).collect(),
    )
}

#[test]
fn applying_adaround_from_the_analysis_window_changes_the_results_until_dropped() {
    let mut harness = mobilenet_at(4, true);
    let (nearest_output, nearest_layers) = results(harness.state());
    let exact_mse =
        |app: &QuantscopeApp| app.session().unwrap().exact_figures().unwrap().metrics.mse;
    let nearest_mse = exact_mse(harness.state());

    harness.state_mut().analysis.open = true;
    frames(&mut harness);
    harness
        .get_by_role_and_label(Role::Button, "AdaRound")
        .click();
    frames(&mut harness);
    harness.get_by_label("Run AdaRound").click();
    wait_until(&mut harness, "AdaRound", |app| !app.analysis.is_busy());
    assert!(
        harness
            .state()
            .session()
            .unwrap()
            .config
            .adaround
            .is_empty(),
        "running AdaRound alone changes nothing"
    );
    harness.get_by_label("Apply to session").click();
    wait_until(&mut harness, "the evaluation with AdaRound", settled);

    let session = harness.state().session().unwrap();
    let learned = session.config.adaround.len();
    assert!(learned > 0);
    let evaluation = session.current_evaluation().unwrap();
    assert_eq!(
        evaluation.weights.iter().filter(|w| w.adaround).count(),
        learned,
        "every learned weight is rounded as learned in the evaluation"
    );
    let (adaround_output, adaround_layers) = results(harness.state());
    eprintln!(
        "MobileNet int4 per channel in the app: output SQNR nearest {nearest_output:.2} dB, \
         AdaRound {adaround_output:.2} dB ({learned} layers)"
    );
    assert_ne!(
        adaround_layers, nearest_layers,
        "the Results follow the rounding"
    );
    // The shown weight's exact figures are those of its AdaRound weights (which sit further
    // from the float weights than nearest, by design: the layer's output is what improves).
    let adaround_mse = exact_mse(harness.state());
    eprintln!("shown weight MSE: nearest {nearest_mse:.4e}, AdaRound {adaround_mse:.4e}");
    assert!(
        adaround_mse > nearest_mse,
        "{adaround_mse} vs {nearest_mse}"
    );
    harness.get_by_label("applied to the session");
    harness.get_by_label_contains(&format!(
        "AdaRound: {learned} layers, learned for int4 per channel"
    ));

    // Drop: back to round-to-nearest, the same Results as before.
    harness.get_by_label("Drop").click();
    wait_until(&mut harness, "the evaluation without AdaRound", settled);
    assert!(
        harness
            .state()
            .session()
            .unwrap()
            .config
            .adaround
            .is_empty()
    );
    assert_eq!(results(harness.state()).1, nearest_layers);
    assert_eq!(exact_mse(harness.state()), nearest_mse);

    // Applied again, then the bits change: dropped, with a message saying why.
    harness.get_by_label("Apply to session").click();
    wait_until(&mut harness, "AdaRound again", settled);
    assert_eq!(
        harness.state().session().unwrap().config.adaround.len(),
        learned
    );
    set_weights(&mut harness, 3, true);
    assert!(
        harness
            .state()
            .session()
            .unwrap()
            .config
            .adaround
            .is_empty()
    );
    harness.get_by_label_contains("the layer is now int3 per channel");
    assert!(harness.query_by_label_contains("AdaRound: ").is_none());
}

#[test]
fn mse_weight_ranges_narrow_the_shown_weight_and_raise_its_sqnr_at_int4_per_tensor() {
    let mut harness = mobilenet_at(4, false);
    let before = shown_weight(harness.state());

    harness.get_by_label("weight range").click();
    frames(&mut harness);
    harness.get_by_role_and_label(Role::Button, "MSE").click();
    wait_until(&mut harness, "the MSE evaluation", settled);
    assert_eq!(
        harness.state().session().unwrap().config.weight_calib,
        Some(Method::Mse)
    );
    let after = shown_weight(harness.state());
    eprintln!(
        "{} int4 per tensor: min-max range {:?} SQNR {:.2} dB, MSE range {:?} SQNR {:.2} dB",
        before.tensor, before.range, before.sqnr_db, after.range, after.sqnr_db
    );
    assert_eq!(after.tensor, before.tensor);
    assert!(
        after.range.1 - after.range.0 < before.range.1 - before.range.0,
        "MSE clips: {:?} vs {:?}",
        after.range,
        before.range
    );
    let width = |r: (f32, f32)| r.1 - r.0;
    assert!(
        width(after.view_clip) < width(before.view_clip),
        "the view draws the narrower range: {:?} vs {:?}",
        after.view_clip,
        before.view_clip
    );
    assert!(
        after.sqnr_db > before.sqnr_db,
        "{} vs {}",
        after.sqnr_db,
        before.sqnr_db
    );
}

/// The shown weight: its name, quantizer range, the view's clip and the exact SQNR shown.
struct ShownWeight {
    tensor: String,
    range: (f32, f32),
    view_clip: (f32, f32),
    sqnr_db: f64,
}

fn shown_weight(app: &QuantscopeApp) -> ShownWeight {
    let session = app.session().unwrap();
    let (tensor, weight, _) = session.selected_tensor().unwrap();
    assert!(weight, "the first weight is shown");
    let report = session
        .current_evaluation()
        .unwrap()
        .weights
        .iter()
        .find(|w| w.tensor == tensor)
        .unwrap();
    assert!(!report.per_channel);
    let exact = session.exact_figures().unwrap();
    let view_clip = session
        .distribution_input(Some(&exact), false)
        .unwrap()
        .clip;
    ShownWeight {
        range: report.ranges[0],
        view_clip,
        sqnr_db: exact.metrics.sqnr_db,
        tensor,
    }
}
