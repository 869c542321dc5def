//! Quantization encodings for other toolchains, and their import as manual ranges.
//!
//! AIMET's two JSON schemas (which Qualcomm QNN/SNPE take as overrides): the legacy `0.6.1`
//! (`activation_encodings` / `param_encodings` keyed by tensor name, each a list of
//! `{bitwidth, dtype, is_symmetric, min, max, offset, scale}`, one entry per channel) and
//! `1.0.0` (lists of `{name, dtype, enc_type, bw, is_sym, scale[], offset[]}`). AIMET's grid is
//! unsigned, x = scale·(q + offset) with q in [0, 2^bw − 1], so offset = qmin − Z of
//! Quantscope's r = S·(q − Z) and the range is [scale·offset, scale·(offset + 2^bw − 1)]
//! (symmetric: ±scale·(2^(bw−1) − 1), which gives the same scale back). Legacy `min`/`max` are
//! the clip range the quantizer was made from, so manual ranges round-trip exactly.
//!
//! Import also reads onnxruntime's `TensorQuantOverrides` (tensor name → list of
//! `{rmin, rmax}` or `{scale, zero_point, quant_type}`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::quant::{LinearParams, QuantConfig, QuantizedModel};

/// Which AIMET schema to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AimetSchema {
    /// `version` "0.6.1": dictionaries keyed by tensor name.
    Legacy,
    /// `version` "1.0.0": lists of named encodings.
    V1,
}

/// AIMET's offset of linear parameters: qmin − Z (≤ 0 when the range includes zero).
fn aimet_offset(p: &LinearParams) -> i64 {
    i64::from(p.grid.qmin()) - i64::from(p.zero_point)
}

/// Real range [scale·offset, scale·(offset + 2^bw − 1)] of an asymmetric encoding, computed in
/// f32 as Quantscope's [`LinearParams::range`] does.
fn aimet_range(scale: f32, offset: i64, bits: u32) -> (f32, f32) {
    let levels = (1i64 << bits) - 1;
    ((offset as f32) * scale, ((offset + levels) as f32) * scale)
}

fn is_symmetric(p: &LinearParams) -> bool {
    // Signed grids with Z = 0, or unsigned grids centred at 2^(b−1).
    (p.grid.signed && p.zero_point == 0)
        || (!p.grid.signed && p.zero_point == 1 << (p.grid.bits - 1))
}

/// A legacy entry: `min`/`max` are the clip range the quantizer was made from (so manual ranges
/// come back exactly), `scale`/`offset` the resulting grid.
fn legacy_entry(p: &LinearParams, (min, max): (f32, f32)) -> Value {
    json!({
        "bitwidth": p.grid.bits,
        "dtype": "int",
        "is_symmetric": if is_symmetric(p) { "True" } else { "False" },
        "max": max,
        "min": min,
        "offset": aimet_offset(p),
        "scale": p.scale,
    })
}

fn v1_entry(name: &str, params: &[LinearParams]) -> Option<Value> {
    let first = params.first()?;
    Some(json!({
        "name": name,
        "dtype": "INT",
        "enc_type": if params.len() > 1 { "PER_CHANNEL" } else { "PER_TENSOR" },
        "bw": first.grid.bits,
        "is_sym": params.iter().all(is_symmetric),
        "scale": params.iter().map(|p| p.scale).collect::<Vec<_>>(),
        "offset": params.iter().map(aimet_offset).collect::<Vec<_>>(),
    }))
}

