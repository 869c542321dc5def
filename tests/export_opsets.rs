//! Opset lifting on whole models: every model `scripts/check_opsets.py` checked (the
//! conformance suite, the old-opset models of tests/fixtures/opsets/models and the real models
//! of ../shared/real_models) is lifted again through the library and must hash to the file the
//! script passed through onnx.checker and onnxruntime (same outputs as the original), or be
//! refused with the same one-line error. The lifted files are then checked here for forms
//! their opset no longer has, with a table of this test's own.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use prost::Message;
use quantscope::export::onnx_model_proto;
use quantscope::export::opset::upgrade_opset;
use quantscope::load::{load_model, pb};
use sha2::{Digest, Sha256};

use common::repo_path;

/// The real models, where the tests read them (beside the checkout); `QUANTSCOPE_REAL_MODELS`
/// names another place (a worktree that is not beside `shared/`).
fn real_models_dir() -> PathBuf {
    std::env::var_os("QUANTSCOPE_REAL_MODELS")
        .map_or_else(|| repo_path("../shared/real_models"), PathBuf::from)
}

struct Case {
    key: String,
    path: PathBuf,
    target: i64,
    /// Whether the original file passes onnx.checker (a deprecated operator does not).
    original_checks: bool,
    expected: serde_json::Value,
}

/// Every (model, target) of the manifest whose model file is here, and how many real-model
/// cases were left out because ../shared/real_models is absent.
fn cases() -> (Vec<Case>, usize) {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/fixtures/opsets/manifest.json"))
            .expect("tests/fixtures/opsets/manifest.json is readable"),
    )
    .expect("the manifest is JSON");
    let real_present = real_models_dir().is_dir();
    let mut found = Vec::new();
    let mut absent = 0;
    for (key, model) in manifest["models"].as_object().expect("models") {
        let recorded = model["path"].as_str().expect("path");
        let path = match recorded.strip_prefix("../shared/real_models/") {
            Some(rel) => real_models_dir().join(rel),
            None => repo_path(recorded),
        };
        for (target, expected) in model["lift"].as_object().expect("lift") {
            if recorded.starts_with("../shared/") && !real_present {
                absent += 1;
                continue;
            }
            found.push(Case {
                key: key.clone(),
                path: path.clone(),
                target: target.parse().expect("target opset"),
                original_checks: model["checker"].as_bool() == Some(true),
                expected: expected.clone(),
            });
        }
    }
    (found, absent)
}

fn say_if_real_models_absent(absent: usize) {
    if absent > 0 {
        println!(
            "{} is absent: {absent} real-model cases not checked",
            real_models_dir().display()
        );
    }
}

/// The lifted file's bytes, or the one-line error (as `examples/convert_opset` prints it).
fn lift(path: &Path, target: i64) -> Result<Vec<u8>, String> {
    let mut graph = load_model(path).map_err(|e| e.to_string())?.graph;
    upgrade_opset(&mut graph, target).map_err(|e| e.to_string())?;
    let proto = onnx_model_proto(&graph).map_err(|e| e.to_string())?;
    Ok(proto.encode_to_vec())
}

