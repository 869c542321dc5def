//! Export: the ONNX writer round-trips every sample model, QDQ models agree with onnxruntime
//! (fixtures from `scripts/check_export.py`), encodings and sessions round-trip, writes are
//! atomic, and bad imports are reported.

mod common;

use std::collections::HashMap;

use common::{float_array, repo_path};
use quantscope::engine::{Plan, RunOptions};
use quantscope::export::write_onnx_model;
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays};

const SAMPLES: [&str; 4] = ["mlp", "cnn", "mobilenet", "transformer"];

fn test_images() -> TensorData {
    read_arrays(&repo_path("sample_models/data/digits_test_x.npy"))
        .unwrap()
        .remove(0)
        .data
}

fn run(graph: &quantscope::ir::Graph) -> Vec<(String, TensorData)> {
    let plan = Plan::new(graph).unwrap();
    let feeds: HashMap<String, TensorData> = [("input".to_string(), test_images())].into();
    plan.run(feeds, None, RunOptions::default()).unwrap()
}

#[test]
fn written_sample_models_reload_with_identical_graphs_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    for sample in SAMPLES {
        let original =
            load_model(&repo_path(&format!("sample_models/digits_{sample}.onnx"))).unwrap();
        let path = dir.path().join(format!("{sample}.onnx"));
        write_onnx_model(&original.graph, &path).unwrap();
        let back = load_model(&path).unwrap();
        let (a, b) = (&original.graph, &back.graph);
        assert_eq!(a.opset, b.opset, "{sample}");
        assert_eq!(a.inputs, b.inputs, "{sample}");
        assert_eq!(a.outputs, b.outputs, "{sample}");
        assert_eq!(a.nodes.len(), b.nodes.len(), "{sample}");
        for (x, y) in a.nodes.iter().zip(&b.nodes) {
            assert_eq!(
                (&x.name, &x.op_type, &x.inputs, &x.outputs),
                (&y.name, &y.op_type, &y.inputs, &y.outputs),
                "{sample}"
            );
            assert_eq!(
                format!("{:?}", x.attributes),
                format!("{:?}", y.attributes),
                "{sample}: attributes of {}",
                x.name
            );
        }
        assert_eq!(
            a.initializers.keys().collect::<Vec<_>>(),
            b.initializers.keys().collect::<Vec<_>>()
        );
        for (name, t) in &a.initializers {
            let u = &b.initializers[name];
            assert_eq!(t.data, u.data, "{sample}: {name}");
            assert_eq!(t.origin_dtype, u.origin_dtype, "{sample}: {name}");
            assert_eq!(
                (t.role, t.channel_axis),
                (u.role, u.channel_axis),
                "{sample}: {name}"
            );
        }
        assert_eq!(run(a), run(b), "{sample}: outputs differ");
        // Writing the reloaded graph gives the same bytes: the writer is deterministic.
        let again = dir.path().join(format!("{sample}_again.onnx"));
        write_onnx_model(b, &again).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap(),
            "{sample}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// QDQ models vs onnxruntime (fixtures from scripts/check_export.py)

use std::collections::BTreeMap;

use quantscope::calib::{ActivationCollector, CalibrationStats, Method};
use quantscope::export::qdq_model;
use quantscope::ir::Model;
use quantscope::quant::{ActivationQuant, QuantConfig, QuantizedModel, WeightQuant};
use sha2::{Digest, Sha256};

/// Calibration as `quantscope export` does it: the calibration digits in batches of 64.
fn calibrate(model: &Model) -> BTreeMap<String, CalibrationStats> {
    let plan = Plan::new(&model.graph).unwrap();
    let mut collector = ActivationCollector::new();
    let data = float_array("sample_models/data/digits_calib_x.npy");
    collector
        .run_batches(&plan, "input", data.view(), 64)
        .unwrap();
    collector.into_stats()
}

/// The configuration `quantscope export --weights W --granularity G --act-bits B` builds.
fn cli_config(weights: &str, granularity: &str, act_bits: u32) -> QuantConfig {
    QuantConfig::uniform(
        Some(WeightQuant {
            scheme: weights.parse().unwrap(),
            per_channel: granularity == "channel",
        }),
        Some(ActivationQuant {
            bits: act_bits,
            symmetric: false,
            method: Method::MinMax,
        }),
    )
}

fn simulate(quantized: &QuantizedModel) -> ndarray::Array2<f32> {
    let plan = Plan::new(&quantized.graph).unwrap();
    let feeds: HashMap<String, TensorData> = [("input".to_string(), test_images())].into();
    let mut hook = quantized.hook();
    let out = plan
        .run(feeds, Some(&mut hook), RunOptions::default())
        .unwrap();
    out[0]
        .1
        .as_f32()
        .unwrap()
        .clone()
        .into_dimensionality()
        .unwrap()
}

/// Fraction of rows of `logits` whose top class is `argmax`.
fn agreement(logits: &ndarray::Array2<f32>, argmax: &ndarray::ArrayD<i64>) -> f64 {
    let hits = logits
        .rows()
        .into_iter()
        .zip(argmax.iter())
        .filter(|(row, k)| {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as i64);
            best == Some(**k)
        })
        .count();
    hits as f64 / argmax.len() as f64
}