/// The encodings of a quantized model in `schema`. Weights of non-linear schemes (binary,
/// ternary, k-means) have no linear encoding and are left out.
pub fn aimet_encodings(quantized: &QuantizedModel, schema: AimetSchema) -> Value {
    match schema {
        AimetSchema::Legacy => {
            let activations: serde_json::Map<String, Value> = quantized
                .activations
                .iter()
                .map(|a| (a.tensor.clone(), json!([legacy_entry(&a.params, a.range)])))
                .collect();
            let params: serde_json::Map<String, Value> = quantized
                .weights
                .iter()
                .filter(|w| !w.params.is_empty())
                .map(|w| {
                    let entries: Vec<Value> = w
                        .params
                        .iter()
                        .zip(&w.ranges)
                        .map(|(p, r)| legacy_entry(p, *r))
                        .collect();
                    (w.tensor.clone(), Value::Array(entries))
                })
                .collect();
            json!({
                "version": "0.6.1",
                "activation_encodings": activations,
                "param_encodings": params,
                "excluded_layers": [],
                "quantizer_args": {},
            })
        }
        AimetSchema::V1 => {
            let activations: Vec<Value> = quantized
                .activations
                .iter()
                .filter_map(|a| v1_entry(&a.tensor, &[a.params]))
                .collect();
            let params: Vec<Value> = quantized
                .weights
                .iter()
                .filter_map(|w| v1_entry(&w.tensor, &w.params))
                .collect();
            json!({
                "version": "1.0.0",
                "activation_encodings": activations,
                "param_encodings": params,
                "excluded_layers": [],
                "quantizer_args": {},
            })
        }
    }
}

/// Refuses a model with activations quantized per channel (channels clipped by hand) for a
/// format that cannot carry them, naming the first such tensor: the TensorRT calibration cache
/// holds one scale per tensor, and AIMET's 0.6.1 and 1.0.0 schemas give per-channel encodings
/// no axis (a list of encodings, or `enc_type` PER_CHANNEL, assumed along a weight's output
/// channels), so the file would not say which axis the channels run along.
pub fn refuse_activation_channels(quantized: &QuantizedModel, format: &str) -> Result<()> {
    let Some(a) = quantized.activations.iter().find(|a| a.channels.is_some()) else {
        return Ok(());
    };
    let channels = a
        .channels
        .as_ref()
        .map(|c| c.channels())
        .unwrap_or_default();
    let why = if format == "trt-cache" {
        "the TensorRT calibration cache holds one scale per activation"
    } else {
        "AIMET 0.6.1/1.0.0 encodings give per-channel encodings no axis"
    };
    Err(Error::Quant {
        tensor: a.tensor.clone(),
        msg: format!(
            "channels {channels:?} are clipped by hand (quantized per channel), but {why}; \
             export QDQ instead, or reset the channel clips"
        ),
    })
}

/// TensorRT's calibration cache: a `TRT-<version>-EntropyCalibration2` header, then one
/// `tensor: <scale>` line per activation, the scale amax/127 written as the hex digits of its
/// f32 bit pattern (most significant first, as TensorRT prints it).
pub fn trt_calibration_cache(quantized: &QuantizedModel, trt_version: u32) -> String {
    let mut text = format!("TRT-{trt_version}-EntropyCalibration2\n");
    for a in &quantized.activations {
        let amax = a.range.0.abs().max(a.range.1.abs());
        let scale = amax / 127.0;
        text.push_str(&format!("{}: {:08x}\n", a.tensor, scale.to_bits()));
    }
    text
}

/// Reads a TensorRT calibration cache into tensor → scale (for checks and import).
pub fn parse_trt_calibration_cache(text: &str, path: &Path) -> Result<BTreeMap<String, f32>> {
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.starts_with("TRT-") => {}
        _ => {
            return Err(Error::format(
                path,
                "not a TensorRT calibration cache (the first line should be TRT-<version>-<calibrator>)",
            ));
        }
    }
    let mut scales = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        let Some((name, hex)) = line.rsplit_once(": ") else {
            return Err(Error::format(
                path,
                format!("line {}: expected 'tensor: hex'", i + 2),
            ));
        };
        let bits = u32::from_str_radix(hex.trim(), 16).map_err(|_| {
            Error::format(path, format!("line {}: '{hex}' is not a hex f32", i + 2))
        })?;
        scales.insert(name.to_string(), f32::from_bits(bits));
    }
    Ok(scales)
}

/// What importing encodings did: ranges applied, and entries skipped with the reason.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImportReport {
    /// Activation tensors whose manual range was set.
    pub activations: Vec<String>,
    /// Weight tensors whose manual range was set.
    pub weights: Vec<String>,
    /// (tensor or entry, reason) of everything not applied.
    pub skipped: Vec<(String, String)>,
}

