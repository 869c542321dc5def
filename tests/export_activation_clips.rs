//! Per-channel activation clips in the exports: the QDQ file against what onnxruntime computed
//! from it (fixtures from `scripts/check_activation_clips.py`: the sample CNN and PP-OCR's
//! direction classifier from `../shared/real_models`, one inner convolution input clipped in its
//! widest channel), and the formats that cannot carry them refusing by name.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use common::{read_named, repo_path};
use ndarray::{ArrayD, Axis, Slice};
use quantscope::engine::{Plan, RunOptions};
use quantscope::export::{ExportFormat, ExportInputs, export_to, qdq_model};
use quantscope::ir::{Model, TensorData};
use quantscope::load::load_model;
use quantscope::quant::{IntGrid, LinearParams, QuantConfig, QuantizedModel};
use quantscope::workflow::{DataSource, RunControl, calibrate, read_samples};
use sha2::{Digest, Sha256};

/// The int8 config `quantscope export --weights int8 --granularity channel --calib minmax`
/// builds, prepared on the case's calibration data; with `clip` on `tensor`'s `channel` if given.
fn prepared(
    model: &Model,
    data: &Path,
    clip: Option<(&str, usize, (f32, f32))>,
) -> (QuantConfig, QuantizedModel) {
    let samples = read_samples(&model.graph, &DataSource::File(data.to_path_buf())).unwrap();
    let calibration = calibrate(&model.graph, &samples, None, &RunControl::default()).unwrap();
    let mut config = QuantConfig::int8_per_channel();
    if let Some((tensor, channel, range)) = clip {
        config
            .activation_channel_ranges
            .insert(tensor.to_string(), BTreeMap::from([(channel, range)]));
    }
    let quantized = QuantizedModel::prepare(&model.graph, &config, &calibration.stats).unwrap();
    (config, quantized)
}

fn qdq_sha256(model: &Model, quantized: &QuantizedModel) -> String {
    let qdq = qdq_model(&model.graph, quantized).unwrap();
    let bytes = prost::Message::encode_to_vec(&qdq.model_proto().unwrap());
    format!("{:x}", Sha256::digest(&bytes))
}

/// The feeds onnxruntime ran in the script: an .npy's first 64 samples at once, or an .npz's
/// samples one at a time.
fn feeds(model: &Model, data: &Path) -> Vec<HashMap<String, TensorData>> {
    let named = read_named(data);
    if data.extension().is_some_and(|e| e == "npy") {
        let (_, x) = named.into_iter().next().unwrap();
        let x = x.as_f32().unwrap();
        let head = x.slice_axis(Axis(0), Slice::from(..64.min(x.shape()[0])));
        let name = model.graph.inputs[0].name.clone();
        return vec![HashMap::from([(name, TensorData::F32(head.to_owned()))])];
    }
    let inputs: Vec<&str> = model.graph.inputs.iter().map(|i| i.name.as_str()).collect();
    let named: Vec<(String, ArrayD<f32>)> = named
        .into_iter()
        .filter(|(k, _)| inputs.contains(&k.as_str()))
        .map(|(k, v)| (k, v.to_f32()))
        .collect();
    let n = named[0].1.shape()[0];
    (0..n)
        .map(|i| {
            named
                .iter()
                .map(|(k, v)| {
                    let one = v.slice_axis(Axis(0), Slice::from(i..i + 1)).to_owned();
                    (k.clone(), TensorData::F32(one))
                })
                .collect()
        })
        .collect()
}

/// Quantscope's fake-quant simulation of `quantized` on `feeds`, each output joined on axis 0.
fn simulate(
    quantized: &QuantizedModel,
    feeds: Vec<HashMap<String, TensorData>>,
) -> Vec<ArrayD<f32>> {
    let plan = Plan::new(&quantized.graph).unwrap();
    let mut joined: Vec<Vec<ArrayD<f32>>> = Vec::new();
    for feed in feeds {
        let mut hook = quantized.hook();
        let out = plan
            .run(feed, Some(&mut hook), RunOptions::default())
            .unwrap();
        for (i, (_, value)) in out.into_iter().enumerate() {
            if joined.len() <= i {
                joined.push(Vec::new());
            }
            joined[i].push(value.to_f32());
        }
    }
    joined
        .into_iter()
        .map(|parts| {
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            ndarray::concatenate(Axis(0), &views).unwrap()
        })
        .collect()
}

/// SQNR (dB) of `other` against `reference`.
fn sqnr_db(reference: &ArrayD<f32>, other: &ArrayD<f32>) -> f64 {
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (r, o) in reference.iter().zip(other) {
        signal += f64::from(*r).powi(2);
        noise += (f64::from(*r) - f64::from(*o)).powi(2);
    }
    if noise == 0.0 {
        200.0
    } else {
        10.0 * (signal / noise).log10()
    }
}