#[test]
fn qdq_exports_match_what_onnxruntime_computed_from_them() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/fixtures/export/manifest.json")).unwrap(),
    )
    .unwrap();
    let exports = manifest["exports"].as_object().unwrap();
    assert_eq!(exports.len(), 16, "4 models × 4 configs");
    let mut models: HashMap<String, (Model, BTreeMap<String, CalibrationStats>)> = HashMap::new();
    for (key, entry) in exports {
        let model_path = entry["model"].as_str().unwrap();
        let (model, stats) = models.entry(model_path.to_string()).or_insert_with(|| {
            let model = load_model(&repo_path(model_path)).unwrap();
            let stats = calibrate(&model);
            (model, stats)
        });
        let config = cli_config(
            entry["weights"].as_str().unwrap(),
            entry["granularity"].as_str().unwrap(),
            entry["act_bits"].as_u64().unwrap() as u32,
        );
        let quantized = QuantizedModel::prepare(&model.graph, &config, stats).unwrap();
        let qdq = qdq_model(&model.graph, &quantized).unwrap();
        assert!(qdq.warnings.is_empty(), "{key}: {:?}", qdq.warnings);
        let bytes = prost::Message::encode_to_vec(&qdq.model_proto().unwrap());
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            entry["sha256"].as_str().unwrap(),
            "{key}: the exporter no longer writes the file the fixtures were made from; rerun scripts/check_export.py"
        );

        let fixture = common::read_named(&repo_path(&format!("tests/fixtures/export/{key}.npz")));
        let ort_argmax = fixture["argmax"].as_i64().unwrap().clone();
        let ort_logits = fixture["logits"].to_f32();
        let ours = simulate(&quantized);
        let agree = agreement(&ours, &ort_argmax);
        let head = ours.slice(ndarray::s![..ort_logits.shape()[0], ..]);
        let max_diff = head
            .iter()
            .zip(ort_logits.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let spread = ort_logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        println!(
            "{key:<28} top-1 agreement {:.2} %  max |Δlogit| {max_diff:.4} (max |logit| {spread:.2})",
            100.0 * agree
        );
        assert!(agree >= 0.995, "{key}: top-1 agreement {agree}");
        // A quantization step of the last layer's input moves a logit by S_x·|w| at most; allow
        // a few such steps (onnxruntime fuses QDQ into integer kernels and rounds the int32 bias).
        let last = model
            .graph
            .nodes
            .iter()
            .rev()
            .find(|n| n.op_type == "Gemm" || n.op_type == "MatMul")
            .unwrap();
        let input_scale = quantized
            .activations
            .iter()
            .find(|a| Some(a.tensor.as_str()) == last.input(0))
            .unwrap()
            .params
            .scale;
        let max_weight = quantized.graph.initializers[last.input(1).unwrap()]
            .data
            .to_f32()
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        let step = input_scale * max_weight;
        println!("{key:<28} logit step {step:.4} (4 steps allowed)");
        assert!(
            max_diff <= 4.0 * step,
            "{key}: logits differ by {max_diff}, more than 4 steps of {step}"
        );
    }
}

