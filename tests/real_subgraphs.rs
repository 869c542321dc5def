//! A real model whose weights live in subgraphs: Silero VAD (`If` branches nested up to four
//! deep, every weight a `Constant` inside a branch, LSTMs among them), read where it lies in
//! `../shared/real_models/`. Its weights must be listed and quantizable like any other, the
//! engine must reproduce onnxruntime on the realistic feeds, and the QDQ export must be the file
//! `scripts/check_subgraph_models.py` checked (onnx.checker, onnxruntime) with each branch's
//! weights quantized inside that branch. Fixtures: tests/fixtures/real_models/silero_vad/.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use prost::Message;
use quantscope::engine::{Plan, RunOptions};
use quantscope::export::qdq_model;
use quantscope::ir::{Graph, ParamRole, TensorData};
use quantscope::load::{load_model, pb};
use quantscope::quant::{QuantConfig, QuantizedModel, WeightQuant, WeightScheme};
use quantscope::summary::ModelSummary;
use sha2::{Digest, Sha256};

use common::{compare, read_named, repo_path};

fn model_path() -> Option<PathBuf> {
    let path = repo_path("../shared/real_models/silero-vad/silero_vad.onnx");
    if path.is_file() {
        Some(path)
    } else {
        println!("{} is absent: Silero VAD not checked", path.display());
        None
    }
}

fn fixture(name: &str) -> PathBuf {
    repo_path(&format!("tests/fixtures/real_models/silero_vad/{name}"))
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json parses")
}

fn samples() -> usize {
    manifest()["samples"].as_u64().expect("samples") as usize
}

/// The hoisted name of a subgraph value: `<subgraph path>/<name>`.
fn hoisted(subgraph: &str, name: &str) -> String {
    format!("{subgraph}/{name}")
}

/// Runs `graph` on sample `k`'s feeds.
fn run(graph: &Graph, k: usize) -> Option<HashMap<String, TensorData>> {
    let plan = Plan::new(graph).unwrap_or_else(|e| panic!("plan: {e}"));
    let feeds = read_named(&fixture(&format!("{k:03}.inputs.npz")));
    let outputs = plan
        .run(feeds, None, RunOptions::default())
        .unwrap_or_else(|e| panic!("sample {k}: {e}"));
    Some(outputs.into_iter().collect())
}

fn weights_only(scheme: &str) -> QuantConfig {
    let scheme: WeightScheme = scheme.parse().expect("weight scheme");
    QuantConfig::uniform(
        Some(WeightQuant {
            scheme,
            per_channel: true,
        }),
        None,
    )
}

#[test]
fn weights_inside_the_branches_are_listed_as_parameters() {
    let Some(path) = model_path() else { return };
    let model = load_model(&path).expect("load");
    let summary = ModelSummary::of(&model);
    let listed: HashMap<&str, &quantscope::summary::TensorSummary> = summary
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let expected = manifest()["layer_weights"].as_array().cloned().unwrap();
    assert!(
        expected.len() >= 12,
        "the script found {} weights",
        expected.len()
    );
    for w in &expected {
        let name = hoisted(w["subgraph"].as_str().unwrap(), w["name"].as_str().unwrap());
        let shape: Vec<usize> = serde_json::from_value(w["shape"].clone()).unwrap();
        let t = listed
            .get(name.as_str())
            .unwrap_or_else(|| panic!("'{name}' is not listed"));
        assert_eq!(t.shape, shape, "{name}");
        assert_eq!(t.role, ParamRole::Weight.name(), "{name}");
    }
    // The summary counts the nodes of every subgraph (the top graph holds five); Constant
    // nodes are folded into initializers on load, and so are the layout chains that build the
    // LSTMs' W and R from stored weights.
    let nodes = manifest()["nodes_without_constants"].as_u64().unwrap() as usize;
    let folded = manifest()["layout_nodes_folded"].as_u64().unwrap() as usize;
    assert!(folded > 0, "the script found no layout chain into a weight");
    assert_eq!(summary.node_count, nodes - folded);
    assert!(summary.ops.contains_key("LSTM") && summary.ops.contains_key("Conv"));
}

#[test]
fn float_run_matches_onnxruntime_on_the_feeds() {
    let Some(path) = model_path() else { return };
    let model = load_model(&path).expect("load");
    let mut worst = 0f32;
    for k in 0..samples() {
        let Some(got) = run(&model.graph, k) else {
            return;
        };
        let expected = read_named(&fixture(&format!("{k:03}.outputs.npz")));
        for (name, want) in &expected {
            let err = compare(name, &got[name], want).unwrap_or_else(|e| panic!("sample {k}: {e}"));
            worst = worst.max(err);
        }
    }
    println!("Silero VAD vs onnxruntime: worst error {worst:.2e} (relative to max(1, |x|))");
}

