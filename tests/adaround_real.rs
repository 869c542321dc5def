//! AdaRound on a real model through the config: the PP-OCR direction classifier
//! (MobileNetV3-small) with int4 per-channel weights, the rounding learned on crops of four
//! street photos and measured on crops of the two held out, against the float model's outputs
//! (no labels). Skipped when `../shared/real_models/` is missing.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;

use common::repo_path;
use ndarray::{Array3, ArrayD, Axis, s};
use quantscope::engine::{Plan, RunOptions};
use quantscope::ir::{Graph, TensorData};
use quantscope::load::images::{
    ChannelOrder, ImagePreset, ImageTarget, PixelScale, read_image_folder,
};
use quantscope::load::load_model;
use quantscope::quant::{QuantConfig, QuantizedModel, WeightQuant, WeightScheme};
use quantscope::transform::adaround::{AdaRoundOptions, adaround_model};
use quantscope::workflow::Samples;

/// The model's output (class probabilities) on `x`.
fn output(graph: &Graph, x: &ArrayD<f32>) -> ArrayD<f32> {
    let plan = Plan::new(graph).unwrap();
    let feeds = HashMap::from([("x".to_string(), TensorData::F32(x.clone()))]);
    match plan
        .run(feeds, None, RunOptions::default())
        .unwrap()
        .remove(0)
        .1
    {
        TensorData::F32(a) => a,
        TensorData::I64(_) => panic!("float output expected"),
    }
}

fn sqnr_db(reference: &ArrayD<f32>, other: &ArrayD<f32>) -> f64 {
    let signal: f64 = reference.iter().map(|&r| f64::from(r).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(other)
        .map(|(&r, &o)| (f64::from(r) - f64::from(o)).powi(2))
        .sum();
    10.0 * (signal / noise).log10()
}

#[test]
fn adaround_beats_nearest_on_held_out_photos_of_the_ppocr_classifier_at_int4() {
    let root = repo_path("../shared/real_models");
    let model_path = root.join("ppocr-cls/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    if !model_path.exists() {
        eprintln!("skipped: {} is missing", model_path.display());
        return;
    }
    let graph = load_model(&model_path).unwrap().graph;
    let target = ImageTarget {
        channels: 3,
        height: 96,
        width: 384,
        channels_last: false,
    };
    let preset = ImagePreset::new(ChannelOrder::Rgb, PixelScale::Signed);
    let images = read_image_folder(&root.join("images"), target, &preset).unwrap();
    // Crops of 48×192 at 3×3 offsets per photo; the last two photos are held out.
    let crops: Vec<Vec<Array3<f32>>> = images
        .outer_iter()
        .map(|image| {
            let mut of_image = Vec::new();
            for dy in [0, 24, 48] {
                for dx in [0, 96, 192] {
                    of_image.push(image.slice(s![.., dy..dy + 48, dx..dx + 192]).to_owned());
                }
            }
            of_image
        })
        .collect();
    let stack = |parts: &[Vec<Array3<f32>>]| -> ArrayD<f32> {
        let views: Vec<_> = parts.iter().flatten().map(|c| c.view()).collect();
        ndarray::stack(Axis(0), &views).unwrap().into_dyn()
    };
    let split = crops.len() - 2;
    let (calib_x, eval_x) = (stack(&crops[..split]), stack(&crops[split..]));
    let calibration = Samples::single("x", TensorData::F32(calib_x), "photo crops").unwrap();

    let config = QuantConfig::uniform(
        Some(WeightQuant {
            scheme: WeightScheme::Linear {
                bits: 4,
                symmetric: true,
            },
            per_channel: true,
        }),
        None,
    );
    let options = AdaRoundOptions::default();
    let result = adaround_model(
        &graph,
        &config,
        &calibration,
        &options,
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    let no_stats = BTreeMap::new();
    let nearest = QuantizedModel::prepare(&graph, &config, &no_stats).unwrap();
    let rounded = QuantizedModel::prepare(&graph, &result.config, &no_stats).unwrap();
    assert!(rounded.warnings.is_empty(), "{:?}", rounded.warnings);
    assert_eq!(
        rounded.weights.iter().filter(|w| w.adaround).count(),
        result.layers.len()
    );
    let float = output(&graph, &eval_x);
    let (nearest_db, adaround_db) = (
        sqnr_db(&float, &output(&nearest.graph, &eval_x)),
        sqnr_db(&float, &output(&rounded.graph, &eval_x)),
    );
    eprintln!(
        "PP-OCR classifier, int4 per-channel weights, {} layers, held-out crops: output SQNR \
         nearest {nearest_db:.2} dB, AdaRound {adaround_db:.2} dB",
        result.layers.len()
    );
    assert!(adaround_db > nearest_db, "{adaround_db} vs {nearest_db}");
}