#[test]
fn a_quantized_graph_output_keeps_its_name_and_the_file_computes_the_simulation() {
    let model = load_model(&repo_path("sample_models/digits_cnn.onnx")).unwrap();
    let stats = calibrate(&model);
    let mut config = cli_config("int8", "channel", 8);
    config.quantize_outputs = true;
    let output = model.graph.outputs[0].name.clone();
    let quantized = QuantizedModel::prepare(&model.graph, &config, &stats).unwrap();
    let params = quantized
        .activations
        .iter()
        .find(|a| a.tensor == output)
        .expect("the graph output is quantized")
        .params;
    let qdq = qdq_model(&model.graph, &quantized).unwrap();
    let producer = qdq
        .graph
        .nodes
        .iter()
        .find(|n| n.outputs.contains(&output))
        .unwrap();
    assert_eq!(producer.op_type, "DequantizeLinear");
    assert_eq!(qdq.graph.outputs[0].name, output);

    let simulated = simulate(&quantized);
    let from_file = run(&qdq.graph).remove(0).1.as_f32().unwrap().clone();
    let scale = params.scale;
    let mut identical = 0;
    for (&s, &f) in simulated.iter().zip(from_file.iter()) {
        for v in [s, f] {
            let code = v / scale + params.zero_point as f32;
            assert!((code - code.round()).abs() < 1e-3, "{v} is off the grid");
        }
        assert!(
            (s - f).abs() <= scale * 1.001,
            "{s} vs {f}: more than a step apart"
        );
        identical += usize::from(s == f);
    }
    let share = identical as f64 / simulated.len() as f64;
    assert!(share >= 0.999, "only {share} of the outputs are identical");
    // Without the option the output is not on a grid.
    config.quantize_outputs = false;
    let plain = simulate(&QuantizedModel::prepare(&model.graph, &config, &stats).unwrap());
    assert!(plain.iter().any(|&v| {
        let code = v / scale + params.zero_point as f32;
        (code - code.round()).abs() > 0.01
    }));
}

// ---------------------------------------------------------------------------------------------
// Encodings, sessions, atomic writes, bad imports

use quantscope::export::encodings::{
    AimetSchema, aimet_encodings, import_encodings_json, parse_trt_calibration_cache,
    trt_calibration_cache,
};
use quantscope::export::{
    ExportFormat, ExportInputs, Session, export_to, import_encodings, session::file_sha256,
};

/// The CNN quantized w8a8 per-tensor, with every range set by hand to its grid's range.
fn cnn_with_manual_ranges() -> (Model, QuantConfig, QuantizedModel) {
    let model = load_model(&repo_path("sample_models/digits_cnn.onnx")).unwrap();
    let stats = calibrate(&model);
    let mut config = cli_config("int8", "tensor", 8);
    let first = QuantizedModel::prepare(&model.graph, &config, &stats).unwrap();
    for a in &first.activations {
        config
            .activation_ranges
            .insert(a.tensor.clone(), a.params.range());
    }
    for w in &first.weights {
        config
            .weight_ranges
            .insert(w.tensor.clone(), w.params[0].range());
    }
    let quantized = QuantizedModel::prepare(&model.graph, &config, &stats).unwrap();
    assert!(quantized.activations.iter().all(|a| a.manual));
    (model, config, quantized)
}

