//! The per-channel tab for activations, driven headless with egui_kittest: on the sample
//! MobileNet after calibration, a depthwise layer's input activation is selected, the channel
//! tab opened, and the ranges it plots and the clicked channel's histogram are the
//! calibration's per-channel statistics; dragging the channel histogram's lower clip handle
//! clips that channel by hand in the session (`activation_channel_ranges`), and "reset channel
//! clip" drops it again. A wgpu snapshot shows the tab
//! (`tests/snapshots/activation_channels.png`).

#![cfg(feature = "ui-tests")]

#[path = "common/app.rs"]
mod app;

use app::{build, settled, wait_until};

use egui::{Pos2, pos2};

use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, HarnessBuilder, SnapshotOptions};
use quantscope::ui::{QuantscopeApp, bundled_sample_model};

/// The input activation of the first depthwise layer: its tensor name.
fn depthwise_input(app: &QuantscopeApp) -> String {
    let session = app.session().unwrap();
    session
        .loaded
        .layers
        .iter()
        .find(|l| l.node.contains("dw") && l.input.is_some())
        .and_then(|l| l.input.clone())
        .expect("a depthwise layer with an input activation")
}

/// Opens the sample MobileNet, waits for calibration, selects the first depthwise layer's
/// input activation and opens the per-channel tab; returns the tensor's name.
fn activation_channel_tab(harness: &mut Harness<'static, QuantscopeApp>) -> String {
    wait_until(harness, "the model to load", |app| !app.is_loading());
    assert_eq!(harness.state().error(), None);
    wait_until(harness, "calibration and evaluation", settled);
    let tensor = depthwise_input(harness.state());
    harness.get_by_label(&format!("in {tensor}")).click();
    wait_until(harness, "the activation's view data", settled);
    // The centre view's tab (the settings panel on the right has a "per channel" choice too).
    harness
        .get_all_by_label("per channel")
        .min_by(|a, b| a.rect().min.x.total_cmp(&b.rect().min.x))
        .expect("the per-channel tab")
        .click();
    wait_until(harness, "the channel tab", settled);
    tensor
}

/// The window size of these tests (and of their snapshot).
fn at_1280x800(builder: HarnessBuilder<QuantscopeApp>) -> HarnessBuilder<QuantscopeApp> {
    builder.with_size(egui::vec2(1280.0, 800.0))
}

#[test]
fn an_activation_channel_tab_plots_the_calibrated_channel_ranges() {
    let mut harness = build(at_1280x800(Harness::builder()), bundled_sample_model());
    let tensor = activation_channel_tab(&mut harness);
    let session = harness.state().session().unwrap();
    let (selected, is_weight, _) = session.selected_tensor().unwrap();
    assert_eq!((selected.as_str(), is_weight), (tensor.as_str(), false));
    let calibration = session.calibration.as_ref().expect("calibrated");
    let channels = &calibration.channels[&tensor];
    assert_eq!(
        channels.axis(),
        1,
        "a convolution's input: channels on axis 1"
    );
    let expected: Vec<(f32, f32)> = channels.ranges().into_iter().map(Option::unwrap).collect();
    assert!(expected.len() > 1, "{} channels", expected.len());
    let input = session
        .distribution_input(None, false)
        .unwrap_or_else(|| panic!("no view data: {:?}", session.view_problem()));
    assert_eq!(input.tensor.name, tensor);
    // The plotted ranges are the calibration's per-channel ranges.
    assert_eq!(input.data.channel_ranges, expected);
    // Each channel's histogram holds that channel's values, over its own range.
    for (c, h) in input.data.channel_histograms.iter().enumerate() {
        let calibrated = channels.histogram(c).unwrap();
        assert_eq!(
            h.counts().collect::<Vec<_>>(),
            calibrated.counts,
            "channel {c}"
        );
        assert_eq!(h.range(), (calibrated.lo, calibrated.hi), "channel {c}");
    }
    assert_eq!(input.data.channel_histograms.len(), expected.len());
    // The tab says where the channels come from; the selected channel's histogram is drawn.
    let note = input.data.channel_note.clone().unwrap();
    assert!(note.contains("along axis 1"), "{note}");
    harness.get_by_label(&note);
    harness.get_by_label("channel 0: histogram");
}

#[test]
fn snapshot_of_an_activation_channel_tab() {
    let mut harness = build(
        at_1280x800(Harness::builder().wgpu()),
        bundled_sample_model(),
    );
    activation_channel_tab(&mut harness);
    harness.snapshot_options(
        "activation_channels",
        &SnapshotOptions::new().threshold(2.0).max_failed_pixels(800),
    );
}

/// A drag with the primary button from `from` to `to` in one move (in the app harness only the
/// first move of a drag reaches the session; see the report of this test's commit).
fn drag(harness: &mut Harness<'static, QuantscopeApp>, from: Pos2, to: Pos2) {
    harness.hover_at(from);
    harness.step();
    harness.drag_at(from);
    harness.step();
    harness.hover_at(to);
    harness.step();
    harness.drop_at(to);
    harness.step();
}

#[test]
fn dragging_an_activation_channel_handle_clips_that_channel_in_the_session() {
    let mut harness = build(at_1280x800(Harness::builder()), bundled_sample_model());
    let tensor = activation_channel_tab(&mut harness);
    harness.get_by_label("channel 0: histogram");
    let (tensor_clip, own) = {
        let session = harness.state().session().unwrap();
        let input = session.distribution_input(None, false).unwrap();
        (input.clip, input.data.channel_ranges[0])
    };
    assert!(own.1 > own.0, "channel 0 has values: {own:?}");
    let (rect, t) = harness.state().view().last_channel_plot().unwrap();
    let (x0, x1) = (t.bounds().min()[0], t.bounds().max()[0]);
    let pixel = (x1 - x0) / f64::from(t.frame().width());
    // uint8 activations: the lower handle is the tensor's lower clip (the upper one, beyond
    // the channel's values, sits on the view's right edge under the centre's scroll bar).
    let handle = f64::from(tensor_clip.0).clamp(x0, x1) + pixel;
    let target = f64::from(own.0) + 0.25 * f64::from(own.1 - own.0);
    let at = |x: f64| pos2(t.position_from_point_x(x), rect.center().y);
    drag(&mut harness, at(handle), at(target));
    wait_until(
        &mut harness,
        "the evaluation with the channel clip",
        settled,
    );
    let session = harness.state().session().unwrap();
    let clips = session
        .config
        .activation_channel_ranges
        .get(&tensor)
        .unwrap_or_else(|| panic!("no channel clip of {tensor}: {:?}", session.config));
    assert_eq!(clips.keys().copied().collect::<Vec<_>>(), vec![0]);
    let (lo, hi) = clips[&0];
    assert_eq!(hi, tensor_clip.1, "the upper end stays the tensor's");
    assert!(
        (f64::from(lo) - target).abs() < 3.0 * pixel,
        "{lo} vs the drop at {target}"
    );
    // Only this channel: the tensor's range is not set by hand, no weight is clipped.
    assert!(session.config.activation_ranges.is_empty());
    assert!(session.config.weight_channel_ranges.is_empty());
    harness.get_by_label("reset channel clip").click();
    wait_until(&mut harness, "the evaluation without it", settled);
    let session = harness.state().session().unwrap();
    assert!(
        session.config.activation_channel_ranges.is_empty(),
        "{:?}",
        session.config.activation_channel_ranges
    );
}