impl ImportReport {
    /// One line per skipped entry, for printing.
    pub fn skipped_lines(&self) -> Vec<String> {
        self.skipped
            .iter()
            .map(|(name, why)| format!("skipped '{name}': {why}"))
            .collect()
    }
}

/// One encoding read from a file, before it is checked against the model.
struct Incoming {
    name: String,
    bits: Option<u64>,
    /// One range per channel (one for per-tensor).
    ranges: Vec<(f32, f32)>,
}

/// Imports an encodings file (AIMET 0.6.1 or 1.0.0, or onnxruntime `TensorQuantOverrides`,
/// told apart by content) into `config`'s manual ranges. Malformed JSON is an error; entries
/// naming unknown tensors, with bit widths other than the configured ones, or per-channel
/// ranges of the wrong channel count are skipped and reported; a weight's or an activation's
/// per-channel ranges become manual clips of every channel (an activation's along the axis its
/// consuming layer defines, as the calibration's per-channel statistics).
pub fn import_encodings(
    path: &Path,
    graph: &Graph,
    config: &mut QuantConfig,
) -> Result<ImportReport> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    import_encodings_json(&json, path, graph, config)
}

/// [`import_encodings`] from parsed JSON; `path` names the source in messages.
pub fn import_encodings_json(
    json: &Value,
    path: &Path,
    graph: &Graph,
    config: &mut QuantConfig,
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let (activations, params) = if json.get("activation_encodings").is_some()
        || json.get("param_encodings").is_some()
    {
        (
            read_aimet_section(
                json.get("activation_encodings"),
                "activation_encodings",
                path,
                &mut report,
            )?,
            read_aimet_section(
                json.get("param_encodings"),
                "param_encodings",
                path,
                &mut report,
            )?,
        )
    } else if let Some(map) = json.as_object() {
        (read_ort_overrides(map, &mut report), Vec::new())
    } else {
        return Err(Error::format(
            path,
            "not an encodings file: expected AIMET activation_encodings/param_encodings or a TensorQuantOverrides object",
        ));
    };
    let weights = weight_layers(graph);
    let activations_known = activation_layers(graph);
    for enc in activations.into_iter().chain(params) {
        let expected_bits = if let Some(node) = weights.get(enc.name.as_str()) {
            config.layer(node).weights.map(|w| w.scheme.bits())
        } else if let Some(node) = activations_known.get(enc.name.as_str()) {
            config.layer(node).activations.map(|a| a.bits)
        } else {
            report.skipped.push((
                enc.name,
                "no quantizable tensor of this name in the model".into(),
            ));
            continue;
        };
        if let (Some(got), Some(want)) = (enc.bits, expected_bits)
            && got != u64::from(want)
        {
            report.skipped.push((
                enc.name,
                format!("{got}-bit encoding, but the tensor is quantized to {want} bits"),
            ));
            continue;
        }
        if let Some(bad) = enc
            .ranges
            .iter()
            .find(|r| !(r.0.is_finite() && r.1.is_finite() && r.0 <= r.1))
        {
            report
                .skipped
                .push((enc.name, format!("invalid range [{}, {}]", bad.0, bad.1)));
            continue;
        }
        let is_weight = weights.contains_key(enc.name.as_str());
        match enc.ranges.as_slice() {
            [range] if is_weight => {
                config.weight_ranges.insert(enc.name.clone(), *range);
                report.weights.push(enc.name);
            }
            [range] => {
                config.activation_ranges.insert(enc.name.clone(), *range);
                report.activations.push(enc.name);
            }
            ranges if is_weight => match channel_count(graph, &enc.name) {
                Some(n) if n == ranges.len() => {
                    // Every channel's range set by hand: the tensor is quantized per channel
                    // with exactly these ranges.
                    config.weight_ranges.remove(&enc.name);
                    config.weight_channel_ranges.insert(
                        enc.name.clone(),
                        ranges.iter().copied().enumerate().collect(),
                    );
                    report.weights.push(enc.name);
                }
                n => report.skipped.push((
                    enc.name,
                    format!(
                        "{} per-channel ranges for a tensor with {} channels",
                        ranges.len(),
                        n.map_or("no".to_string(), |n| n.to_string())
                    ),
                )),
            },
            ranges => match crate::quant::fake::channel_clips::channel_count(graph, &enc.name) {
                Some(n) if n == ranges.len() => {
                    // Every channel clipped by hand, along the axis the consuming layer
                    // defines (the file names none): quantized per channel with these ranges.
                    config.activation_channel_ranges.insert(
                        enc.name.clone(),
                        ranges.iter().copied().enumerate().collect(),
                    );
                    report.activations.push(enc.name);
                }
                n => report.skipped.push((
                    enc.name,
                    format!(
                        "{} per-channel ranges for an activation with {} channels along the \
                         axis its consuming layer defines",
                        ranges.len(),
                        n.map_or("an unknown number of".to_string(), |n| n.to_string())
                    ),
                )),
            },
        }
    }
    Ok(report)
}

