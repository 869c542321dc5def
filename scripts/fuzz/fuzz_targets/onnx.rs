//! ONNX models: decoding, conversion to the IR, validation and the `inspect` summary (which
//! also plans the graph for the engine).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use quantscope::budget::MemoryBudget;
use quantscope::ir::{Model, ModelFormat, validate};
use quantscope::load::load_onnx_bytes_within;
use quantscope::summary::ModelSummary;

fuzz_target!(|data: &[u8]| {
    // External data is looked up in a directory that does not exist, so it is always refused.
    let base = Path::new("/nonexistent-quantscope-fuzz");
    let bytes = bytes::Bytes::copy_from_slice(data);
    let budget = MemoryBudget::new(64 << 20);
    if let Ok((graph, _)) = load_onnx_bytes_within(bytes, Path::new("fuzz.onnx"), base, budget) {
        let _ = validate(&graph);
        let model = Model {
            path: "fuzz.onnx".into(),
            format: ModelFormat::Onnx,
            graph,
        };
        let _ = ModelSummary::of(&model);
    }
});
