//! Reports of a quantized model: per-tensor and per-layer CSV, one JSON with everything, and a
//! Markdown summary of float vs quantized figures (accuracy for classifiers, every output's
//! SQNR, size and BitOps per inference) from the workflow's [`Evaluation`].

use serde::Serialize;
use serde_json::json;

use super::ranges::csv_field;
use crate::ir::Graph;
use crate::quant::config::QUANTIZABLE_OPS;
use crate::quant::{QuantConfig, QuantizedModel};
pub use crate::workflow::Evaluation;

/// Per-tensor CSV: every quantized weight (scheme and error) and activation (range, S, Z).
pub fn tensor_csv(quantized: &QuantizedModel) -> String {
    let mut out = String::from(
        "tensor,kind,layer,scheme,per_channel,min,max,scale,zero_point,mse,sqnr_db,max_abs_error,cosine\n",
    );
    for w in &quantized.weights {
        let (min, max, scale, zero) = match (w.ranges.as_slice(), w.params.as_slice()) {
            ([r], [p]) => (
                r.0.to_string(),
                r.1.to_string(),
                p.scale.to_string(),
                p.zero_point.to_string(),
            ),
            _ => Default::default(),
        };
        out.push_str(&format!(
            "{},weight,{},{},{},{min},{max},{scale},{zero},{},{},{},{}\n",
            csv_field(&w.tensor),
            csv_field(&w.node),
            w.scheme,
            w.per_channel,
            w.metrics.mse,
            w.metrics.sqnr_db,
            w.metrics.max_abs_error,
            w.metrics.cosine
        ));
    }
    for a in &quantized.activations {
        out.push_str(&format!(
            "{},activation,,{},false,{},{},{},{},,,,\n",
            csv_field(&a.tensor),
            if a.manual { "manual" } else { "calibrated" },
            a.range.0,
            a.range.1,
            a.params.scale,
            a.params.zero_point
        ));
    }
    out
}

/// One row per quantizable layer: what its weights and input became.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub layer: String,
    pub op_type: String,
    pub weight_scheme: Option<String>,
    pub per_channel: bool,
    pub weight_sqnr_db: Option<f64>,
    pub activation_bits: Option<u32>,
    pub input_range: Option<(f32, f32)>,
}

/// The layer rows of `graph` under `config`.
pub fn layer_rows(
    graph: &Graph,
    config: &QuantConfig,
    quantized: &QuantizedModel,
) -> Vec<LayerRow> {
    graph
        .nodes
        .iter()
        .filter(|n| QUANTIZABLE_OPS.contains(&n.op_type.as_str()))
        .map(|n| {
            let weight = n
                .input(1)
                .and_then(|w| quantized.weights.iter().find(|r| r.tensor == w));
            let input = n
                .input(0)
                .and_then(|x| quantized.activations.iter().find(|a| a.tensor == x));
            LayerRow {
                layer: n.name.clone(),
                op_type: n.op_type.clone(),
                weight_scheme: weight.map(|w| w.scheme.clone()),
                per_channel: weight.is_some_and(|w| w.per_channel),
                weight_sqnr_db: weight.map(|w| w.metrics.sqnr_db),
                activation_bits: config
                    .layer(&n.name)
                    .activations
                    .map(|a| a.bits)
                    .filter(|_| input.is_some()),
                input_range: input.map(|a| a.range),
            }
        })
        .collect()
}

/// The layer rows as CSV.
pub fn layer_csv(rows: &[LayerRow]) -> String {
    let mut out = String::from(
        "layer,op_type,weight_scheme,per_channel,weight_sqnr_db,activation_bits,input_min,input_max\n",
    );
    for r in rows {
        let (lo, hi) = r
            .input_range
            .map_or((String::new(), String::new()), |(a, b)| {
                (a.to_string(), b.to_string())
            });
        out.push_str(&format!(
            "{},{},{},{},{},{},{lo},{hi}\n",
            csv_field(&r.layer),
            r.op_type,
            r.weight_scheme.as_deref().unwrap_or("float"),
            r.per_channel,
            r.weight_sqnr_db.map(|v| v.to_string()).unwrap_or_default(),
            r.activation_bits.map(|v| v.to_string()).unwrap_or_default(),
        ));
    }
    out
}