#[test]
fn encodings_round_trip_to_identical_manual_ranges_in_both_schemas() {
    let (model, config, quantized) = cnn_with_manual_ranges();
    let stats = calibrate(&model);
    for schema in [AimetSchema::Legacy, AimetSchema::V1] {
        let json = aimet_encodings(&quantized, schema);
        let mut imported = cli_config("int8", "tensor", 8);
        let report = import_encodings_json(
            &json,
            std::path::Path::new("enc.json"),
            &model.graph,
            &mut imported,
        )
        .unwrap();
        assert!(
            report.skipped.is_empty(),
            "{schema:?}: {:?}",
            report.skipped
        );
        assert_eq!(report.activations.len(), config.activation_ranges.len());
        assert_eq!(report.weights.len(), config.weight_ranges.len());
        if schema == AimetSchema::Legacy {
            // min/max carry the manual clip ranges themselves.
            assert_eq!(imported, config);
        }
        // Either way the imported ranges give back the exported quantizers.
        let again = QuantizedModel::prepare(&model.graph, &imported, &stats).unwrap();
        for (a, b) in again.activations.iter().zip(&quantized.activations) {
            assert_eq!(a.tensor, b.tensor);
            assert_eq!(
                a.params.zero_point, b.params.zero_point,
                "{schema:?} {}",
                a.tensor
            );
            let rel = (a.params.scale - b.params.scale).abs() / b.params.scale;
            assert!(rel <= 2.0 * f32::EPSILON, "{schema:?} {}: {rel}", a.tensor);
        }
        for (a, b) in again.weights.iter().zip(&quantized.weights) {
            assert_eq!(a.params[0].zero_point, b.params[0].zero_point);
            let rel = (a.params[0].scale - b.params[0].scale).abs() / b.params[0].scale;
            assert!(rel <= 2.0 * f32::EPSILON, "{schema:?} {}: {rel}", a.tensor);
        }
    }
    // AIMET's offset is qmin − Z: the image input in [0, 1] is uint8 with Z = 0 (offset 0);
    // symmetric int8 weights have Z = 0 on [−128, 127] (offset −128).
    let legacy = aimet_encodings(&quantized, AimetSchema::Legacy);
    let input = &legacy["activation_encodings"]["input"][0];
    assert_eq!(input["offset"], 0);
    assert_eq!(input["bitwidth"], 8);
    let v1 = aimet_encodings(&quantized, AimetSchema::V1);
    assert_eq!(v1["version"], "1.0.0");
    assert!(
        v1["param_encodings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["enc_type"] == "PER_TENSOR"
                && e["offset"][0] == -128
                && e["is_sym"] == true)
    );
}

#[test]
fn trt_cache_holds_amax_over_127_as_f32_bits() {
    let (_, _, quantized) = cnn_with_manual_ranges();
    let text = trt_calibration_cache(&quantized, 8601);
    assert!(text.starts_with("TRT-8601-EntropyCalibration2\n"));
    let scales = parse_trt_calibration_cache(&text, std::path::Path::new("cache")).unwrap();
    assert_eq!(scales.len(), quantized.activations.len());
    for a in &quantized.activations {
        let amax = a.range.0.abs().max(a.range.1.abs());
        assert_eq!(scales[&a.tensor], amax / 127.0, "{}", a.tensor);
    }
    // 1/127 = 0.007874016 has the bit pattern 0x3c010204 (TensorRT prints the hex of the bits).
    assert_eq!(format!("{:08x}", (1.0f32 / 127.0).to_bits()), "3c010204");
}

