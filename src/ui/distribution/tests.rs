//! The distribution view driven headless with egui_kittest, on tensors of known values: drag
//! a clip handle, double-click, click a calibration marker, switch scheme, select a channel.

use egui::{Pos2, pos2, vec2};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use ndarray::ArrayD;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

use super::*;
use crate::quant::config::WeightScheme;
use crate::stats::summarize;

/// `n` standard-normal values (Box–Muller, seeded).
fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Pcg64::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u: f64 = rng.random::<f64>().max(1e-12);
            let v: f64 = rng.random();
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

struct Fixture {
    view: DistributionView,
    tensor: TensorSummary,
    data: TensorDistribution,
    choice: QuantChoice,
    clip: (f32, f32),
    manual: bool,
    channel_clips: std::collections::BTreeMap<usize, (f32, f32)>,
    exact: Option<ExactFigures>,
    explain: bool,
    commands: Vec<DistributionCommand>,
}

fn linear(bits: u32, symmetric: bool) -> QuantChoice {
    QuantChoice {
        scheme: WeightScheme::Linear { bits, symmetric },
        per_channel: false,
        unsigned: false,
    }
}

fn markers() -> Vec<CalibrationMarker> {
    vec![
        CalibrationMarker {
            method: "MSE".into(),
            range: (-2.5, 2.5),
        },
        CalibrationMarker {
            method: "KL".into(),
            range: (-1.5, 1.5),
        },
    ]
}

/// A fixture over `values` shaped `shape` (channels on axis 0 when 2-D).
fn fixture(values: Vec<f32>, shape: Vec<usize>, choice: QuantChoice) -> Fixture {
    let array = ArrayD::from_shape_vec(shape.clone(), values).unwrap();
    let axis = (shape.len() > 1).then_some(0);
    let data = TensorDistribution::prepare(array.view(), axis, markers()).unwrap();
    let tensor = TensorSummary {
        name: "conv.weight".into(),
        role: "weight",
        dtype: "float32",
        shape: shape.clone(),
        stats: summarize(array.view()),
        channel_axis: axis,
        channels: axis.map(|a| shape[a]),
        channel_range_spread: None,
    };
    Fixture {
        view: DistributionView::default(),
        clip: data.fine.range(),
        tensor,
        data,
        choice,
        manual: false,
        channel_clips: Default::default(),
        exact: None,
        explain: false,
        commands: Vec::new(),
    }
}

fn harness(fixture: Fixture) -> Harness<'static, Fixture> {
    harness_on(Harness::builder(), fixture, vec2(1000.0, 800.0))
}

/// [`harness`] rendering with wgpu (for snapshots).
fn wgpu_harness(fixture: Fixture) -> Harness<'static, Fixture> {
    harness_on(Harness::builder().wgpu(), fixture, vec2(1000.0, 800.0))
}

fn harness_on(
    builder: egui_kittest::HarnessBuilder<Fixture>,
    fixture: Fixture,
    size: egui::Vec2,
) -> Harness<'static, Fixture> {
    let mut harness = builder
        .with_size(size)
        .with_step_dt(1.0 / 60.0)
        .build_ui_state(
            |ui, f: &mut Fixture| {
                let input = DistributionInput {
                    tensor: &f.tensor,
                    data: &f.data,
                    choice: f.choice,
                    clip: f.clip,
                    clip_is_manual: f.manual,
                    channel_clips: &f.channel_clips,
                    method_name: "min-max".into(),
                    exact: f.exact.as_ref(),
                    explain: f.explain,
                };
                let commands = f.view.show_ui(ui, &input);
                // Apply them as the shell does.
                for c in &commands {
                    match c {
                        DistributionCommand::SetClip { lo, hi } => {
                            f.clip = (*lo, *hi);
                            f.manual = true;
                        }
                        DistributionCommand::ResetClip => {
                            f.clip = f.data.fine.range();
                            f.manual = false;
                        }
                        DistributionCommand::AdoptMarker(name) => {
                            if let Some(m) = f.data.markers.iter().find(|m| m.method == *name) {
                                f.clip = m.range;
                                f.manual = false;
                            }
                        }
                        DistributionCommand::SetChannelClip { channel, lo, hi } => {
                            f.channel_clips.insert(*channel, (*lo, *hi));
                        }
                        DistributionCommand::ResetChannelClip(channel) => {
                            f.channel_clips.remove(channel);
                        }
                    }
                }
                f.commands.extend(commands);
            },
            fixture,
        );
    harness.run_steps(3);
    harness
}

