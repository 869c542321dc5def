//! Weights-only `.safetensors` files.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use quantscope::budget::MemoryBudget;
use quantscope::load::load_safetensors_bytes;

fuzz_target!(|data: &[u8]| {
    let _ = load_safetensors_bytes(
        data,
        Path::new("fuzz.safetensors"),
        MemoryBudget::new(64 << 20),
    );
});