#[test]
fn lifted_models_are_the_files_onnxruntime_ran_and_refusals_say_why() {
    let (cases, absent) = cases();
    assert!(
        cases.len() >= 350,
        "expected the whole manifest, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    let (mut lifted, mut refused) = (0, 0);
    for case in &cases {
        let got = lift(&case.path, case.target);
        let name = format!("{} -> {}", case.key, case.target);
        match (
            case.expected.get("sha256"),
            case.expected.get("refused"),
            got,
        ) {
            (Some(sha), _, Ok(bytes)) => {
                // The script's verdict on this very file.
                let error = case.expected["max_rel_error"].as_f64();
                assert!(
                    error.is_some_and(|e| e <= 1e-5),
                    "{name}: max relative error {error:?}"
                );
                let checked = case.expected["checker"].as_bool() == Some(true);
                assert!(
                    checked || !case.original_checks,
                    "{name}: onnx.checker rejected it"
                );
                let hash = format!("{:x}", Sha256::digest(&bytes));
                if hash != sha.as_str().unwrap_or_default() {
                    failures.push(format!(
                        "{name}: lifted bytes hash to {hash}, the checked file was {sha} (rerun scripts/check_opsets.py)"
                    ));
                }
                lifted += 1;
            }
            (_, Some(message), Err(e)) => {
                if message.as_str() != Some(e.as_str()) {
                    failures.push(format!("{name}: refused with '{e}', recorded {message}"));
                }
                refused += 1;
            }
            (_, _, Ok(_)) => failures.push(format!("{name}: lifted, but the script saw a refusal")),
            (_, _, Err(e)) => {
                failures.push(format!("{name}: refused ({e}), but the script lifted it"))
            }
        }
    }
    say_if_real_models_absent(absent);
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(
        lifted >= 300 && refused >= 10,
        "{lifted} lifted, {refused} refused"
    );
}

/// (op, attribute, first opset without it), from the ONNX operator changelog.
const GONE_ATTRIBUTES: &[(&str, &str, i64)] = &[
    ("Upsample", "scales", 9),
    ("BatchNormalization", "spatial", 9),
    ("Slice", "starts", 10),
    ("Slice", "ends", 10),
    ("Slice", "axes", 10),
    ("TopK", "k", 10),
    ("Pad", "pads", 11),
    ("Pad", "value", 11),
    ("Clip", "min", 11),
    ("Clip", "max", 11),
    ("Dropout", "ratio", 12),
    ("Squeeze", "axes", 13),
    ("Unsqueeze", "axes", 13),
    ("ReduceSum", "axes", 13),
    ("Split", "split", 13),
    ("ReduceMean", "axes", 18),
    ("ReduceMax", "axes", 18),
    ("ReduceMin", "axes", 18),
    ("ReduceProd", "axes", 18),
    ("ReduceL1", "axes", 18),
    ("ReduceL2", "axes", 18),
    ("ReduceLogSum", "axes", 18),
    ("ReduceLogSumExp", "axes", 18),
    ("ReduceSumSquare", "axes", 18),
    ("DFT", "axis", 20),
];

/// (op, first opset without it).
const GONE_OPERATORS: &[(&str, i64)] = &[
    ("Upsample", 10),
    ("ImageScaler", 10),
    ("Scale", 10),
    ("Affine", 10),
    ("Crop", 10),
    ("Scatter", 11),
];

/// The oldest IR version that carries `opset` (onnx's version table).
fn min_ir_version(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

fn attr_string(node: &pb::NodeProto, name: &str) -> Option<String> {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .map(|a| String::from_utf8_lossy(a.s()).into_owned())
}

/// What is wrong with a lifted file, judged without Quantscope's own stale-form check.
fn problems(bytes: &[u8], target: i64, source_opset: i64) -> Vec<String> {
    let model = match pb::ModelProto::decode(bytes) {
        Ok(m) => m,
        Err(e) => return vec![format!("not decodable: {e}")],
    };
    let mut found = Vec::new();
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map_or(0, |o| o.version());
    if opset != target.max(source_opset) {
        found.push(format!("opset {opset}"));
    }
    if model.ir_version() < min_ir_version(opset) {
        found.push(format!(
            "IR {} is too old for opset {opset}",
            model.ir_version()
        ));
    }
    let graph = model.graph.unwrap_or_default();
    let mut known: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    known.extend(graph.input.iter().map(|v| v.name()));
    let mut names = HashSet::new();
    for node in &graph.node {
        let op = node.op_type();
        let name = node.name();
        if !names.insert(name) {
            found.push(format!("node name '{name}' repeated"));
        }
        for i in node.input.iter().filter(|i| !i.is_empty()) {
            if !known.contains(i.as_str()) {
                found.push(format!("'{name}' reads '{i}' before anything defines it"));
            }
        }
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            if !known.insert(o) {
                found.push(format!("'{o}' defined twice"));
            }
        }
        if !matches!(node.domain(), "" | "ai.onnx") {
            continue;
        }
        for &(o, attr, since) in GONE_ATTRIBUTES {
            if o == op && opset >= since && node.attribute.iter().any(|a| a.name() == attr) {
                found.push(format!(
                    "'{name}' ({op}) keeps '{attr}', gone at opset {since}"
                ));
            }
        }
        for &(o, since) in GONE_OPERATORS {
            if o == op && opset >= since {
                found.push(format!("'{name}' is a {op}, gone at opset {since}"));
            }
        }
        let inputs = node.input.len();
        let stale = match op {
            "Slice" | "TopK" if opset >= 10 && inputs < 2 => true,
            "Pad" if opset >= 11 && inputs < 2 => true,
            "Resize" if opset >= 11 && inputs < 3 => true,
            "Resize" => {
                opset >= 13
                    && attr_string(node, "coordinate_transformation_mode").as_deref()
                        == Some("tf_half_pixel_for_nn")
            }
            "Split" => {
                opset >= 18
                    && inputs < 2
                    && !node.attribute.iter().any(|a| a.name() == "num_outputs")
            }
            "GridSample" => {
                opset >= 20
                    && matches!(
                        attr_string(node, "mode").as_deref(),
                        Some("bilinear" | "bicubic")
                    )
            }
            "BatchNormalization" => opset >= 14 && node.output.len() > 1,
            _ => false,
        };
        if stale {
            found.push(format!("'{name}' ({op}) has its pre-opset-{opset} form"));
        }
    }
    for o in &graph.output {
        if !known.contains(o.name()) {
            found.push(format!("graph output '{}' is never defined", o.name()));
        }
    }
    found
}

#[test]
fn lifted_graphs_have_no_form_older_than_their_opset() {
    let (cases, absent) = cases();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases.iter().filter(|c| c.expected.get("sha256").is_some()) {
        let source_opset = load_model(&case.path).expect("loads").graph.opset;
        let bytes = lift(&case.path, case.target).expect("lifts");
        for p in problems(&bytes, case.target, source_opset) {
            failures.push(format!("{} -> {}: {p}", case.key, case.target));
        }
        checked += 1;
    }
    say_if_real_models_absent(absent);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 300, "{checked} lifted files checked");
}

#[test]
fn the_structural_check_finds_old_forms() {
    // The checks above must be able to fail: an opset-9 model relabelled as 13 without lifting
    // keeps its Slice attributes, Upsample and Clip bounds.
    let path = repo_path("tests/fixtures/conformance/slice_v7_attrs.onnx");
    let mut graph = load_model(&path).expect("loads").graph;
    graph.opset = 13;
    let bytes = onnx_model_proto(&graph).expect("writes").encode_to_vec();
    let found = problems(&bytes, 13, 13);
    assert!(
        found
            .iter()
            .any(|p| p.contains("keeps 'starts', gone at opset 10")),
        "{found:?}"
    );
    let path = repo_path("tests/fixtures/conformance/upsample_v7_nearest_attr_scales.onnx");
    let mut graph = load_model(&path).expect("loads").graph;
    graph.opset = 13;
    let bytes = onnx_model_proto(&graph).expect("writes").encode_to_vec();
    let found = problems(&bytes, 13, 13);
    assert!(
        found
            .iter()
            .any(|p| p.contains("is a Upsample, gone at opset 10")),
        "{found:?}"
    );
}