#[test]
fn an_activation_channel_clip_changes_only_that_channels_scale_and_onnxruntime_agrees() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/fixtures/export/activation_clips.json")).unwrap(),
    )
    .unwrap();
    let cases = fixture["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 2, "the sample CNN and a real model");
    for (key, case) in cases {
        let model = load_model(&repo_path(case["model"].as_str().unwrap())).unwrap();
        let data = repo_path(case["data"].as_str().unwrap());
        let tensor = case["tensor"].as_str().unwrap();
        let channel = case["channel"].as_u64().unwrap() as usize;
        let clip: Vec<f32> = serde_json::from_value(case["clip"].clone()).unwrap();
        let clip = (clip[0], clip[1]);
        // The plain export is the file the script started from.
        let (_, plain) = prepared(&model, &data, None);
        assert_eq!(
            qdq_sha256(&model, &plain),
            case["plain_sha256"].as_str().unwrap(),
            "{key}: rerun scripts/check_activation_clips.py"
        );
        let (_, clipped) = prepared(&model, &data, Some((tensor, channel, clip)));
        // The clipped export is the file onnxruntime ran (checker, per-axis QDQ, only this
        // channel's scale changed: checked by the script on these bytes).
        assert_eq!(
            qdq_sha256(&model, &clipped),
            case["sha256"].as_str().unwrap(),
            "{key}: the clipped export differs from the one scripts/check_activation_clips.py checked"
        );
        let before = plain
            .activations
            .iter()
            .find(|a| a.tensor == tensor)
            .unwrap();
        let after = clipped
            .activations
            .iter()
            .find(|a| a.tensor == tensor)
            .unwrap();
        assert_eq!(after.params, before.params, "{key}: the tensor's own grid");
        let channels = after.channels.as_ref().unwrap();
        assert_eq!(channels.axis, 1, "{key}: a convolution's input");
        let scales: Vec<f32> = channels
            .all_params(after.params)
            .unwrap()
            .iter()
            .map(|p| p.scale)
            .collect();
        assert_eq!(scales.len() as u64, case["channels"].as_u64().unwrap());
        let grid = IntGrid::new(8, false, false).unwrap();
        let own = LinearParams::from_range(clip.0, clip.1, grid, false).unwrap();
        for (c, s) in scales.iter().enumerate() {
            let want = if c == channel {
                own.scale
            } else {
                before.params.scale
            };
            assert_eq!(*s, want, "{key}: channel {c}");
        }
        let fixture_scales: Vec<f32> =
            serde_json::from_value(case["scales_after"].clone()).unwrap();
        assert_eq!(scales, fixture_scales, "{key}");
        // Every other quantizer is untouched.
        for (a, b) in plain.activations.iter().zip(&clipped.activations) {
            if a.tensor != tensor {
                assert_eq!((&a.tensor, a.params), (&b.tensor, b.params), "{key}");
                assert!(b.channels.is_none());
            }
        }
        for (a, b) in plain.weights.iter().zip(&clipped.weights) {
            assert_eq!(a.params, b.params, "{key}: {}", a.tensor);
        }
        // Quantscope's simulation against onnxruntime running the exported file: closer to it
        // than the clip moves the outputs, and as close as on the plain file.
        let ort = read_named(&repo_path(&format!(
            "tests/fixtures/export/activation_clips_{key}.npz"
        )));
        let ours = simulate(&clipped, feeds(&model, &data));
        let plain_ours = simulate(&plain, feeds(&model, &data));
        for (i, (o, p)) in ours.iter().zip(&plain_ours).enumerate() {
            let theirs = ort[&format!("output_{i}")].to_f32();
            let theirs_plain = ort[&format!("plain_output_{i}")].to_f32();
            assert_eq!(o.shape(), theirs.shape(), "{key}: output {i}");
            let agreement = sqnr_db(&theirs, o);
            let plain_agreement = sqnr_db(&theirs_plain, p);
            let clip_effect = sqnr_db(p, o);
            println!(
                "{key}: output {i}: simulation vs onnxruntime {agreement:.1} dB clipped, \
                 {plain_agreement:.1} dB plain; the clip moves the simulation by \
                 {clip_effect:.1} dB (onnxruntime: {} dB)",
                case["onnxruntime_clipped_vs_plain_db"]
            );
            assert!(
                agreement > clip_effect + 6.0,
                "{key}: output {i}: the simulation is {agreement:.1} dB from onnxruntime, the \
                 clip itself moves it by {clip_effect:.1} dB"
            );
            assert!(
                agreement >= plain_agreement - 3.0,
                "{key}: output {i}: {agreement:.1} dB clipped vs {plain_agreement:.1} dB plain"
            );
        }
    }
}

