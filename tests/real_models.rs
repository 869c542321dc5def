//! The public models of `../shared/real_models/` as a user brings them, from the command line:
//! `inspect`; `run` on realistic inputs against onnxruntime's outputs; `calibrate`;
//! `quantize --report` (which must quantize every weight of every quantizable layer, recurrent
//! ones included); `export --format qdq`, whose file must hash to the one
//! `scripts/real_models.py` checked with onnx.checker and ran in onnxruntime, and which, run by
//! Quantscope's own engine (QuantizeLinear/DequantizeLinear), must give every output the SQNR
//! `quantize` reported for its simulation: the simulation is the file. The same holds for the
//! export with onnxruntime's placement (`--quantize-outputs`, and `--float-ops LSTM,GRU,RNN`
//! where there are recurrent layers), whose SQNR in onnxruntime must be at least
//! onnxruntime's own `quantize_static` SQNR − 1 dB on the same data.
//! The references, the manifest and the non-image inputs are in `tests/fixtures/real_models/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use quantscope::ir::ParamRole;
use quantscope::load::read_arrays;
use quantscope::quant::config::weight_input_names;
use serde_json::Value;
use sha2::{Digest, Sha256};

const TOLERANCE: f64 = 1e-4;
const QDQ_MARGIN_DB: f64 = 1.0;

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shared folder, or `None` after one line saying it is absent.
fn shared() -> Option<PathBuf> {
    let root = crate_root().join("../shared/real_models");
    if root.is_dir() {
        Some(root)
    } else {
        println!("skipped: {} is absent", root.display());
        None
    }
}

fn fixtures() -> PathBuf {
    crate_root().join("tests/fixtures/real_models")
}