#[test]
fn fake_quantization_reaches_the_branch_weights() {
    let Some(path) = model_path() else { return };
    let model = load_model(&path).expect("load");
    let quantized = QuantizedModel::prepare(&model.graph, &weights_only("int8"), &BTreeMap::new())
        .expect("prepare");
    let conv_weights: Vec<String> = manifest()["layer_weights"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["op"] == "Conv")
        .map(|w| hoisted(w["subgraph"].as_str().unwrap(), w["name"].as_str().unwrap()))
        .collect();
    assert_eq!(conv_weights.len(), 12, "six Conv layers in each top branch");
    for name in &conv_weights {
        let report = quantized
            .weights
            .iter()
            .find(|w| &w.tensor == name)
            .unwrap_or_else(|| panic!("'{name}' was not quantized"));
        assert!(report.per_channel);
        let before = model.graph.initializers[name].data.as_f32().unwrap();
        let after = quantized.graph.initializers[name].data.as_f32().unwrap();
        assert_ne!(before, after, "{name} kept its float values");
        // Every channel of the de-quantized weight holds at most 255 levels.
        let axis = ndarray::Axis(0);
        for (c, channel) in after.axis_iter(axis).enumerate() {
            let mut levels: Vec<u32> = channel.iter().map(|v| v.to_bits()).collect();
            levels.sort_unstable();
            levels.dedup();
            assert!(
                levels.len() <= 255,
                "{name} channel {c}: {} levels",
                levels.len()
            );
        }
    }
}

/// (graph path, DequantizeLinear count) over the top graph ("(top)") and every subgraph.
fn dequantize_nodes(graph: &pb::GraphProto, path: &str, counts: &mut BTreeMap<String, u64>) {
    let here = graph
        .node
        .iter()
        .filter(|n| n.op_type() == "DequantizeLinear")
        .count() as u64;
    if here > 0 {
        let key = if path.is_empty() { "(top)" } else { path };
        counts.insert(key.trim_end_matches('/').to_string(), here);
    }
    for n in &graph.node {
        for a in &n.attribute {
            if let Some(g) = &a.g {
                dequantize_nodes(g, &format!("{path}{}/{}/", n.name(), a.name()), counts);
            }
        }
    }
}

#[test]
fn qdq_export_quantizes_each_weight_inside_its_branch() {
    let Some(path) = model_path() else { return };
    let model = load_model(&path).expect("load");
    let manifest = manifest();
    let records = manifest["qdq"].as_object().expect("qdq records");
    assert_eq!(records.len(), 2, "int8 and int4 exports were checked");
    for (weights, record) in records {
        let config = weights_only(weights);
        let quantized =
            QuantizedModel::prepare(&model.graph, &config, &BTreeMap::new()).expect("prepare");
        let qdq = qdq_model(&model.graph, &quantized).expect("qdq");
        let proto = qdq.model_proto().expect("proto");
        let bytes = proto.encode_to_vec();
        // The very file the script checked with onnx.checker and ran in onnxruntime.
        let hash = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(
            Some(hash.as_str()),
            record["sha256"].as_str(),
            "{weights}: rerun scripts/check_subgraph_models.py"
        );
        assert_eq!(record["checker"], true, "{weights}: onnx.checker verdict");
        assert_eq!(
            proto.opset_import[0].version(),
            record["opset"].as_i64().unwrap()
        );
        let mut counts = BTreeMap::new();
        dequantize_nodes(proto.graph.as_ref().unwrap(), "", &mut counts);
        assert!(!counts.contains_key("(top)"), "{weights}: {counts:?}");
        let recorded: BTreeMap<String, u64> =
            serde_json::from_value(record["dequantize_linear"].clone()).unwrap();
        assert_eq!(counts, recorded, "{weights}");
        let in_branches: u64 = counts.values().sum();
        assert!(in_branches >= 12, "{weights}: {counts:?}");
        let sqnr = record["worst_output_sqnr_db"].as_f64().unwrap();
        // Weight-only: the STFT basis, the encoder convolutions and the decoder are quantized, the
        // LSTM stays float. Figures from onnxruntime 1.32 are about 21.7 dB (int8) and 7.2 dB (int4).
        let floor = if weights == "int8" { 18.0 } else { 5.0 };
        assert!(
            sqnr >= floor,
            "{weights}: onnxruntime's QDQ run, worst SQNR {sqnr} dB"
        );

        // What Quantscope simulates is what onnxruntime computes from the file.
        for k in 0..samples() {
            let Some(got) = run(&quantized.graph, k) else {
                return;
            };
            let expected = read_named(&fixture(&format!("{k:03}.qdq_{weights}.outputs.npz")));
            for (name, want) in &expected {
                compare(name, &got[name], want)
                    .unwrap_or_else(|e| panic!("{weights} sample {k}: {e}"));
            }
        }
    }
}
