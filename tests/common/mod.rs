//! Helpers shared by the integration tests: fixture paths and output comparison.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use quantscope::engine::{Plan, RunOptions};
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays};

/// The float array of a one-array `.npy` in the repository (the sample images).
pub fn float_array(file: &str) -> ndarray::ArrayD<f32> {
    match read_arrays(&repo_path(file)).unwrap().remove(0).data {
        TensorData::F32(a) => a,
        TensorData::I64(_) => panic!("{file}: float data expected"),
    }
}

/// The labels of the held-out digits (`digits_test_y.npy`).
pub fn digit_labels() -> ndarray::Array1<i64> {
    match read_arrays(&repo_path("sample_models/data/digits_test_y.npy"))
        .unwrap()
        .remove(0)
        .data
    {
        TensorData::I64(a) => a.into_dimensionality().unwrap(),
        TensorData::F32(_) => panic!("int labels expected"),
    }
}

/// Path of a file in the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Reads an .npz into name → tensor.
pub fn read_named(path: &Path) -> HashMap<String, TensorData> {
    read_arrays(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .map(|a| (a.name, a.data))
        .collect()
}

/// Runs `model` on the arrays of `inputs` (an .npz keyed by input name).
pub fn run_model(model: &Path, inputs: &Path) -> Result<HashMap<String, TensorData>, String> {
    let model = load_model(model).map_err(|e| format!("load: {e}"))?;
    let plan = Plan::new(&model.graph).map_err(|e| format!("plan: {e}"))?;
    let feeds = read_named(inputs);
    let outputs = plan
        .run(feeds, None, RunOptions::default())
        .map_err(|e| format!("run: {e}"))?;
    Ok(outputs.into_iter().collect())
}

/// Compares `actual` with `expected` element by element: shapes equal, integers exact, floats
/// within `1e-4 × max(1, |expected|)` (NaN matching NaN). Returns a description of the worst
/// mismatch.
pub fn compare(name: &str, actual: &TensorData, expected: &TensorData) -> Result<f32, String> {
    if actual.shape() != expected.shape() {
        return Err(format!(
            "{name}: shape {:?}, expected {:?}",
            actual.shape(),
            expected.shape()
        ));
    }
    match (actual, expected) {
        (TensorData::I64(a), TensorData::I64(e)) => match a.iter().zip(e).position(|(x, y)| x != y)
        {
            None => Ok(0.0),
            Some(i) => Err(format!("{name}: integer mismatch at flat index {i}")),
        },
        _ => {
            let a = actual.to_f32();
            let e = expected.to_f32();
            let mut worst = 0.0f32;
            for (i, (&x, &y)) in a.iter().zip(e.iter()).enumerate() {
                if x.is_nan() && y.is_nan() || x == y {
                    continue;
                }
                let err = (x - y).abs();
                let tolerance = 1e-4 * y.abs().max(1.0);
                if err.is_nan() || err > tolerance {
                    return Err(format!(
                        "{name}: flat index {i}: got {x}, expected {y} (|err| {err:e} > {tolerance:e})"
                    ));
                }
                worst = worst.max(err);
            }
            Ok(worst)
        }
    }
}

/// The figure of `worst output SQNR: X dB` in what `quantscope quantize` printed.
pub fn printed_worst_sqnr(printed: &str) -> f64 {
    printed
        .lines()
        .find_map(|l| l.strip_prefix("worst output SQNR: "))
        .and_then(|l| l.trim_end_matches(" dB").parse().ok())
        .unwrap_or_else(|| panic!("no worst output SQNR in:\n{printed}"))
}
