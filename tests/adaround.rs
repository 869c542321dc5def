//! AdaRound on the sample CNN: 4-bit per-tensor symmetric weights, activations in float.
//! AdaRound must beat round-to-nearest in every layer's reconstruction error on the
//! calibration data and in held-out top-1 accuracy, applied through the returned config
//! (`QuantizedModel::prepare` on the original graph rounds those weights as learned).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use common::{digit_labels, float_array, repo_path};
use ndarray::Ix2;
use quantscope::engine::{Plan, RunOptions};
use quantscope::ir::{Model, TensorData};
use quantscope::load::load_model;
use quantscope::metrics::top1_accuracy;
use quantscope::quant::{QuantConfig, QuantizedModel, WeightQuant, WeightScheme};
use quantscope::transform::adaround::{AdaRoundOptions, adaround_model};
use quantscope::workflow::Samples;

/// Held-out top-1 accuracy (%) of a prepared model (weights only: no activation hook).
fn accuracy(model: &QuantizedModel) -> f64 {
    let plan = Plan::new(&model.graph).unwrap();
    let feeds = [(
        "input".to_string(),
        TensorData::F32(float_array("sample_models/data/digits_test_x.npy")),
    )]
    .into();
    let outputs = plan.run(feeds, None, RunOptions::default()).unwrap();
    let logits = outputs[0]
        .1
        .as_f32()
        .unwrap()
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap();
    100.0 * top1_accuracy(logits, digit_labels().view()).unwrap()
}

fn int4(per_channel: bool) -> QuantConfig {
    QuantConfig::uniform(
        Some(WeightQuant {
            scheme: WeightScheme::Linear {
                bits: 4,
                symmetric: true,
            },
            per_channel,
        }),
        None,
    )
}

#[test]
fn adaround_beats_round_to_nearest_on_the_sample_cnn_at_4_bits() {
    let model: Model = load_model(&repo_path("sample_models/digits_cnn.onnx")).unwrap();
    let config = int4(false);
    let calibration = Samples::single(
        "input",
        TensorData::F32(float_array("sample_models/data/digits_calib_x.npy")),
        "calibration digits",
    )
    .unwrap();
    let mut reports = 0usize;
    let result = adaround_model(
        &model.graph,
        &config,
        &calibration,
        &AdaRoundOptions::default(),
        &mut |_| reports += 1,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(result.layers.len(), 4, "three convs and the classifier");
    assert!(reports > 0);
    for layer in &result.layers {
        eprintln!(
            "{}: reconstruction error nearest {:.5} → AdaRound {:.5} ({} of {} weights flipped)",
            layer.node, layer.nearest_error, layer.adaround_error, layer.flipped, layer.weights
        );
        assert!(
            layer.adaround_error < layer.nearest_error,
            "{}: {} vs {}",
            layer.node,
            layer.adaround_error,
            layer.nearest_error
        );
        // The curve starts at the float weights (h = frac) and ends with hard decisions.
        assert!(layer.curve.first().unwrap().beta.is_none());
        assert_eq!(layer.curve.last().unwrap().beta, Some(2.0));
    }

    let no_stats = BTreeMap::new();
    let nearest = QuantizedModel::prepare(&model.graph, &config, &no_stats).unwrap();
    let rounded = QuantizedModel::prepare(&model.graph, &result.config, &no_stats).unwrap();
    assert!(rounded.warnings.is_empty(), "{:?}", rounded.warnings);
    assert!(rounded.weights.iter().all(|w| w.adaround));
    // The config's learned rounding gives exactly the optimiser's de-quantized weights.
    for layer in &result.layers {
        let kept = rounded.graph.initializers[&layer.tensor]
            .data
            .as_f32()
            .unwrap();
        assert_eq!(kept, &layer.values, "{}", layer.tensor);
        assert_ne!(
            nearest.graph.initializers[&layer.tensor].data.as_f32(),
            Some(&layer.values),
            "{}: AdaRound changed nothing",
            layer.tensor
        );
    }
    let (nearest_accuracy, adaround_accuracy) = (accuracy(&nearest), accuracy(&rounded));
    eprintln!(
        "sample CNN, int4 per-tensor weights, float activations: nearest {nearest_accuracy:.2}%, \
         AdaRound {adaround_accuracy:.2}%"
    );
    assert!(
        adaround_accuracy > nearest_accuracy,
        "{adaround_accuracy} vs {nearest_accuracy}"
    );
}

#[test]
fn adaround_per_channel_lowers_every_layer_error_on_the_sample_cnn() {
    let model: Model = load_model(&repo_path("sample_models/digits_cnn.onnx")).unwrap();
    let config = int4(true);
    let calibration = Samples::single(
        "input",
        TensorData::F32(float_array("sample_models/data/digits_calib_x.npy")),
        "calibration digits",
    )
    .unwrap();
    let result = adaround_model(
        &model.graph,
        &config,
        &calibration,
        &AdaRoundOptions::default(),
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    for layer in &result.layers {
        assert!(layer.per_channel);
        eprintln!(
            "{} (per channel): nearest {:.5} → AdaRound {:.5}",
            layer.node, layer.nearest_error, layer.adaround_error
        );
        assert!(layer.adaround_error < layer.nearest_error, "{}", layer.node);
    }
    let no_stats = BTreeMap::new();
    let nearest = QuantizedModel::prepare(&model.graph, &config, &no_stats).unwrap();
    let rounded = QuantizedModel::prepare(&model.graph, &result.config, &no_stats).unwrap();
    assert!(rounded.weights.iter().all(|w| w.adaround && w.per_channel));
    for layer in &result.layers {
        let kept = rounded.graph.initializers[&layer.tensor]
            .data
            .as_f32()
            .unwrap();
        assert_eq!(kept, &layer.values, "{}", layer.tensor);
    }
    let (nearest_accuracy, adaround_accuracy) = (accuracy(&nearest), accuracy(&rounded));
    eprintln!(
        "sample CNN, int4 per-channel weights: nearest {nearest_accuracy:.2}%, AdaRound \
         {adaround_accuracy:.2}%"
    );
    assert!(adaround_accuracy > nearest_accuracy);
}
