//! `quantscope run --integer`: the integer-only layers of the sample CNN agree with fake
//! quantization within 1 LSB on every element, the counts and accumulator ranges are reported
//! (table and JSON), and a model none of whose layers the integer path can run gets a
//! one-line error.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn quantscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap()
}

fn report_of(extra: &[&str], name: &str) -> (Value, String) {
    let report = std::env::temp_dir().join(format!(
        "quantscope_integer_{name}_{}.json",
        std::process::id()
    ));
    let report_arg = report.display().to_string();
    let mut args = vec![
        "run",
        "sample_models/digits_cnn.onnx",
        "--data",
        "sample_models/data/digits_test_x.npy",
        "--integer",
        "--report",
        &report_arg,
    ];
    args.extend_from_slice(extra);
    let out = quantscope(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    std::fs::remove_file(&report).ok();
    (json, stdout)
}

fn check_within_one_lsb(json: &Value, stdout: &str) -> u64 {
    let tensors = json["tensors"].as_array().unwrap();
    assert!(!tensors.is_empty(), "{stdout}");
    let mut off_by_one = 0;
    for t in tensors {
        let name = t["tensor"].as_str().unwrap();
        let elements = t["elements"].as_u64().unwrap();
        assert!(elements > 0, "{name}: nothing compared");
        assert_eq!(
            t["beyond_one"].as_u64(),
            Some(0),
            "{name}: >1 LSB apart\n{stdout}"
        );
        let ones = t["off_by_one"].as_u64().unwrap();
        assert!(
            ones < elements / 20 + 1,
            "{name}: {ones} of {elements} 1 LSB apart"
        );
        off_by_one += ones;
        let (lo, hi) = (
            t["accumulator_min"].as_i64().unwrap(),
            t["accumulator_max"].as_i64().unwrap(),
        );
        assert!(lo <= hi && hi > 0, "{name}: accumulator [{lo}, {hi}]");
        assert!(stdout.contains(t["layer"].as_str().unwrap()), "{stdout}");
    }
    off_by_one
}

#[test]
fn sample_cnn_integer_path_is_within_one_lsb_of_fake_quantization() {
    let (json, stdout) = report_of(&[], "channel");
    assert!(
        stdout.contains(">1 LSB") && stdout.contains("accumulator"),
        "{stdout}"
    );
    let tensors = json["tensors"].as_array().unwrap();
    // Every Conv and Gemm of the CNN runs in integer (no float fallback).
    assert!(
        json["float_layers"].as_array().unwrap().is_empty(),
        "{stdout}"
    );
    assert!(tensors.len() >= 3, "{stdout}");
    let total = check_within_one_lsb(&json, &stdout);
    println!("1-LSB differences (per channel): {total}");
    // Per tensor weights and 4-bit weights run on the same path.
    let (json, stdout) = report_of(&["--granularity", "tensor", "--weights", "int4"], "tensor4");
    check_within_one_lsb(&json, &stdout);
}

#[test]
fn integer_path_refuses_a_model_it_cannot_run_in_one_line() {
    // Asymmetric weights have a zero point the integer kernels do not take.
    let out = quantscope(&[
        "run",
        "sample_models/digits_cnn.onnx",
        "--data",
        "sample_models/data/digits_calib_x.npy",
        "--integer",
        "--weights",
        "int8-asym",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("integer path") && lines[0].contains("symmetric"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
