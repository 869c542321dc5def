//! NumPy `.npy` arrays and `.npz` archives (the first byte picks which reader).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use quantscope::budget::MemoryBudget;
use quantscope::load::{read_npy_bytes, read_npz_bytes};

fuzz_target!(|data: &[u8]| {
    let budget = MemoryBudget::new(64 << 20);
    match data.split_first() {
        Some((0, rest)) => {
            let _ = read_npy_bytes(rest, Path::new("fuzz.npy"), budget);
        }
        Some((_, rest)) => {
            let _ = read_npz_bytes(rest, Path::new("fuzz.npz"), budget);
        }
        None => {}
    }
});