fn label_containing(harness: &Harness<'_, Fixture>, part: &str) -> String {
    // A label's text is its AccessKit value.
    let node = harness.get_by_label_contains(part).accesskit_node();
    node.value().or_else(|| node.label()).unwrap_or_default()
}

/// Screen position of plot x `x`, halfway up the last plot.
fn screen_at(harness: &Harness<'_, Fixture>, x: f64) -> Pos2 {
    let view = &harness.state().view;
    let t = view.last_transform().expect("a plot was drawn");
    let rect = view.last_plot_rect().expect("a plot was drawn");
    pos2(t.position_from_point_x(x), rect.center().y)
}

/// Presses at `from`, moves to `to` in a few steps, releases.
fn drag(harness: &mut Harness<'_, Fixture>, from: Pos2, to: Pos2) {
    harness.hover_at(from);
    harness.step();
    harness.drag_at(from);
    harness.step();
    for i in 1..=4 {
        harness.hover_at(from + (to - from) * (i as f32 / 4.0));
        harness.step();
    }
    harness.drop_at(to);
    harness.run();
}

fn click(harness: &mut Harness<'_, Fixture>, at: Pos2) {
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
    harness.run();
}

fn last_set_clip(commands: &[DistributionCommand]) -> Option<(f32, f32)> {
    commands.iter().rev().find_map(|c| match c {
        DistributionCommand::SetClip { lo, hi } => Some((*lo, *hi)),
        _ => None,
    })
}

#[test]
fn dragging_the_max_handle_moves_the_range_and_the_estimate() {
    let mut harness = harness(fixture(gaussian(20_000, 1), vec![20_000], linear(4, false)));
    let (lo, hi) = harness.state().clip;
    let before = label_containing(&harness, "estimate: MSE");
    let target = f64::from(hi) * 0.5;
    let (from, to) = (
        screen_at(&harness, f64::from(hi)),
        screen_at(&harness, target),
    );
    drag(&mut harness, from, to);
    let state = harness.state();
    let moves = state
        .commands
        .iter()
        .filter(|c| matches!(c, DistributionCommand::SetClip { .. }))
        .count();
    assert!(
        moves >= 2,
        "one SetClip per frame of the drag: {:?}",
        state.commands
    );
    let (new_lo, new_hi) = last_set_clip(&state.commands).expect("a SetClip");
    // The minimum stays; the maximum lands where the pointer let go (within a pixel).
    let t = state.view.last_transform().unwrap();
    let pixel = t.bounds().width() / f64::from(t.frame().width());
    assert_eq!(new_lo, lo);
    assert!(
        (f64::from(new_hi) - target).abs() < 1.5 * pixel,
        "{new_hi} vs {target}"
    );
    let after = label_containing(&harness, "estimate: MSE");
    assert_ne!(before, after);
    // At 4 bits on a Gaussian, clipping at half the max beats min-max: the SQNR goes up.
    let sqnr = |text: &str| -> f64 {
        let db = text.split("SQNR ").nth(1).unwrap().trim_end_matches(" dB");
        db.parse().unwrap()
    };
    assert!(sqnr(&after) > sqnr(&before), "{before} → {after}");
    assert!(!harness.state().view.is_dragging());
}

#[test]
fn symmetric_handles_move_together() {
    let mut harness = harness(fixture(gaussian(20_000, 2), vec![20_000], linear(8, true)));
    let (lo, hi) = harness.state().clip;
    let m = lo.abs().max(hi.abs());
    let target = -0.6 * f64::from(m);
    let (from, to) = (
        screen_at(&harness, -f64::from(m)),
        screen_at(&harness, target),
    );
    drag(&mut harness, from, to);
    let (new_lo, new_hi) = last_set_clip(&harness.state().commands).expect("a SetClip");
    assert_eq!(new_lo, -new_hi, "mirrored");
    assert!(
        (f64::from(new_lo) - target).abs() < 0.02 * f64::from(m),
        "{new_lo}"
    );
}