fn manifest_entry(name: &str) -> Value {
    let path = fixtures().join("manifest.json");
    let text = std::fs::read_to_string(&path).expect("tests/fixtures/real_models/manifest.json");
    let manifest: Value = serde_json::from_str(&text).expect("the manifest is JSON");
    manifest["models"][name].clone()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn quantscope(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .args(args)
        .current_dir(crate_root())
        .output()
        .expect("the binary runs")
}

fn succeeded(what: &str, o: Output) -> String {
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what} failed: {}{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Every output that onnxruntime produced has the same number of elements in ours, agrees at
/// the sampled positions within the conformance tolerance, and has the same energy.
fn assert_outputs_match(name: &str, entry: &Value, ours: &Path) {
    let reference: HashMap<String, Vec<f32>> =
        read_arrays(&fixtures().join(format!("{name}.reference.npz")))
            .expect("reference outputs")
            .into_iter()
            .map(|a| (a.name, a.data.to_f32().iter().copied().collect()))
            .collect();
    let ours: HashMap<String, Vec<f32>> = read_arrays(ours)
        .expect("our outputs")
        .into_iter()
        .map(|a| (a.name, a.data.to_f32().iter().copied().collect()))
        .collect();
    let outputs = entry["outputs"]
        .as_object()
        .expect("outputs in the manifest");
    assert!(!outputs.is_empty());
    for (output, meta) in outputs {
        let values = ours
            .get(output)
            .unwrap_or_else(|| panic!("{name}: output '{output}' missing from ours"));
        let expected_len: u64 = meta["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .filter_map(Value::as_u64)
            .product();
        assert_eq!(
            values.len() as u64,
            expected_len,
            "{name}/{output}: element count"
        );
        let key = meta["key"].as_str().expect("key");
        let index = &reference[&format!("{key}_index")];
        let expected = &reference[&format!("{key}_value")];
        let mut worst = 0.0f64;
        for (&i, &want) in index.iter().zip(expected) {
            let got = f64::from(values[i as usize]);
            let want = f64::from(want);
            let rel = (got - want).abs() / want.abs().max(1.0);
            worst = worst.max(rel);
        }
        assert!(
            worst <= TOLERANCE,
            "{name}/{output}: worst sampled relative error {worst:e}"
        );
        let energy: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let want = meta["sum_squares"].as_f64().expect("sum_squares");
        assert!(
            (energy - want).abs() <= TOLERANCE * want.abs().max(1.0),
            "{name}/{output}: sum of squares {energy} vs onnxruntime {want}"
        );
    }
}

/// Float arrays of an .npz by name.
fn arrays(path: &str) -> HashMap<String, Vec<f64>> {
    read_arrays(Path::new(path))
        .expect("outputs written")
        .into_iter()
        .map(|a| {
            (
                a.name,
                a.data.to_f32().iter().map(|&v| f64::from(v)).collect(),
            )
        })
        .collect()
}

/// Every float output's SQNR against float, computed from the exported QDQ file's outputs,
/// equals the one `quantize` reported for its simulation (to 0.01 dB).
fn assert_simulation_is_the_file(name: &str, report: &str, float: &str, file: &str) {
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report).expect("report")).expect("JSON");
    let (float, file) = (arrays(float), arrays(file));
    let outputs = report["evaluation"]["outputs"]
        .as_array()
        .expect("outputs in the report");
    assert!(!outputs.is_empty(), "{name}: no output evaluated");
    for output in outputs {
        let output_name = output["name"].as_str().expect("output name");
        let (f, q) = (&float[output_name], &file[output_name]);
        assert_eq!(f.len(), q.len(), "{name}/{output_name}: element count");
        let signal: f64 = f.iter().map(|v| v * v).sum();
        let noise: f64 = f.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
        let Some(simulated) = output["sqnr_db"].as_f64() else {
            // no finite SQNR in the report: the simulation left this output exact
            assert_eq!(noise, 0.0, "{name}/{output_name}: the file has noise");
            continue;
        };
        let measured = 10.0 * (signal / noise).log10();
        assert!(
            (measured - simulated).abs() <= 0.01,
            "{name}/{output_name}: the exported QDQ file gives {measured:.3} dB, \
             the simulation {simulated:.3} dB"
        );
    }
}

/// Every weight of a quantizable layer (each LSTM/GRU/RNN's W and R too, layers inside
/// subgraphs included) is in the report's quantized weights.
fn assert_every_weight_quantized(name: &str, model: &str, report: &str) {
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report).expect("report")).expect("JSON");
    let reported: Vec<&str> = report["weights"]
        .as_array()
        .expect("weights in the report")
        .iter()
        .filter_map(|w| w["tensor"].as_str())
        .collect();
    let graph = quantscope::load::load_model(Path::new(model))
        .expect("the model loads")
        .graph;
    let mut expected = 0;
    for node in graph.nodes_recursive() {
        for weight in weight_input_names(node) {
            let is_weight = graph
                .initializers
                .get(weight)
                .is_some_and(|t| t.role == ParamRole::Weight);
            if is_weight {
                expected += 1;
                assert!(
                    reported.contains(&weight),
                    "{name}: weight '{weight}' of {} '{}' is not quantized",
                    node.op_type,
                    node.name
                );
            }
        }
    }
    assert!(expected > 0, "{name}: no quantizable weight found");
}