#[test]
fn formats_without_per_channel_activations_refuse_by_name_and_the_ranges_table_lists_them() {
    let path = repo_path("sample_models/digits_cnn.onnx");
    let model = load_model(&path).unwrap();
    let data = repo_path("sample_models/data/digits_calib_x.npy");
    let conv = model
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "Conv")
        .nth(1)
        .unwrap();
    let tensor = conv.inputs[0].clone();
    let (config, quantized) = prepared(&model, &data, Some((&tensor, 2, (0.0, 0.5))));
    let inputs = ExportInputs {
        model: &model,
        config: &config,
        quantized: &quantized,
        evaluation: None,
    };
    let dir = tempfile::tempdir().unwrap();
    for (format, why) in [
        (ExportFormat::TrtCache, "one scale per activation"),
        (ExportFormat::Aimet, "no axis"),
        (ExportFormat::Aimet1, "no axis"),
    ] {
        let out = dir.path().join(format!("{}.out", format.name()));
        let e = export_to(format, &inputs, &out).unwrap_err().to_string();
        assert!(
            e.contains(&format!("'{tensor}'")) && e.contains("[2]") && e.contains(why),
            "{}: {e}",
            format.name()
        );
        assert!(!out.exists(), "{}: nothing written", format.name());
    }
    let out = dir.path().join("ranges.csv");
    export_to(ExportFormat::Ranges, &inputs, &out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{tensor},activation,")))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].starts_with(&format!("{tensor},activation,,")),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].starts_with(&format!("{tensor},activation,2,0,0.5,")) && rows[1].ends_with(",true"),
        "{}",
        rows[1]
    );
    // QDQ carries it.
    let out = dir.path().join("model.onnx");
    let summary = export_to(ExportFormat::Qdq, &inputs, &out).unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
}

#[test]
fn per_channel_activation_encodings_import_as_channel_clips() {
    use quantscope::export::encodings::import_encodings_json;
    let model = load_model(&repo_path("sample_models/digits_cnn.onnx")).unwrap();
    let conv = model
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "Conv")
        .nth(1)
        .unwrap();
    let tensor = conv.inputs[0].clone();
    let channels = model.graph.initializers[&conv.inputs[1]].shape()[1];
    let entry = |c: usize| {
        serde_json::json!({"bitwidth": 8, "dtype": "int", "is_symmetric": "False",
            "min": 0.0, "max": 0.5 + c as f32, "offset": 0, "scale": 0.01})
    };
    let encodings = |n: usize| {
        serde_json::json!({
            "version": "0.6.1",
            "activation_encodings": { tensor.clone(): (0..n).map(entry).collect::<Vec<_>>() },
            "param_encodings": {},
        })
    };
    let path = Path::new("enc.json");
    let mut config = QuantConfig::int8_per_channel();
    let report =
        import_encodings_json(&encodings(channels), path, &model.graph, &mut config).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.activations, vec![tensor.clone()]);
    let clips = &config.activation_channel_ranges[&tensor];
    assert_eq!(clips.len(), channels);
    assert_eq!(clips[&3], (0.0, 3.5));
    // The wrong number of channels is skipped with the reason.
    let mut config = QuantConfig::int8_per_channel();
    let report =
        import_encodings_json(&encodings(channels + 1), path, &model.graph, &mut config).unwrap();
    assert!(config.activation_channel_ranges.is_empty());
    let (name, why) = &report.skipped[0];
    assert_eq!(name, &tensor);
    assert!(
        why.contains(&format!("{} per-channel ranges", channels + 1))
            && why.contains(&format!("{channels} channels")),
        "{why}"
    );
}

#[test]
fn sessions_keep_activation_channel_clips_and_drop_those_the_model_lacks() {
    use quantscope::export::Session;
    use quantscope::export::session::retain_existing;
    let path = repo_path("sample_models/digits_cnn.onnx");
    let model = load_model(&path).unwrap();
    let conv = model
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "Conv")
        .nth(1)
        .unwrap();
    let tensor = conv.inputs[0].clone();
    let channels = model.graph.initializers[&conv.inputs[1]].shape()[1];
    let mut config = QuantConfig::int8_per_channel();
    config.activation_channel_ranges.insert(
        tensor.clone(),
        BTreeMap::from([(1, (0.0, 0.5)), (channels, (0.0, 1.0))]),
    );
    config
        .activation_channel_ranges
        .insert("no_such_tensor".into(), BTreeMap::from([(0, (0.0, 1.0))]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    Session::new(&path, None, config.clone())
        .unwrap()
        .save(&file)
        .unwrap();
    // Saved as written, read back whole.
    assert_eq!(Session::read(&file).unwrap().config, config);
    let mut loaded = config;
    let dropped = retain_existing(&mut loaded, &model.graph);
    assert_eq!(
        loaded.activation_channel_ranges,
        BTreeMap::from([(tensor.clone(), BTreeMap::from([(1, (0.0, 0.5))]))])
    );
    assert!(
        dropped.contains(&"channel clip ranges of activation 'no_such_tensor'".to_string())
            && dropped.contains(&format!(
                "clip range of channel {channels} of activation '{tensor}'"
            )),
        "{dropped:?}"
    );
}