/// Weight tensors of quantizable layers → the (first) layer reading them.
/// The length of the channel axis of the initializer `name`, if it has one.
fn channel_count(graph: &Graph, name: &str) -> Option<usize> {
    let tensor = graph.initializers.get(name)?;
    tensor.shape().get(tensor.channel_axis?).copied()
}

fn weight_layers(graph: &Graph) -> BTreeMap<&str, &str> {
    let mut map = BTreeMap::new();
    for n in quantizable(graph) {
        for w in crate::quant::config::weight_input_names(n) {
            if graph.initializers.contains_key(w) {
                map.entry(w).or_insert(n.name.as_str());
            }
        }
    }
    map
}

/// Data inputs of quantizable layers → the (first) layer reading them.
fn activation_layers(graph: &Graph) -> BTreeMap<&str, &str> {
    let mut map = BTreeMap::new();
    for n in quantizable(graph) {
        for (i, input) in n.inputs.iter().enumerate().take(2) {
            if input.is_empty() || graph.initializers.contains_key(input) {
                continue;
            }
            if i == 1 && n.op_type != "MatMul" {
                continue;
            }
            map.entry(input.as_str()).or_insert(n.name.as_str());
        }
    }
    map
}

fn quantizable(graph: &Graph) -> impl Iterator<Item = &crate::ir::Node> {
    graph
        .nodes
        .iter()
        .filter(|n| crate::quant::config::QUANTIZABLE_OPS.contains(&n.op_type.as_str()))
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// Reads one AIMET section in either schema (object keyed by name, or list of named entries).
fn read_aimet_section(
    section: Option<&Value>,
    what: &str,
    path: &Path,
    report: &mut ImportReport,
) -> Result<Vec<Incoming>> {
    let mut out = Vec::new();
    match section {
        None => {}
        Some(Value::Object(map)) => {
            for (name, entries) in map {
                let Some(entries) = entries.as_array().filter(|e| !e.is_empty()) else {
                    report.skipped.push((
                        name.clone(),
                        "expected a non-empty list of encodings".into(),
                    ));
                    continue;
                };
                let mut ranges = Vec::new();
                let mut bits = None;
                let mut bad = None;
                for e in entries {
                    let bw = e.get("bitwidth").and_then(Value::as_u64);
                    bits = bits.or(bw);
                    match (
                        number(e.get("min")),
                        number(e.get("max")),
                        number(e.get("scale")),
                        number(e.get("offset")),
                        bw,
                    ) {
                        (Some(min), Some(max), _, _, _) => ranges.push((min as f32, max as f32)),
                        (_, _, Some(scale), Some(offset), Some(bw)) if (1..=32).contains(&bw) => {
                            ranges.push(aimet_range(scale as f32, offset as i64, bw as u32));
                        }
                        _ => bad = Some("an entry has neither min/max nor scale/offset/bitwidth"),
                    }
                }
                match bad {
                    Some(why) => report.skipped.push((name.clone(), why.into())),
                    None => out.push(Incoming {
                        name: name.clone(),
                        bits,
                        ranges,
                    }),
                }
            }
        }
        Some(Value::Array(list)) => {
            for (i, e) in list.iter().enumerate() {
                let Some(name) = e.get("name").and_then(Value::as_str) else {
                    report
                        .skipped
                        .push((format!("{what}[{i}]"), "has no name".into()));
                    continue;
                };
                let bw = e.get("bw").and_then(|b| u32::try_from(b.as_u64()?).ok());
                let scales: Vec<f64> = e
                    .get("scale")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                let offsets: Vec<i64> = e
                    .get("offset")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default();
                let Some(bw) = bw.filter(|b| (1..=32).contains(b)) else {
                    report
                        .skipped
                        .push((name.to_string(), "missing or invalid bit width 'bw'".into()));
                    continue;
                };
                if scales.is_empty() || scales.len() != offsets.len() {
                    report.skipped.push((
                        name.to_string(),
                        format!("{} scales and {} offsets", scales.len(), offsets.len()),
                    ));
                    continue;
                }
                let symmetric = e.get("is_sym").and_then(Value::as_bool).unwrap_or(false);
                let ranges = scales
                    .iter()
                    .zip(&offsets)
                    .map(|(&s, &o)| {
                        if symmetric {
                            // ±S·(2^(b−1) − 1): the symmetric range that gives back scale S.
                            let half = ((1i64 << (bw - 1)) - 1) as f32 * s as f32;
                            (-half, half)
                        } else {
                            aimet_range(s as f32, o, bw)
                        }
                    })
                    .collect();
                out.push(Incoming {
                    name: name.to_string(),
                    bits: Some(u64::from(bw)),
                    ranges,
                });
            }
        }
        Some(_) => {
            return Err(Error::format(
                path,
                format!("'{what}' should be an object or a list"),
            ));
        }
    }
    Ok(out)
}

/// onnxruntime `TensorQuantOverrides`: name → [{rmin, rmax} | {scale, zero_point, quant_type}].
fn read_ort_overrides(
    map: &serde_json::Map<String, Value>,
    report: &mut ImportReport,
) -> Vec<Incoming> {
    let mut out = Vec::new();
    for (name, entries) in map {
        let Some(entry) = entries
            .as_array()
            .and_then(|a| a.first())
            .or(Some(entries).filter(|e| e.is_object()))
        else {
            report
                .skipped
                .push((name.clone(), "expected a list of overrides".into()));
            continue;
        };
        let quant_type = entry.get("quant_type").and_then(Value::as_str);
        let grid = match quant_type.map(ort_grid) {
            None => None,
            Some(Some(g)) => Some(g),
            Some(None) => {
                report.skipped.push((
                    name.clone(),
                    format!("unknown quant_type '{}'", quant_type.unwrap_or_default()),
                ));
                continue;
            }
        };
        let range = match (
            number(entry.get("rmin")),
            number(entry.get("rmax")),
            number(entry.get("scale")),
            entry.get("zero_point").and_then(Value::as_i64),
        ) {
            (Some(lo), Some(hi), _, _) => (lo as f32, hi as f32),
            (_, _, Some(scale), Some(zero)) => {
                let Some((bits, signed)) = grid else {
                    report
                        .skipped
                        .push((name.clone(), "scale/zero_point without quant_type".into()));
                    continue;
                };
                let qmin: i64 = if signed { -(1 << (bits - 1)) } else { 0 };
                let qmax: i64 = if signed {
                    (1 << (bits - 1)) - 1
                } else {
                    (1 << bits) - 1
                };
                let s = scale as f32;
                (((qmin - zero) as f32) * s, ((qmax - zero) as f32) * s)
            }
            _ => {
                report.skipped.push((
                    name.clone(),
                    "neither rmin/rmax nor scale/zero_point".into(),
                ));
                continue;
            }
        };
        out.push(Incoming {
            name: name.clone(),
            bits: grid.map(|g| u64::from(g.0)),
            ranges: vec![range],
        });
    }
    out
}

/// (bits, signed) of an onnxruntime `QuantType` name.
fn ort_grid(name: &str) -> Option<(u32, bool)> {
    let name = name.strip_prefix("QuantType.").unwrap_or(name);
    Some(match name {
        "QInt8" => (8, true),
        "QUInt8" => (8, false),
        "QInt16" => (16, true),
        "QUInt16" => (16, false),
        "QInt4" => (4, true),
        "QUInt4" => (4, false),
        _ => return None,
    })
}