#[test]
fn session_save_and_load_restore_the_config_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (model, config, _) = cnn_with_manual_ranges();
    let mut config = config;
    config.layers.insert(
        model
            .graph
            .nodes
            .iter()
            .find(|n| n.op_type == "Conv")
            .unwrap()
            .name
            .clone(),
        Default::default(),
    );
    // A channel clip of the first conv weight (channels on axis 0).
    let conv_weight = model
        .graph
        .initializers
        .values()
        .find(|t| t.channel_axis.is_some() && t.shape().len() == 4)
        .unwrap()
        .name
        .clone();
    config
        .weight_channel_ranges
        .entry(conv_weight.clone())
        .or_default()
        .insert(1, (-0.125, 0.25));
    let mut session = Session::new(&model.path, None, config.clone()).unwrap();
    session.view = serde_json::json!({"selected": "input", "zoom": 2.5});
    let path = dir.path().join("s.qscope.json");
    session.save(&path).unwrap();
    let (back, report) = Session::load(&path, &model.graph).unwrap();
    assert_eq!(back, session);
    assert_eq!(back.config, config);
    assert!(!report.model_changed && report.dropped.is_empty() && report.warnings.is_empty());

    // The model changes: the hash differs, settings naming vanished tensors/layers are dropped.
    let copy = dir.path().join("model.onnx");
    std::fs::copy(&model.path, &copy).unwrap();
    let mut session = Session::new(&copy, None, config.clone()).unwrap();
    session
        .config
        .activation_ranges
        .insert("gone".into(), (0.0, 1.0));
    session
        .config
        .layers
        .insert("no_such_layer".into(), Default::default());
    session
        .config
        .weight_channel_ranges
        .get_mut(&conv_weight)
        .unwrap()
        .insert(999, (-1.0, 1.0));
    session.save(&path).unwrap();
    let mut changed = model.graph.clone();
    changed.nodes.pop();
    quantscope::export::write_onnx_model(&changed, &copy).unwrap();
    let changed = load_model(&copy).unwrap().graph;
    let (back, report) = Session::load(&path, &changed).unwrap();
    assert!(report.model_changed);
    assert!(
        report.warnings[0].contains("changed"),
        "{:?}",
        report.warnings
    );
    assert_eq!(
        report.dropped,
        vec![
            "layer override 'no_such_layer'".to_string(),
            "activation range 'gone'".to_string(),
            format!("clip range of channel 999 of weight '{conv_weight}'"),
        ]
    );
    assert_eq!(back.config, config, "what still matches is kept");
    assert_ne!(
        file_sha256(&copy).unwrap(),
        file_sha256(&model.path).unwrap()
    );

    // Other versions and non-sessions are errors naming the file.
    std::fs::write(&path, r#"{"version": 99}"#).unwrap();
    let err = Session::load(&path, &changed).unwrap_err().to_string();
    assert!(
        err.contains("version 99") && err.contains("s.qscope.json"),
        "{err}"
    );
    std::fs::write(&path, "{oops").unwrap();
    let err = Session::load(&path, &changed).unwrap_err().to_string();
    assert!(err.contains("invalid JSON"), "{err}");
}

#[test]
fn importing_bad_encodings_reports_what_was_applied_and_skipped() {
    let model = load_model(&repo_path("sample_models/digits_mlp.onnx")).unwrap();
    let first_gemm = model
        .graph
        .nodes
        .iter()
        .find(|n| n.op_type == "Gemm")
        .unwrap();
    let activation = first_gemm.input(0).unwrap().to_string();
    let weight = first_gemm.input(1).unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enc.json");
    let legacy = serde_json::json!({
        "version": "0.6.1",
        "activation_encodings": {
            activation.clone(): [{"bitwidth": 8, "min": -1.0, "max": 2.0, "offset": 0, "scale": 0.1}],
            "no_such_tensor": [{"bitwidth": 8, "min": 0.0, "max": 1.0}],
        },
        "param_encodings": {
            weight.clone(): [{"bitwidth": 4, "min": -1.0, "max": 1.0}],
        },
    });
    std::fs::write(&path, legacy.to_string()).unwrap();
    let mut config = cli_config("int8", "tensor", 8);
    let report = import_encodings(&path, &model.graph, &mut config).unwrap();
    assert_eq!(report.activations, vec![activation.clone()]);
    assert!(report.weights.is_empty());
    assert_eq!(config.activation_ranges[&activation], (-1.0, 2.0));
    let skipped: BTreeMap<_, _> = report.skipped.iter().cloned().collect();
    assert!(
        skipped["no_such_tensor"].contains("no quantizable tensor"),
        "{skipped:?}"
    );
    assert!(skipped[&weight].contains("4-bit encoding") && skipped[&weight].contains("8 bits"));

    // onnxruntime TensorQuantOverrides: rmin/rmax, and scale/zero_point with a quant_type.
    let overrides = serde_json::json!({
        activation.clone(): [{"scale": 0.5, "zero_point": 128, "quant_type": "QUInt8"}],
        weight.clone(): [{"rmin": -0.25, "rmax": 0.25}],
        "x_unknown": [{"rmin": 0.0, "rmax": 1.0}],
    });
    std::fs::write(&path, overrides.to_string()).unwrap();
    let mut config = cli_config("int8", "tensor", 8);
    let report = import_encodings(&path, &model.graph, &mut config).unwrap();
    assert_eq!(config.activation_ranges[&activation], (-64.0, 63.5));
    assert_eq!(config.weight_ranges[&weight], (-0.25, 0.25));
    assert_eq!(report.skipped.len(), 1);

    // Malformed JSON is an error naming the file.
    std::fs::write(&path, "{\"version\": ").unwrap();
    let err = import_encodings(&path, &model.graph, &mut config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("enc.json") && err.contains("not valid JSON"),
        "{err}"
    );
}

