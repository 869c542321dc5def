//! The command line as a user runs it: `inspect` and `run` on the sample models, and one clear
//! error line (never a panic) for bad input.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{read_named, repo_path};

fn quantscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run printed exactly one `error:` line containing every fragment.
fn assert_clean_error(o: &Output, fragments: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, stdout: {}",
        stdout(o)
    );
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    for f in fragments {
        assert!(err.contains(f), "'{f}' not in: {err}");
    }
}

#[test]
fn inspect_prints_the_graph_summary() {
    let o = quantscope(&["inspect", "sample_models/digits_cnn.onnx"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for fragment in [
        "opset 13",
        "BatchNormalization×3",
        "Conv×3",
        "runnable:   yes",
        "weight",
    ] {
        assert!(text.contains(fragment), "'{fragment}' missing:\n{text}");
    }
}

#[test]
fn inspect_json_has_ops_tensors_and_channel_spread() {
    let o = quantscope(&["inspect", "--json", "sample_models/digits_mobilenet.onnx"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    assert_eq!(v["opset"], 17);
    assert!(v["ops"]["Conv"].as_u64().unwrap() >= 8);
    let tensors = v["tensors"].as_array().unwrap();
    let depthwise_weight = tensors
        .iter()
        .find(|t| t["role"] == "weight" && t["shape"][1] == 1 && t["shape"][2] == 3)
        .expect("a depthwise conv weight");
    assert!(depthwise_weight["channel_range_spread"].as_f64().unwrap() > 1.0);
    assert!(depthwise_weight["stats"]["std"].as_f64().unwrap() > 0.0);
}

#[test]
fn run_reports_accuracy_and_writes_outputs() {
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("sample_models/metrics.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npz");
    for model in ["digits_mlp", "digits_transformer"] {
        let o = quantscope(&[
            "run",
            &format!("sample_models/{model}.onnx"),
            "--data",
            "sample_models/data/digits_test_x.npy",
            "--labels",
            "sample_models/data/digits_test_y.npy",
            "--batch-size",
            "100",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let correct = metrics[model]["correct"].as_u64().unwrap();
        let expected = format!("({correct}/540)");
        assert!(stdout(&o).contains(&expected), "{model}: {}", stdout(&o));
        assert!(stdout(&o).contains("output 'logits': shape [540, 10]"));
        let written = read_named(&out);
        assert_eq!(written["logits"].shape(), &[540, 10]);
    }
}

#[test]
fn run_feeds_npz_inputs_by_name() {
    let o = quantscope(&[
        "run",
        "sample_models/digits_cnn.onnx",
        "--data",
        "sample_models/data/digits_test.npz",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("shape [540, 10]"));
}

#[test]
fn bad_input_gives_one_clear_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = quantscope(&["inspect", "no/such/model.onnx"]);
    assert_clean_error(&missing, &["no/such/model.onnx"]);

    let bytes = std::fs::read(repo_path("sample_models/digits_cnn.onnx")).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_error(
        &quantscope(&["inspect", truncated.to_str().unwrap()]),
        &["truncated.onnx"],
    );

    let wrong_ext = dir.path().join("model.txt");
    std::fs::write(&wrong_ext, b"hello").unwrap();
    assert_clean_error(
        &quantscope(&["inspect", wrong_ext.to_str().unwrap()]),
        &["model.txt"],
    );

    // Calibration images fed to a model of another input size.
    let wrong_shape = quantscope(&[
        "run",
        "sample_models/digits_cnn.onnx",
        "--data",
        "tests/fixtures/reference/digits_cnn.outputs.npz",
    ]);
    assert_clean_error(
        &wrong_shape,
        &[
            "input 'input'",
            "expects float [N, 1, 8, 8]",
            "got float [64, 10]",
        ],
    );

    let wrong_labels = quantscope(&[
        "run",
        "sample_models/digits_cnn.onnx",
        "--data",
        "tests/fixtures/reference/digits_cnn.inputs.npz",
        "--labels",
        "sample_models/data/digits_test_y.npy",
    ]);
    assert_clean_error(&wrong_labels, &["540 labels for 64 samples"]);
}

/// An op the engine does not know still leaves the model inspectable, and `run` names it.
#[test]
fn unsupported_op_keeps_weights_viewable() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(repo_path("sample_models/digits_mlp.onnx")).unwrap();
    // Same-length rename keeps the protobuf valid: every Relu becomes an unknown "Relz".
    let renamed = replace_all(&bytes, b"Relu", b"Relz");
    let path = dir.path().join("unknown_op.onnx");
    std::fs::write(&path, renamed).unwrap();
    let path = path.to_str().unwrap();

    let inspect = quantscope(&["inspect", path]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let text = stdout(&inspect);
    assert!(
        text.contains("runnable:   no: unsupported operator(s): Relz"),
        "{text}"
    );
    assert!(text.contains("weight"), "{text}");

    let run = quantscope(&[
        "run",
        path,
        "--data",
        "sample_models/data/digits_test_x.npy",
    ]);
    assert_clean_error(&run, &["Relz (nodes '", "Supported: "]);
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn weights_only_files_inspect_but_do_not_run() {
    let o = quantscope(&["inspect", "sample_models/data/digits_calib_x.npy"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("runnable:   no: weights only"));
    let run = quantscope(&[
        "run",
        "sample_models/data/digits_calib_x.npy",
        "--data",
        "sample_models/data/digits_test_x.npy",
    ]);
    assert_clean_error(&run, &["digits_calib_x.npy"]);
    assert!(Path::new(env!("CARGO_BIN_EXE_quantscope")).exists());
}

#[test]
fn quantize_reports_per_tensor_errors_and_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let o = quantscope(&[
        "quantize",
        "sample_models/digits_cnn.onnx",
        "--data",
        "sample_models/data/digits_calib_x.npy",
        "--eval-data",
        "sample_models/data/digits_test_x.npy",
        "--labels",
        "sample_models/data/digits_test_y.npy",
        "--weights",
        "int8",
        "--granularity",
        "channel",
        "--calib",
        "percentile:99.99",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("top-1 accuracy: float 99.81%, quantized"),
        "{text}"
    );
    assert!(
        text.contains("features.0.weight") && text.contains("percentile:99.99"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["weights"].as_array().unwrap().len(), 4);
    assert!(
        json["evaluation"]["classification"]["agreement"]
            .as_f64()
            .unwrap()
            > 0.98
    );
    assert_eq!(json["config"]["default"]["weights"]["scheme"], "int8");
    let (size, float_size) = (
        json["cost"]["size_bytes"].as_f64().unwrap(),
        json["cost"]["float32_size_bytes"].as_f64().unwrap(),
    );
    assert!(
        size < float_size / 3.0 && size > float_size / 4.0,
        "{size} vs {float_size}"
    );

    let bad = quantscope(&[
        "quantize",
        "sample_models/digits_cnn.onnx",
        "--data",
        "sample_models/data/digits_calib_x.npy",
        "--act-bits",
        "1",
    ]);
    assert_clean_error(&bad, &["tensor 'input'", "bit width 1"]);
}

#[test]
fn calibrate_writes_every_method_for_every_activation() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ranges.json");
    let o = quantscope(&[
        "calibrate",
        "sample_models/digits_transformer.onnx",
        "--data",
        "sample_models/data/digits_calib_x.npy",
        "--methods",
        "minmax,ema,percentile:99.999,mse,aciq-laplace,kl",
        "--bits",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        json["samples"], 512,
        "calibration samples, not rows of a tensor"
    );
    let tensors = json["tensors"].as_object().unwrap();
    assert!(tensors.len() > 20, "{} tensors", tensors.len());
    for (name, t) in tensors {
        let ranges = t["ranges"].as_object().unwrap();
        assert_eq!(
            ranges.len() + t["failed"].as_object().map_or(0, |f| f.len()),
            6,
            "{name}"
        );
        let minmax = &ranges["minmax"];
        for (method, r) in ranges.iter().filter(|(m, _)| !m.starts_with("aciq")) {
            // Every data-driven method's range lies within min-max (ACIQ's analytic clip may not).
            assert!(
                r[0].as_f64().unwrap() >= minmax[0].as_f64().unwrap() - 1e-6,
                "{name} {method}"
            );
            assert!(
                r[1].as_f64().unwrap() <= minmax[1].as_f64().unwrap() + 1e-6,
                "{name} {method}"
            );
        }
    }
    let bad = quantscope(&[
        "calibrate",
        "sample_models/digits_cnn.onnx",
        "--data",
        "sample_models/data/digits_calib_x.npy",
        "--methods",
        "percentile:150",
    ]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("percentile"), "{}", stderr(&bad));
}

/// The "BitOps per inference: ..." part of `quantize`'s output.
fn bitops_line(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.split_once("BitOps per inference: ")
                .map(|(_, b)| b.to_string())
        })
        .unwrap_or_else(|| panic!("no BitOps in: {text}"))
}

#[test]
fn quantize_reads_labels_from_the_npz_and_costs_per_inference() {
    let with_npz_labels = quantscope(&[
        "quantize",
        "sample_models/digits_cnn.onnx",
        "--data",
        "sample_models/data/digits_calib_x.npy",
        "--eval-data",
        "sample_models/data/digits_test.npz",
    ]);
    assert!(
        with_npz_labels.status.success(),
        "{}",
        stderr(&with_npz_labels)
    );
    let text = stdout(&with_npz_labels);
    assert!(text.contains("top-1 accuracy: float 99.81%"), "{text}");
    assert!(text.contains("evaluation data: 540 samples"), "{text}");
    // 64 samples instead of 540: the same costs.
    let fewer = quantscope(&[
        "quantize",
        "sample_models/digits_cnn.onnx",
        "--data",
        "sample_models/data/digits_calib_x.npy",
        "--eval-data",
        "tests/fixtures/reference/digits_cnn.inputs.npz",
    ]);
    assert!(fewer.status.success(), "{}", stderr(&fewer));
    assert!(stdout(&fewer).contains("evaluation data: 64 samples"));
    assert_eq!(bitops_line(&text), bitops_line(&stdout(&fewer)));
}

#[test]
fn labels_out_of_range_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.npz");
    let mut values = vec![3i64; 540];
    values[7] = 10;
    let array = quantscope::ir::TensorData::I64(
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[540]), values).unwrap(),
    );
    quantscope::load::write_npz(&labels, &[("labels", &array)]).unwrap();
    for command in ["run", "quantize"] {
        let o = quantscope(&[
            command,
            "sample_models/digits_cnn.onnx",
            "--data",
            "sample_models/data/digits_test_x.npy",
            "--labels",
            labels.to_str().unwrap(),
        ]);
        assert_clean_error(
            &o,
            &["label 10 of sample 7 is not a class of output 'logits' (0..9)"],
        );
    }
}

/// YuNet declares batch 1 and has 12 outputs: `quantize` on a folder of photos runs it one
/// image at a time and prints every output's figures.
#[test]
fn quantize_a_detector_with_declared_batch_one_from_photos() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/real_models");
    if !root.is_dir() {
        println!("skipped: {} is absent", root.display());
        return;
    }
    let o = quantscope(&[
        "quantize",
        root.join("yunet/yunet_s_640_640.onnx").to_str().unwrap(),
        "--data",
        root.join("images").to_str().unwrap(),
        "--preset",
        "bgr,0..255",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("6 samples (images in images (BGR, 0..255, NCHW 640x640)), chunks of 1 sample (input 'input' declares batch 1)"),
        "{text}"
    );
    for output in ["cls_8", "obj_32", "bbox_16", "kps_8"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(output) && l.contains('.')),
            "{output}: {text}"
        );
    }
    assert!(text.contains("worst output SQNR"), "{text}");
    assert!(!text.contains("top-1"), "not a classifier: {text}");
}