#[test]
fn double_click_resets_the_clip() {
    let mut f = fixture(gaussian(5_000, 3), vec![5_000], linear(8, false));
    f.clip = (-1.0, 1.0);
    f.manual = true;
    let mut harness = harness(f);
    harness.get_by_label("reset to min-max");
    let at = screen_at(&harness, 0.3);
    harness.hover_at(at);
    harness.step();
    for pressed in [true, false, true, false] {
        harness.event(egui::Event::PointerButton {
            pos: at,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::NONE,
        });
        harness.step();
    }
    harness.run();
    let state = harness.state();
    assert!(
        state.commands.contains(&DistributionCommand::ResetClip),
        "{:?}",
        state.commands
    );
    assert!(!state.manual);
}

#[test]
fn clicking_a_marker_line_or_its_button_adopts_it() {
    let mut harness = harness(fixture(gaussian(20_000, 4), vec![20_000], linear(8, false)));
    // KL's maximum (1.5) is far from the clip handles (the data's min and max) and from MSE's.
    let at = screen_at(&harness, 1.5);
    click(&mut harness, at);
    assert_eq!(
        harness.state().commands,
        vec![DistributionCommand::AdoptMarker("KL".into())]
    );
    // The legend lists both methods with their estimates; the button adopts MSE.
    label_containing(&harness, "— MSE");
    harness.get_by_label("use MSE").click();
    harness.run();
    assert_eq!(
        harness.state().commands.last(),
        Some(&DistributionCommand::AdoptMarker("MSE".into()))
    );
    assert_eq!(harness.state().clip, (-2.5, 2.5));
}

#[test]
fn switching_to_ternary_shows_three_levels() {
    let mut harness = harness(fixture(gaussian(10_000, 5), vec![10_000], linear(8, true)));
    harness.get_by_label("256 levels");
    harness.state_mut().choice.scheme = WeightScheme::Ternary { ttq: false };
    harness.run();
    harness.get_by_label("3 levels");
    // No clip handles for ternary: a drag where the max handle was does nothing.
    let (_, hi) = harness.state().clip;
    let from = screen_at(&harness, f64::from(hi));
    let to = screen_at(&harness, 0.0);
    drag(&mut harness, from, to);
    assert_eq!(last_set_clip(&harness.state().commands), None);
    harness.state_mut().choice.scheme = WeightScheme::KMeans { bits: 3 };
    harness.run();
    harness.get_by_label("8 levels");
}