#[test]
fn every_format_exports_and_a_failed_export_leaves_nothing() {
    let (model, config, quantized) = cnn_with_manual_ranges();
    let dir = tempfile::tempdir().unwrap();
    let inputs = ExportInputs {
        model: &model,
        config: &config,
        quantized: &quantized,
        evaluation: None,
    };
    for (format, name) in ExportFormat::ALL {
        let ext = match format {
            ExportFormat::Qdq | ExportFormat::Baked => "onnx",
            ExportFormat::Ranges => "csv",
            ExportFormat::Report => "md",
            _ => "txt",
        };
        let path = dir.path().join(format!("out_{name}.{ext}"));
        let summary = export_to(format, &inputs, &path).unwrap();
        assert!(summary.files.iter().all(|f| f.exists()), "{name}");
        assert_eq!(
            summary.files.len(),
            if format == ExportFormat::Report { 4 } else { 1 }
        );
    }
    // The baked model reloads with exactly the de-quantized weights.
    let baked = load_model(&dir.path().join("out_baked.onnx")).unwrap();
    for w in &quantized.weights {
        assert_eq!(
            baked.graph.initializers[&w.tensor].data,
            quantized.graph.initializers[&w.tensor].data
        );
    }
    // Refused: writing over the source model; nothing else appears and the model is intact.
    let before = std::fs::read(&model.path).unwrap();
    let listing = |d: &std::path::Path| std::fs::read_dir(d).unwrap().count();
    let count = listing(dir.path());
    let err = export_to(ExportFormat::Baked, &inputs, &model.path).unwrap_err();
    assert!(err.to_string().contains("source model"), "{err}");
    assert_eq!(std::fs::read(&model.path).unwrap(), before);
    // Failing mid-way (a QDQ export of a graph whose weight vanished) leaves no file behind.
    let mut broken = model.clone();
    broken
        .graph
        .initializers
        .remove(&quantized.weights[0].tensor);
    let inputs = ExportInputs {
        model: &broken,
        ..inputs
    };
    let path = dir.path().join("broken.onnx");
    assert!(export_to(ExportFormat::Qdq, &inputs, &path).is_err());
    assert!(!path.exists());
    assert_eq!(listing(dir.path()), count);
}

// ---------------------------------------------------------------------------------------------
// The command line

