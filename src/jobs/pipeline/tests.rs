//! Tests of the app's jobs on the sample models: calibration, evaluation, focus figures, cancel.

use std::path::PathBuf;

use super::*;
use crate::jobs::{JobContext, JobError};
use crate::load::load_model;
use crate::quant::{QuantConfig, WeightScheme};

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sample_models")
        .join(name)
}

fn int8() -> QuantConfig {
    QuantConfig::int8_per_channel()
}

#[test]
fn int8_keeps_the_cnn_accurate_and_ternary_costs_accuracy_and_size() {
    let path = sample("digits_cnn.onnx");
    let model = load_model(&path).unwrap();
    let data = read_data(&model.graph, &path, &DataSource::BundledDigits).unwrap();
    assert!(data.evaluation.labels.is_some());
    let ctx = JobContext::default();
    let stats = calibrate(&model.graph, &data.calibration, &ctx)
        .unwrap()
        .stats;
    let eval = |config: &QuantConfig| {
        evaluate_against(
            &model.graph,
            &model.graph,
            config,
            &stats,
            &data.evaluation,
            None,
            &ctx,
        )
        .unwrap()
    };
    let base = eval(&int8());
    let (float_acc, q_acc) = (
        base.float_accuracy().unwrap(),
        base.quant_accuracy().unwrap(),
    );
    assert!(float_acc > 0.9, "{float_acc}");
    assert!((float_acc - q_acc).abs() <= 0.02, "{float_acc} vs {q_acc}");
    assert!(
        base.layers.iter().all(|l| l.sqnr_db > 20.0),
        "{:?}",
        base.layers
    );
    let mut ternary = int8();
    if let Some(w) = ternary.default.weights.as_mut() {
        w.scheme = WeightScheme::Ternary { ttq: false };
    }
    let ternary = eval(&ternary);
    let (t, b) = (ternary.cost.unwrap(), base.cost.unwrap());
    assert!(t.size_bytes < b.size_bytes);
    assert!(t.bitops < b.bitops);
    let total = |e: &Evaluation| e.layers.iter().map(|l| l.sqnr_db).sum::<f64>();
    assert!(total(&ternary) < total(&base));
}

#[test]
fn weight_focus_reports_both_granularities() {
    let path = sample("digits_cnn.onnx");
    let model = load_model(&path).unwrap();
    let data = read_data(&model.graph, &path, &DataSource::Synthetic).unwrap();
    assert!(data.evaluation.synthetic && data.evaluation.labels.is_none());
    let ctx = JobContext::default();
    let stats = calibrate(&model.graph, &data.calibration, &ctx)
        .unwrap()
        .stats;
    let node = model
        .graph
        .nodes
        .iter()
        .find(|n| n.op_type == "Conv")
        .unwrap();
    let focus = Focus::Weight {
        tensor: node.input(1).unwrap().to_string(),
        node: node.name.clone(),
    };
    let eval = evaluate_against(
        &model.graph,
        &model.graph,
        &int8(),
        &stats,
        &data.evaluation,
        Some(&focus),
        &ctx,
    )
    .unwrap();
    assert_eq!(eval.float_accuracy(), None);
    let figures = eval.focus.unwrap();
    let (t, c) = (
        figures.per_tensor_sqnr_db.unwrap(),
        figures.per_channel_sqnr_db.unwrap(),
    );
    assert!(c >= t, "per channel {c} dB vs per tensor {t} dB");
    assert_eq!(figures.metrics.sqnr_db, c);
}

#[test]
fn a_cancelled_context_stops_calibration() {
    let path = sample("digits_cnn.onnx");
    let model = load_model(&path).unwrap();
    let data = read_data(&model.graph, &path, &DataSource::BundledDigits).unwrap();
    let ctx = JobContext::default();
    ctx.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        calibrate(&model.graph, &data.calibration, &ctx).unwrap_err(),
        JobError::Cancelled
    );
}
