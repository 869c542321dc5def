//! Frame time of the distribution view while a clip handle is dragged: one egui_kittest step
//! (the whole `show_ui` frame: estimate, grid, markers, plot layout) per iteration, on weights
//! shaped like the largest of the models engineers bring (synthetic Gaussian values): a
//! ResNet-18/50 3×3 convolution (512×512×3×3 = 2.36M) and BERT-base's word embeddings
//! (30,522×768 = 23.4M, 30,522 channels). Target: < 4 ms.

use criterion::{Criterion, criterion_group, criterion_main};
use egui::{pos2, vec2};
use egui_kittest::Harness;
use ndarray::ArrayD;
use quantscope::quant::config::WeightScheme;
use quantscope::stats::summarize;
use quantscope::summary::TensorSummary;
use quantscope::ui::distribution::{
    CalibrationMarker, DistributionInput, DistributionView, QuantChoice, TensorDistribution,
};

/// `n` standard-normal values (Box–Muller over a splitmix64 stream).
fn gaussian(n: usize) -> Vec<f32> {
    let mut state = 7u64;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * 0.02) as f32
        })
        .collect()
}

struct State {
    view: DistributionView,
    tensor: TensorSummary,
    data: TensorDistribution,
    clip: (f32, f32),
}

fn drag_frame(c: &mut Criterion) {
    drag_case(c, "layer4.1.conv2.weight", vec![512, 512, 3, 3]);
    drag_case(c, "embeddings.word_embeddings.weight", vec![30522, 768]);
}

/// Times the frame while dragging the max clip handle of a weight `name` of `shape`.
fn drag_case(c: &mut Criterion, name: &str, shape: Vec<usize>) {
    let count: usize = shape.iter().product();
    let channels = shape[0];
    let values = ArrayD::from_shape_vec(shape.clone(), gaussian(count)).unwrap();
    let markers = ["min-max", "percentile 99.99", "MSE", "ACIQ Laplace", "KL"]
        .iter()
        .enumerate()
        .map(|(i, name)| CalibrationMarker {
            method: (*name).into(),
            range: (-0.09 + 0.01 * i as f32, 0.09 - 0.01 * i as f32),
        })
        .collect();
    let data = TensorDistribution::prepare(values.view(), Some(0), markers).unwrap();
    let tensor = TensorSummary {
        name: name.into(),
        role: "weight",
        dtype: "float32",
        shape,
        stats: summarize(values.view()),
        channel_axis: Some(0),
        channels: Some(channels),
        channel_range_spread: None,
    };
    let state = State {
        view: DistributionView::default(),
        clip: data.fine.range(),
        tensor,
        data,
    };
    let mut harness = Harness::builder()
        .with_size(vec2(1200.0, 760.0))
        .with_step_dt(1.0 / 60.0)
        .build_ui_state(
            |ui, s: &mut State| {
                let input = DistributionInput {
                    tensor: &s.tensor,
                    data: &s.data,
                    choice: QuantChoice {
                        scheme: WeightScheme::Linear {
                            bits: 4,
                            symmetric: false,
                        },
                        per_channel: false,
                        unsigned: false,
                    },
                    clip: s.clip,
                    clip_is_manual: true,
                    channel_clips: &quantscope::ui::distribution::NO_CHANNEL_CLIPS,
                    method_name: "MSE".into(),
                    exact: None,
                    explain: false,
                };
                for c in s.view.show_ui(ui, &input) {
                    if let quantscope::ui::distribution::DistributionCommand::SetClip { lo, hi } = c
                    {
                        s.clip = (lo, hi);
                    }
                }
            },
            state,
        );
    harness.run_steps(3);
    // Grab the max handle.
    let (hi, t, rect) = {
        let s = harness.state();
        (
            f64::from(s.clip.1),
            s.view.last_transform().unwrap(),
            s.view.last_plot_rect().unwrap(),
        )
    };
    let y = rect.center().y;
    let start = pos2(t.position_from_point_x(hi), y);
    harness.hover_at(start);
    harness.step();
    harness.drag_at(start);
    harness.step();
    let mut offset = 0.0f32;
    let label = format!(
        "distribution view frame while dragging ({:.2}M values, {} channels)",
        count as f64 / 1e6,
        channels
    );
    c.bench_function(&label, |b| {
        b.iter(|| {
            // Move back and forth over 200 points left of the start.
            offset = (offset + 7.0) % 200.0;
            harness.hover_at(pos2(start.x - 10.0 - offset, y));
            harness.step();
        })
    });
    assert!(harness.state().view.is_dragging(), "the drag held");
}

criterion_group!(benches, drag_frame);
criterion_main!(benches);