#[test]
fn selecting_a_channel_shows_its_histogram() {
    // 8 channels of 256 values, channel c scaled by c + 1.
    let values: Vec<f32> = gaussian(8 * 256, 6)
        .chunks(256)
        .enumerate()
        .flat_map(|(c, ch)| {
            ch.iter()
                .map(move |v| v * (c + 1) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut f = fixture(values, vec![8, 256], linear(4, true));
    f.choice.per_channel = true;
    let mut harness = harness(f);
    harness.get_by_label("per channel").click();
    harness.run();
    // Channel 0 is shown first; click the bar of channel 5 (its middle).
    label_containing(&harness, "channel 0: histogram");
    let (lo, hi) = harness.state().data.channel_ranges[5];
    let view = &harness.state().view;
    let t = view.last_transform().unwrap();
    let at = t.position_from_point(&egui_plot::PlotPoint::new(5.0, 0.5 * f64::from(lo + hi)));
    click(&mut harness, at);
    assert_eq!(harness.state().view.selected_channel, Some(5));
    let text = label_containing(&harness, "clip (its own)");
    assert!(text.contains(&format!("{:.5}", lo)), "{text}");
    label_containing(&harness, "channel 5: histogram");
    // Per channel beats per tensor on channels of such different ranges.
    label_containing(&harness, "SQNR estimate");
}

#[test]
fn exact_figures_and_explain_mode_are_shown() {
    let mut f = fixture(gaussian(4_000, 7), vec![4_000], linear(8, false));
    f.explain = true;
    f.exact = Some(ExactFigures {
        metrics: TensorMetrics {
            count: 4_000,
            mse: 1.25e-5,
            sqnr_db: 48.5,
            max_abs_error: 0.01,
            cosine: 0.99999,
            kl: 0.0,
        },
        per_tensor_sqnr_db: Some(48.5),
        per_channel_sqnr_db: None,
    });
    let harness = harness(f);
    let exact = label_containing(&harness, "exact: MSE");
    assert!(
        exact.contains("1.2500e-5") && exact.contains("48.50 dB"),
        "{exact}"
    );
    label_containing(&harness, "estimate: MSE");
    let z = label_containing(&harness, "Z = round(qmin − rmin / S)");
    let p = harness.state().view.last_plot_rect().unwrap();
    assert!(p.width() > 100.0);
    // The zero point printed is the one the quantizer computes.
    let (lo, hi) = harness.state().clip;
    let params = crate::quant::scalar::linear_params(8, false, false, (lo, hi)).unwrap();
    assert!(z.ends_with(&format!("= {}", params.zero_point)), "{z}");
}

/// 8 channels of 256 Gaussian values, channel c scaled by c + 1.
fn scaled_channels(seed: u64) -> Vec<f32> {
    gaussian(8 * 256, seed)
        .chunks(256)
        .enumerate()
        .flat_map(|(c, ch)| {
            ch.iter()
                .map(move |v| v * (c + 1) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The per-channel tab's "· per channel N dB" estimate (the first such label; the exact row
/// follows it).
fn per_channel_estimate_text(harness: &Harness<'_, Fixture>) -> String {
    harness
        .query_all_by_label_contains("· per channel ")
        .map(|n| {
            let node = n.accesskit_node();
            node.value().or_else(|| node.label()).unwrap_or_default()
        })
        .find(|t| t.ends_with(" dB"))
        .expect("a per-channel estimate")
}

/// Screen position of plot x `x`, halfway up the selected channel's histogram.
fn channel_screen_at(harness: &Harness<'_, Fixture>, x: f64) -> Pos2 {
    let (rect, t) = harness
        .state()
        .view
        .last_channel_plot()
        .expect("a channel histogram was drawn");
    pos2(t.position_from_point_x(x), rect.center().y)
}

#[test]
fn a_channel_histogram_shows_the_channels_values_not_the_tensors_range() {
    // Per tensor: channel 0's clip is the tensor's (8 times its own span), yet its histogram is
    // zoomed to its own values.
    let mut harness = harness(fixture(scaled_channels(8), vec![8, 256], linear(8, true)));
    harness.get_by_label("per channel").click();
    harness.run();
    label_containing(&harness, "clip (the tensor's)");
    let (lo, hi) = harness.state().data.channel_ranges[0];
    let (_, t) = harness.state().view.last_channel_plot().unwrap();
    let (x0, x1) = (t.bounds().min()[0], t.bounds().max()[0]);
    let pad = 0.051 * f64::from(hi - lo);
    assert!(
        (x0 - f64::from(lo)).abs() <= pad && (x1 - f64::from(hi)).abs() <= pad,
        "x range [{x0}, {x1}] vs channel 0's [{lo}, {hi}]"
    );
    let tensor = harness.state().data.fine.range();
    assert!(f64::from(tensor.0) < x0 && f64::from(tensor.1) > x1);
}

#[test]
fn dragging_a_channel_handle_clips_only_that_channel() {
    let mut f = fixture(scaled_channels(9), vec![8, 256], linear(8, true));
    f.choice.per_channel = true;
    let mut harness = harness(f);
    harness.get_by_label("per channel").click();
    harness.run();
    harness.state_mut().view.selected_channel = Some(5);
    harness.run();
    label_containing(&harness, "channel 5: histogram");
    let clip_before = harness.state().clip;
    let estimate_before = per_channel_estimate_text(&harness);
    let (lo, hi) = harness.state().data.channel_ranges[5];
    // Symmetric: the handles sit at ±max|x|; grab the one inside the view.
    let m = f64::from(lo.abs().max(hi.abs()));
    let edge = if hi.abs() >= lo.abs() { m } else { -m };
    let (_, t) = harness.state().view.last_channel_plot().unwrap();
    let pixel = t.bounds().width() / f64::from(t.frame().width());
    let grab = edge - edge.signum() * 2.0 * pixel;
    let (from, to) = (
        channel_screen_at(&harness, grab),
        channel_screen_at(&harness, 0.5 * edge),
    );
    drag(&mut harness, from, to);
    let state = harness.state();
    assert_eq!(last_set_clip(&state.commands), None, "{:?}", state.commands);
    assert!(
        state
            .commands
            .iter()
            .all(|c| matches!(c, DistributionCommand::SetChannelClip { channel: 5, .. })),
        "{:?}",
        state.commands
    );
    assert_eq!(state.channel_clips.len(), 1, "{:?}", state.channel_clips);
    let (clo, chi) = state.channel_clips[&5];
    assert_eq!(clo, -chi, "mirrored");
    assert!(
        (f64::from(chi) - 0.5 * m).abs() < 2.0 * pixel,
        "{chi} vs {}",
        0.5 * m
    );
    // The tensor's range and the other channels are untouched.
    assert_eq!(state.clip, clip_before);
    assert!(!state.manual);
    label_containing(&harness, "clip (set by hand)");
    // The per-channel estimate follows: clipping a Gaussian channel at half its max at 8 bits
    // costs accuracy.
    let db = |text: &str| -> f64 {
        let tail = text.split("per channel ").nth(1).unwrap();
        tail.trim_end_matches(" dB").parse().unwrap()
    };
    let estimate_after = per_channel_estimate_text(&harness);
    assert!(
        db(&estimate_after) < db(&estimate_before),
        "{estimate_before} → {estimate_after}"
    );
    harness.get_by_label("reset channel clip").click();
    harness.run();
    assert_eq!(
        harness.state().commands.last(),
        Some(&DistributionCommand::ResetChannelClip(5))
    );
    assert!(harness.state().channel_clips.is_empty());
    label_containing(&harness, "clip (its own)");
}

#[test]
fn threshold_curves_have_their_minima_on_the_mse_and_kl_markers() {
    // A heavy-tailed activation: x·|x| of Gaussian x.
    let mut harness = harness(heavy_tailed_activation());
    let drawn = harness
        .state()
        .view
        .last_threshold_curves()
        .expect("curves drawn under the histogram")
        .clone();
    assert_eq!(drawn.rects.len(), 2);
    let argmin = |curve: &[[f64; 2]], last: bool| -> f64 {
        let mut best = curve[0];
        for &p in curve {
            if p[1] < best[1] || (last && p[1] == best[1]) {
                best = p;
            }
        }
        best[0]
    };
    let marker = |name: &str| {
        drawn
            .markers
            .iter()
            .find(|(m, _)| m == name)
            .unwrap_or_else(|| panic!("no {name} marker in {:?}", drawn.markers))
            .1
    };
    // The MSE method takes the curve's first minimum, KL (TensorRT) its last.
    let (mse_min, kl_min) = (argmin(&drawn.mse, false), argmin(&drawn.kl, true));
    assert!(
        (marker("MSE") - mse_min).abs() <= 1e-6 * mse_min,
        "MSE marker {} vs curve minimum {mse_min}",
        marker("MSE")
    );
    assert!(
        (marker("KL") - kl_min).abs() <= 1e-6 * kl_min,
        "KL marker {} vs curve minimum {kl_min}",
        marker("KL")
    );
    // Heavy tails: both minima clip well inside the data's max.
    let max = f64::from(harness.state().data.fine.range().1);
    assert!(
        mse_min < 0.8 * max && kl_min < 0.8 * max,
        "{mse_min} {kl_min} {max}"
    );
    // The densities ACIQ assumes are drawn (and keyed) once switched on.
    assert!(harness.query_by_label("ACIQ Gaussian density").is_none());
    harness.get_by_label("ACIQ densities").click();
    harness.run();
    harness.get_by_label("ACIQ Gaussian density");
    harness.get_by_label("ACIQ Laplace density");
}

/// The SQNR (dB) at the end of a label such as "estimate: MSE … · SQNR 41.20 dB · …".
fn sqnr_in(text: &str) -> f64 {
    let tail = text
        .split("SQNR ")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    tail.split(" dB").next().unwrap().parse().unwrap()
}

#[test]
fn the_per_channel_estimate_agrees_with_the_exact_per_channel_figure() {
    use crate::metrics::{MetricOptions, compare};
    use crate::quant::channels::Granularity;
    use crate::ui::activation_distribution::weight_distribution;
    // The sample MobileNet's weight whose per-tensor and per-channel int8 SQNR differ most:
    // the estimate line used to show the per-tensor error of a per-channel tensor beside the
    // exact per-channel figure.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_models/digits_mobilenet.onnx");
    let model = crate::load::load_model(&path).unwrap();
    let scheme = WeightScheme::Linear {
        bits: 8,
        symmetric: true,
    };
    let exact = |t: &crate::ir::Tensor, granularity| {
        let values = t.data.to_f32();
        let q = scheme
            .fake_quantize(values.view(), granularity, None)
            .unwrap();
        compare(values.view(), q.values.view(), &MetricOptions::default()).unwrap()
    };
    let (tensor, per_tensor, per_channel) = model
        .graph
        .initializers
        .values()
        .filter(|t| t.role == crate::ir::ParamRole::Weight)
        .filter_map(|t| {
            let axis = t.channel_axis?;
            let pt = exact(t, Granularity::PerTensor);
            let pc = exact(t, Granularity::PerChannel { axis });
            Some((t, pt, pc))
        })
        .max_by(|a, b| (a.2.sqnr_db - a.1.sqnr_db).total_cmp(&(b.2.sqnr_db - b.1.sqnr_db)))
        .unwrap();
    assert!(
        per_channel.sqnr_db - per_tensor.sqnr_db > 3.0,
        "{}: {} vs {}",
        tensor.name,
        per_tensor.sqnr_db,
        per_channel.sqnr_db
    );
    let mut f = fixture(vec![0.0, 1.0], vec![2], linear(8, true));
    f.data = weight_distribution(tensor, 8, crate::calib::Method::MinMax).unwrap();
    f.tensor = TensorSummary::of(tensor);
    f.clip = f.data.fine.range();
    f.choice.per_channel = true;
    f.exact = Some(ExactFigures {
        metrics: per_channel,
        per_tensor_sqnr_db: Some(per_tensor.sqnr_db),
        per_channel_sqnr_db: Some(per_channel.sqnr_db),
    });
    let mut harness = harness(f);
    let estimate = sqnr_in(&label_containing(&harness, "estimate (per channel)"));
    let shown_exact = sqnr_in(&label_containing(&harness, "exact: MSE"));
    assert!(
        (estimate - shown_exact).abs() < 0.3,
        "{}: estimate {estimate} dB vs exact {shown_exact} dB",
        tensor.name
    );
    // The per-channel tab's two lines agree the same way, per tensor and per channel.
    harness.get_by_label("per channel").click();
    harness.run();
    let line = per_channel_estimate_text(&harness);
    let channel_estimate: f64 = line
        .split("per channel ")
        .nth(1)
        .unwrap()
        .trim_end_matches(" dB")
        .parse()
        .unwrap();
    assert!(
        (channel_estimate - per_channel.sqnr_db).abs() < 0.3,
        "{line}"
    );
}

/// The heavy-tailed activation of the curves test, with its summary and view data.
fn heavy_tailed_activation() -> Fixture {
    use crate::calib::{CalibrationStats, Method, ObserverConfig};
    use crate::ui::activation_distribution::{activation_distribution, activation_summary};
    let values: Vec<f32> = gaussian(50_000, 10).iter().map(|v| v * v.abs()).collect();
    let array = ArrayD::from_shape_vec(vec![values.len()], values).unwrap();
    let stats = CalibrationStats::of_tensor(array.view(), ObserverConfig::default());
    // 4 bits: coarse enough that clipping the tails pays for both MSE and KL (at 8 bits the
    // MSE optimum of this tensor sits at 95 % of its max).
    let mut f = fixture(vec![0.0, 1.0], vec![2], linear(4, false));
    f.data = activation_distribution(&stats, 4, Method::MinMax).unwrap();
    f.tensor = activation_summary("act", &stats, &[50_000]);
    f.clip = f.data.fine.range();
    f
}

#[test]
fn snapshots_of_the_curves_and_a_clipped_channel() {
    let options = egui_kittest::SnapshotOptions::new()
        .threshold(2.0)
        .max_failed_pixels(800);
    let mut f = heavy_tailed_activation();
    f.view.show_densities = true;
    // Tall enough for the curves under the histogram.
    let mut harness = harness_on(Harness::builder().wgpu(), f, vec2(1000.0, 1150.0));
    harness.run();
    harness.snapshot_options("distribution_curves", &options);

    let mut f = fixture(scaled_channels(11), vec![8, 256], linear(4, true));
    f.choice.per_channel = true;
    f.channel_clips.insert(5, (-2.0, 2.0));
    f.view.tab = Tab::Channels;
    f.view.selected_channel = Some(5);
    let mut harness = wgpu_harness(f);
    harness.run();
    harness.snapshot_options("distribution_channel_clip", &options);
}