fn quantscope(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn export_command_writes_reports_sessions_and_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo_path("sample_models/digits_mlp.onnx");
    let data = repo_path("sample_models/data/digits_calib_x.npy");
    let (model, data) = (model.to_str().unwrap(), data.to_str().unwrap());
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let labels = repo_path("sample_models/data/digits_test_y.npy");
    let test_x = repo_path("sample_models/data/digits_test_x.npy");
    let report = quantscope(&[
        "export",
        model,
        "--data",
        data,
        "--format",
        "report",
        "--out",
        &out("r.md"),
        "--weights",
        "int4",
        "--granularity",
        "tensor",
        "--eval-data",
        test_x.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--save-session",
        &out("s.json"),
    ]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let md = std::fs::read_to_string(out("r.md")).unwrap();
    assert!(md.contains("| top-1 accuracy | 97.59 % |"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out("r.json")).unwrap()).unwrap();
    let e = &json["evaluation"];
    assert!(e["size_bytes"].as_f64().unwrap() < e["float32_size_bytes"].as_f64().unwrap() / 6.0);
    assert!(
        std::fs::read_to_string(out("r.tensors.csv"))
            .unwrap()
            .lines()
            .count()
            > 3
    );

    // The session reproduces the same configuration: identical ranges table.
    let a = quantscope(&[
        "export",
        model,
        "--data",
        data,
        "--format",
        "ranges",
        "--out",
        &out("a.csv"),
        "--weights",
        "int4",
        "--granularity",
        "tensor",
    ]);
    let b = quantscope(&[
        "export",
        model,
        "--data",
        data,
        "--format",
        "ranges",
        "--out",
        &out("b.csv"),
        "--session",
        &out("s.json"),
    ]);
    assert!(a.status.success() && b.status.success());
    assert_eq!(
        std::fs::read(out("a.csv")).unwrap(),
        std::fs::read(out("b.csv")).unwrap()
    );

    // Exported encodings import back into `quantize`; bad input is one error line.
    let enc = quantscope(&[
        "export",
        model,
        "--data",
        data,
        "--format",
        "aimet",
        "--out",
        &out("e.json"),
    ]);
    assert!(enc.status.success());
    let q = quantscope(&[
        "quantize",
        model,
        "--data",
        data,
        "--import-encodings",
        &out("e.json"),
    ]);
    let stdout = String::from_utf8_lossy(&q.stdout);
    // Per-channel weight encodings become every channel's manual clip range.
    assert!(
        q.status.success() && stdout.contains("imported 3 activation and 3 weight range(s)"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&q.stderr);
    assert!(!stderr.contains("per-channel ranges"), "{stderr}");
    let bad = quantscope(&[
        "export",
        model,
        "--data",
        data,
        "--format",
        "onnx",
        "--out",
        &out("x"),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown export format 'onnx'"));
    let over = quantscope(&[
        "export", model, "--data", data, "--format", "baked", "--out", model,
    ]);
    assert!(!over.status.success());
    assert!(
        String::from_utf8_lossy(&over.stderr).contains("refusing to overwrite the source model")
    );
}

#[test]
fn baked_exports_match_what_onnxruntime_computed_from_them() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/fixtures/export/manifest.json")).unwrap(),
    )
    .unwrap();
    let baked = manifest["baked"].as_object().unwrap();
    assert_eq!(baked.len(), 8, "4 models × k-means and ternary");
    for (key, entry) in baked {
        let model = load_model(&repo_path(entry["model"].as_str().unwrap())).unwrap();
        let config = QuantConfig::uniform(
            Some(WeightQuant {
                scheme: entry["weights"].as_str().unwrap().parse().unwrap(),
                per_channel: entry["granularity"] == "channel",
            }),
            None,
        );
        let quantized = QuantizedModel::prepare(&model.graph, &config, &BTreeMap::new()).unwrap();
        let bytes = prost::Message::encode_to_vec(
            &quantscope::export::onnx_model_proto(&quantized.graph).unwrap(),
        );
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            entry["sha256"].as_str().unwrap(),
            "{key}: rerun scripts/check_export.py"
        );
        let fixture = common::read_named(&repo_path(&format!("tests/fixtures/export/{key}.npz")));
        let ours = simulate(&quantized);
        // Float activations: the same float model on both sides, so logits agree to rounding.
        let expected = fixture["logits"].clone();
        let head = TensorData::F32(
            ours.slice(ndarray::s![..expected.shape()[0], ..])
                .to_owned()
                .into_dyn(),
        );
        common::compare(key, &head, &expected).unwrap();
        let argmax = fixture["argmax"].as_i64().unwrap();
        let agree = agreement(&ours, argmax);
        assert!(agree >= 0.995, "{key}: top-1 agreement {agree}");
    }
}

// ---------------------------------------------------------------------------------------------
// Per-channel manual clips (fixtures from scripts/check_export.py --only channel-clips)

/// The scales of weight `weight` in the QDQ file at `path` (its `<weight>_scale` initializer).
fn exported_scales(path: &std::path::Path, weight: &str) -> Vec<f32> {
    let model = load_model(path).unwrap();
    let scale = &model.graph.initializers[&format!("{weight}_scale")];
    scale.data.as_f32().unwrap().iter().copied().collect()
}

#[test]
fn a_channel_clip_changes_only_that_channels_scale_in_the_qdq_export() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/fixtures/export/channel_clips.json")).unwrap(),
    )
    .unwrap();
    let cases = fixture["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 2, "the sample CNN and a real model");
    let dir = tempfile::tempdir().unwrap();
    for (key, case) in cases {
        let model = repo_path(case["model"].as_str().unwrap());
        let data = repo_path(case["data"].as_str().unwrap());
        let (model, data) = (model.to_str().unwrap(), data.to_str().unwrap());
        let weight = case["weight"].as_str().unwrap();
        let channel = case["channel"].as_u64().unwrap() as usize;
        let clip: Vec<f32> = serde_json::from_value(case["clip"].clone()).unwrap();
        let out = |name: &str| dir.path().join(format!("{key}_{name}"));
        let plain = out("plain.onnx");
        let session = out("session.json");
        let run = quantscope(&[
            "export",
            model,
            "--data",
            data,
            "--format",
            "qdq",
            "--weights",
            "int8",
            "--granularity",
            "channel",
            "--calib",
            "minmax",
            "--out",
            plain.to_str().unwrap(),
            "--save-session",
            session.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{key}: {run:?}");
        // The saved session with one channel clipped, as the app stores it.
        let mut saved = Session::read(&session).unwrap();
        saved
            .config
            .weight_channel_ranges
            .entry(weight.to_string())
            .or_default()
            .insert(channel, (clip[0], clip[1]));
        let clipped_session = out("clipped.json");
        saved.save(&clipped_session).unwrap();
        let clipped = out("clipped.onnx");
        let run = quantscope(&[
            "export",
            model,
            "--data",
            data,
            "--format",
            "qdq",
            "--session",
            clipped_session.to_str().unwrap(),
            "--out",
            clipped.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{key}: {run:?}");
        // The file onnxruntime ran (checker, finite outputs, only this channel changed).
        let bytes = std::fs::read(&clipped).unwrap();
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            case["sha256"].as_str().unwrap(),
            "{key}: the clipped export differs from the one scripts/check_export.py checked"
        );
        let before = exported_scales(&plain, weight);
        let after = exported_scales(&clipped, weight);
        assert_eq!(before.len(), after.len());
        assert!(before.len() > channel, "{key}: per-axis scales expected");
        for (c, (b, a)) in before.iter().zip(&after).enumerate() {
            if c == channel {
                // Symmetric int8: S = max(|rmin|, |rmax|) / 127.
                let expected = clip[0].abs().max(clip[1].abs()) / 127.0;
                assert_eq!(*a, expected, "{key}: channel {c}");
                assert!(a < b, "{key}: half the range, a smaller scale");
            } else {
                assert_eq!(a, b, "{key}: channel {c} changed");
            }
        }
        let fixture_after: Vec<f32> = serde_json::from_value(case["scales_after"].clone()).unwrap();
        assert_eq!(after, fixture_after, "{key}");
        // Every other weight's quantizer is untouched.
        let (p, q) = (load_model(&plain).unwrap(), load_model(&clipped).unwrap());
        for (name, t) in &p.graph.initializers {
            if name != &format!("{weight}_scale") && name != &format!("{weight}_quantized") {
                assert_eq!(
                    Some(&t.data),
                    q.graph.initializers.get(name).map(|u| &u.data),
                    "{key}: {name}"
                );
            }
        }
    }
}