/// The evaluation's figures as the report's JSON carries them.
fn evaluation_json(e: &Evaluation) -> serde_json::Value {
    let class = e.classification.as_ref();
    json!({
        "float_accuracy": e.float_accuracy(),
        "quantized_accuracy": e.quant_accuracy(),
        "top1_agreement": class.map(|c| c.agreement),
        "output_kl": class.map(|c| c.output_kl),
        "size_bytes": e.cost.map(|c| c.size_bytes),
        "float32_size_bytes": e.cost.map(|c| c.float_size_bytes),
        "bitops_per_inference": e.cost.map(|c| c.bitops),
        "float_bitops_per_inference": e.cost.map(|c| c.float_bitops),
        "outputs": e.outputs,
        "layers": e.layers,
        "samples": e.samples,
        "data": e.data,
        "synthetic": e.synthetic,
        "batch": e.batch,
    })
}

/// Everything in one JSON value.
pub fn report_json(
    model: &str,
    config: &QuantConfig,
    quantized: &QuantizedModel,
    layers: &[LayerRow],
    evaluation: Option<&Evaluation>,
) -> serde_json::Value {
    json!({
        "model": model,
        "config": config,
        "evaluation": evaluation.map(evaluation_json),
        "layers": layers,
        "weights": quantized.weights,
        "activations": quantized.activations,
    })
}

fn percent(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.2} %", 100.0 * v))
}

fn kib(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1} KiB", v / 1024.0))
}

fn db(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else if v > 0.0 {
        "∞".into()
    } else {
        "–".into()
    }
}

/// A Markdown summary: float vs quantized accuracy, size and BitOps, every output's error,
/// then the layer table.
pub fn markdown_summary(
    model: &str,
    quantized: &QuantizedModel,
    layers: &[LayerRow],
    evaluation: Option<&Evaluation>,
) -> String {
    let class = evaluation.and_then(|e| e.classification.as_ref());
    let cost = evaluation.and_then(|e| e.cost);
    let mut md = format!("# Quantization report: {model}\n\n");
    if let Some(e) = evaluation {
        md.push_str(&format!(
            "Measured on {} ({} samples, {}).\n\n",
            e.data,
            e.samples,
            e.batch.describe()
        ));
    }
    md.push_str("| | float | quantized |\n| --- | --- | --- |\n");
    md.push_str(&format!(
        "| top-1 accuracy | {} | {} |\n",
        percent(class.and_then(|c| c.float_accuracy)),
        percent(class.and_then(|c| c.quant_accuracy))
    ));
    md.push_str(&format!(
        "| parameter size | {} | {} |\n",
        kib(cost.map(|c| c.float_size_bytes)),
        kib(cost.map(|c| c.size_bytes))
    ));
    md.push_str(&format!(
        "| BitOps per inference | {} | {} |\n",
        cost.map_or("–".into(), |c| format!("{:.3e}", c.float_bitops as f64)),
        cost.map_or("–".into(), |c| format!("{:.3e}", c.bitops as f64)),
    ));
    md.push_str(&format!(
        "\nTop-1 agreement with float: {}. {} weight tensors and {} activations quantized.\n\n",
        percent(class.map(|c| c.agreement)),
        quantized.weights.len(),
        quantized.activations.len()
    ));
    if let Some(e) = evaluation.filter(|e| !e.outputs.is_empty()) {
        md.push_str("| output | SQNR (dB) | cosine | max abs error | KL |\n| --- | --- | --- | --- | --- |\n");
        for o in &e.outputs {
            md.push_str(&format!(
                "| {} | {} | {:.5} | {:.4e} | {} |\n",
                o.name,
                db(o.sqnr_db),
                o.cosine,
                o.max_abs_error,
                o.kl.map_or("–".into(), |k| format!("{k:.3e}"))
            ));
        }
        md.push('\n');
    }
    md.push_str("| layer | op | weights | weight SQNR (dB) | input bits | input range |\n| --- | --- | --- | --- | --- | --- |\n");
    for r in layers {
        md.push_str(&format!(
            "| {} | {} | {}{} | {} | {} | {} |\n",
            r.layer,
            r.op_type,
            r.weight_scheme.as_deref().unwrap_or("float"),
            if r.per_channel { " per-channel" } else { "" },
            r.weight_sqnr_db.map_or("–".into(), |v| format!("{v:.2}")),
            r.activation_bits.map_or("float".into(), |b| b.to_string()),
            r.input_range
                .map_or("–".into(), |(a, b)| format!("[{a:.4}, {b:.4}]")),
        ));
    }
    md
}