/// The whole chain on one model of the manifest.
fn check(name: &str) {
    let Some(shared) = shared() else { return };
    let entry = manifest_entry(name);
    let model = shared
        .join(entry["model"].as_str().expect("model path"))
        .to_string_lossy()
        .into_owned();
    let data = strings(&entry["data"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |file: &str| dir.path().join(file).to_string_lossy().into_owned();

    let summary = succeeded("inspect", quantscope(&args(&["inspect", &model])));
    assert!(!summary.trim().is_empty());

    let outputs = path("outputs.npz");
    let mut run = args(&["run", &model]);
    run.extend(data.iter().cloned());
    run.extend(args(&["--out", &outputs]));
    succeeded("run", quantscope(&run));
    assert_outputs_match(name, &entry, Path::new(&outputs));

    let ranges = path("ranges.json");
    let mut calibrate = args(&["calibrate", &model]);
    calibrate.extend(data.iter().cloned());
    calibrate.extend(args(&[
        "--methods",
        "minmax,percentile:99.99,mse,kl",
        "--out",
        &ranges,
    ]));
    succeeded("calibrate", quantscope(&calibrate));
    let ranges: Value =
        serde_json::from_str(&std::fs::read_to_string(&ranges).expect("ranges written"))
            .expect("JSON");
    assert_eq!(
        ranges["samples"].as_u64(),
        entry["samples"].as_u64(),
        "{name}: calibration samples"
    );

    let report = path("report.json");
    let exported = Exported {
        name,
        model: &model,
        data: &data,
        float_outputs: &outputs,
    };
    exported.check("", &[], entry["ours_sha256"].as_str(), &path);
    assert_every_weight_quantized(name, &model, &report);

    // onnxruntime quantizes the graph's outputs and leaves recurrent layers in float:
    // compare with our file placed the same way, after checking that it is its simulation.
    let like_ort_flags = strings(&entry["like_ort_flags"]);
    exported.check(
        "like_ort_",
        &like_ort_flags,
        entry["ours_like_ort_sha256"].as_str(),
        &path,
    );
    let like_ort = entry["ours_like_ort_sqnr_db"]
        .as_f64()
        .expect("SQNR with onnxruntime's placement");
    if let Some(theirs) = entry["ort_sqnr_db"].as_f64() {
        assert!(
            like_ort >= theirs - QDQ_MARGIN_DB,
            "{name}: QDQ SQNR {like_ort} dB against onnxruntime's {theirs} dB"
        );
    }
}

/// One model's data and float outputs, for checking its QDQ exports.
struct Exported<'a> {
    name: &'a str,
    model: &'a str,
    data: &'a [String],
    float_outputs: &'a str,
}

impl Exported<'_> {
    /// `quantize --report` and `export --format qdq` with the manifest's flags plus `extra`:
    /// the file must hash to `sha256` (the one `scripts/real_models.py` checked and ran in
    /// onnxruntime), and run by Quantscope's own engine it must give every output the SQNR
    /// the simulation reported. Files are named with `prefix` by `path`.
    fn check(
        &self,
        prefix: &str,
        extra: &[String],
        sha256: Option<&str>,
        path: &dyn Fn(&str) -> String,
    ) {
        let Exported { name, model, .. } = *self;
        let entry = manifest_entry(name);
        let with_data = |command: &str| {
            let mut a = args(&[command, model]);
            a.extend(self.data.iter().cloned());
            a
        };
        let report = path(&format!("{prefix}report.json"));
        let mut quantize = with_data("quantize");
        quantize.extend(quant_flags_of(&entry));
        quantize.extend(extra.iter().cloned());
        quantize.extend(args(&["--report", &report]));
        succeeded("quantize", quantscope(&quantize));
        assert!(Path::new(&report).is_file(), "{name}: report written");

        let qdq = path(&format!("{prefix}qdq.onnx"));
        let mut export = with_data("export");
        export.extend(strings(&entry["qdq_flags"]));
        export.extend(extra.iter().cloned());
        export.extend(args(&["--out", &qdq]));
        succeeded("export", quantscope(&export));
        let digest = format!(
            "{:x}",
            Sha256::digest(std::fs::read(&qdq).expect("qdq written"))
        );
        assert_eq!(
            Some(digest.as_str()),
            sha256,
            "{name}: the QDQ file exported with {extra:?} differs from the one \
             scripts/real_models.py checked; rerun it"
        );
        let file_outputs = path(&format!("{prefix}qdq_outputs.npz"));
        let mut run_file = args(&["run", &qdq]);
        run_file.extend(self.data.iter().cloned());
        run_file.extend(args(&["--out", &file_outputs]));
        succeeded("run the QDQ file", quantscope(&run_file));
        assert_simulation_is_the_file(name, &report, self.float_outputs, &file_outputs);
    }
}

/// The quantization flags of the export (`qdq_flags` without `--format`).
fn quant_flags_of(entry: &Value) -> Vec<String> {
    strings(&entry["qdq_flags"])
        .chunks(2)
        .filter(|pair| pair[0] != "--format")
        .flatten()
        .cloned()
        .collect()
}

macro_rules! real_models {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*
    };
}

real_models!(
    yunet_s_640,
    yunet_n_dynamic,
    espcn,
    deeplab,
    ppocr_cls,
    silero_vad,
    gtcrn,
    dtln,
    bert_mlm,
);
