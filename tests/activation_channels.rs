//! Per-channel activation statistics from calibration, against a direct computation over the
//! same run's tensors (a hook keeping every float tensor): each channel's min/max equals the
//! direct one exactly, and each channel's histogram equals a single-pass histogram of all the
//! channel's values. On the PP-OCR direction classifier from `../shared/real_models/` (convs:
//! channels on axis 1) and the sample transformer (MatMul inputs: channels on the last axis).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::{ArrayD, Axis, concatenate};
use quantscope::calib::{ChannelAxis, ChannelLimit, ChannelStats};
use quantscope::engine::{Plan, RunOptions, TensorHook, TensorSite};
use quantscope::error::Result;
use quantscope::ir::{Graph, TensorData};
use quantscope::load::{load_model, read_arrays};
use quantscope::workflow::{Calibration, RunControl, Samples, calibrate_with_channels};

use common::repo_path;

/// Every float tensor of every run, in order.
#[derive(Default)]
struct KeepAll {
    tensors: BTreeMap<String, Vec<ArrayD<f32>>>,
}

impl TensorHook for KeepAll {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if let TensorData::F32(a) = value {
            self.tensors
                .entry(site.name.to_string())
                .or_default()
                .push(a.clone());
        }
        Ok(())
    }
}

/// Calibrates `graph` on `data` (fed to `input`) one sample per chunk, reruns the same chunks
/// keeping every tensor, and checks every tensor's per-channel statistics against them.
/// Returns how many tensors were checked with histograms and how many on the last axis.
fn check_against_direct(graph: &Graph, input: &str, data: ArrayD<f32>) -> (usize, usize) {
    let count = data.len_of(Axis(0));
    let samples = Samples::single(input, TensorData::F32(data.clone()), "test data").unwrap();
    let calibration: Calibration =
        calibrate_with_channels(graph, &samples, Some(1), &RunControl::default()).unwrap();

    let plan = Plan::new(graph).unwrap();
    let mut direct = KeepAll::default();
    for i in 0..count {
        let sample = data.slice_axis(Axis(0), (i..i + 1).into()).to_owned();
        let feeds = HashMap::from([(input.to_string(), TensorData::F32(sample))]);
        plan.run(feeds, Some(&mut direct), RunOptions::default())
            .unwrap();
    }

    let axes = ChannelAxis::of_graph(graph);
    let (mut with_histograms, mut last_axis) = (0, 0);
    for (name, runs) in &direct.tensors {
        let rank = runs[0].ndim();
        let rule = axes.get(name).copied().unwrap_or(ChannelAxis::Second);
        let Some(axis) = rule.resolve(rank) else {
            assert!(
                !calibration.channels.contains_key(name),
                "{name}: rank {rank}"
            );
            continue;
        };
        let stats: &ChannelStats = calibration
            .channels
            .get(name)
            .unwrap_or_else(|| panic!("{name}: no per-channel statistics"));
        assert_eq!(stats.axis(), axis, "{name}");
        let views: Vec<_> = runs.iter().map(|a| a.view()).collect();
        let Ok(all) = concatenate(Axis(0), &views) else {
            continue; // shapes vary between runs beyond the batch axis
        };
        assert_eq!(stats.channels(), all.len_of(Axis(axis)), "{name}");
        assert_eq!(stats.limit(), ChannelLimit::None, "{name}");
        // Direct min/max of each channel's finite values, over every run.
        let expected: Vec<Option<(f32, f32)>> = all
            .axis_iter(Axis(axis))
            .map(|channel| {
                let (lo, hi) = channel
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                        (l.min(v), h.max(v))
                    });
                (lo <= hi).then_some((lo, hi))
            })
            .collect();
        assert_eq!(stats.ranges(), expected, "{name}: per-channel min/max");
        // The union of the channels' ranges is the tensor's range.
        let (lo, hi) = calibration.stats[name].min_max().unwrap();
        let union = expected
            .iter()
            .flatten()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &(a, b)| {
                (l.min(a), h.max(b))
            });
        assert_eq!(union, (lo, hi), "{name}");
        // Histograms: one pass over all the values, channel by channel.
        assert!(stats.histograms_are_exact(), "{name}: not exact");
        let single =
            ChannelStats::of_tensor(all.view(), axis, calibration_config(&calibration)).unwrap();
        for c in 0..stats.channels() {
            let finite = all
                .index_axis(Axis(axis), c)
                .iter()
                .filter(|v| v.is_finite())
                .count() as u64;
            let h = stats.histogram(c);
            assert_eq!(h, single.histogram(c), "{name}: channel {c}");
            if let Some(h) = h {
                assert_eq!(h.counts.iter().sum::<u64>(), finite, "{name}: channel {c}");
            }
        }
        with_histograms += 1;
        last_axis += usize::from(axis == rank - 1 && rank > 2);
    }
    (with_histograms, last_axis)
}

fn calibration_config(calibration: &Calibration) -> quantscope::calib::ChannelConfig {
    calibration
        .stats
        .values()
        .next()
        .map(|s| s.config().channels)
        .unwrap_or_default()
}

#[test]
fn ppocr_classifier_channel_ranges_equal_the_direct_computation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model_path =
        root.join("../shared/real_models/ppocr-cls/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    if !model_path.is_file() {
        println!("skipped: {} is absent", model_path.display());
        return;
    }
    let model = load_model(&model_path).unwrap();
    let feeds = read_arrays(
        &root.join("tests/fixtures/real_models/feeds/ch_ppocr_mobile_v2.0_cls_infer.npz"),
    )
    .unwrap();
    let TensorData::F32(x) = &feeds[0].data else {
        panic!("float feed expected")
    };
    let (checked, _) = check_against_direct(&model.graph, &feeds[0].name, x.clone());
    assert!(checked > 50, "only {checked} tensors checked");
}

#[test]
fn transformer_matmul_inputs_have_channels_on_the_last_axis() {
    let model = load_model(&repo_path("sample_models/digits_transformer.onnx")).unwrap();
    let data = common::float_array("sample_models/data/digits_calib_x.npy");
    let data = data.slice_axis(Axis(0), (0..6).into()).to_owned();
    let (checked, last_axis) = check_against_direct(&model.graph, "input", data);
    assert!(
        checked > 10 && last_axis > 0,
        "{checked} tensors, {last_axis} on the last axis"
    );
}
