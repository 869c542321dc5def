//! A plain table of every quantized tensor's range and parameters, as JSON or CSV.

use serde::Serialize;

use crate::quant::QuantizedModel;

/// One row: a quantized activation, or one channel (or the whole) of a quantized weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeRow {
    pub tensor: String,
    /// "activation" or "weight".
    pub kind: &'static str,
    /// Channel index for per-channel weights and for an activation's channels clipped by hand
    /// (its row without a channel holds the range of its other channels).
    pub channel: Option<usize>,
    pub min: f32,
    pub max: f32,
    pub scale: f32,
    pub zero_point: i32,
    pub bits: u32,
    pub signed: bool,
    /// Set by hand (activations, weight channels) rather than calibrated.
    pub manual: bool,
}

/// The rows of a quantized model: activations first, then weights of linear schemes.
pub fn range_rows(quantized: &QuantizedModel) -> Vec<RangeRow> {
    let mut rows = Vec::new();
    for a in &quantized.activations {
        rows.push(RangeRow {
            tensor: a.tensor.clone(),
            kind: "activation",
            channel: None,
            min: a.range.0,
            max: a.range.1,
            scale: a.params.scale,
            zero_point: a.params.zero_point,
            bits: a.params.grid.bits,
            signed: a.params.grid.signed,
            manual: a.manual,
        });
        // Channels clipped by hand; the activation's other channels use the row above.
        for clip in a.channels.iter().flat_map(|c| &c.clips) {
            rows.push(RangeRow {
                tensor: a.tensor.clone(),
                kind: "activation",
                channel: Some(clip.channel),
                min: clip.range.0,
                max: clip.range.1,
                scale: clip.params.scale,
                zero_point: clip.params.zero_point,
                bits: clip.params.grid.bits,
                signed: clip.params.grid.signed,
                manual: true,
            });
        }
    }
    for w in &quantized.weights {
        let per_channel = w.params.len() > 1;
        for (c, (range, p)) in w.ranges.iter().zip(&w.params).enumerate() {
            rows.push(RangeRow {
                tensor: w.tensor.clone(),
                kind: "weight",
                channel: per_channel.then_some(c),
                min: range.0,
                max: range.1,
                scale: p.scale,
                zero_point: p.zero_point,
                bits: p.grid.bits,
                signed: p.grid.signed,
                manual: per_channel && w.manual_channels.contains(&c),
            });
        }
    }
    rows
}

/// The rows as CSV with a header line (tensor names quoted when they hold commas or quotes).
pub fn ranges_csv(rows: &[RangeRow]) -> String {
    let mut out = String::from("tensor,kind,channel,min,max,scale,zero_point,bits,signed,manual\n");
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&r.tensor),
            r.kind,
            r.channel.map(|c| c.to_string()).unwrap_or_default(),
            r.min,
            r.max,
            r.scale,
            r.zero_point,
            r.bits,
            r.signed,
            r.manual
        ));
    }
    out
}

/// A CSV field, quoted (with doubled quotes) when needed.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
