//! Encodings imports (AIMET 0.6.1 / 1.0.0, onnxruntime TensorQuantOverrides) against the sample
//! CNN, and TensorRT calibration caches.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quantscope::export::encodings::{import_encodings_json, parse_trt_calibration_cache};
use quantscope::ir::Graph;
use quantscope::load::load_model;
use quantscope::quant::QuantConfig;

fn cnn() -> &'static Graph {
    static GRAPH: OnceLock<Graph> = OnceLock::new();
    GRAPH.get_or_init(|| {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sample_models/digits_cnn.onnx");
        load_model(&path).expect("the sample CNN").graph
    })
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.encodings");
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let mut config = QuantConfig::int8_per_channel();
        let _ = import_encodings_json(&json, path, cnn(), &mut config);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_trt_calibration_cache(text, path);
    }
});
