//! Loader tests for hostile files: external data that leaves the model's directory through a
//! link, files that are not regular files, declared sizes far beyond the bytes present or the
//! memory budget, version fields outside what ONNX defines, and the wording of the errors.

use std::io::Write;

use super::*;
use crate::budget::MemoryBudget;
use crate::ir::{Finding, Severity};
use crate::load::{load_model_checked, read_arrays_within};

/// Asserts `e` is one line containing every fragment.
fn assert_line(e: &str, fragments: &[&str]) {
    assert!(!e.contains('\n'), "more than one line: {e}");
    for f in fragments {
        assert!(e.contains(f), "missing {f:?} in: {e}");
    }
}

// ---------------------------------------------------------------- external data confinement

#[cfg(unix)]
#[test]
fn external_data_through_a_link_leaving_the_directory_is_refused() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new().unwrap();
    let model_dir = dir.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    let secret = write_bytes(dir.path(), "secret.bin", &external_payload());
    symlink(&secret, model_dir.join("link.bin")).unwrap();
    // A linked directory leading out, too.
    symlink(dir.path(), model_dir.join("up")).unwrap();
    for location in ["link.bin", "up/secret.bin", "./up/model/../secret.bin"] {
        let m = model(graph_with(vec![external_tensor("w", location, 16, None)]));
        let path = write_model(&model_dir, "m.onnx", &m);
        let e = err_text(load_model(&path));
        if location.contains("..") {
            assert_line(&e, &["initializer 'w'", "not a path inside"]);
        } else {
            assert_line(
                &e,
                &[
                    "initializer 'w'",
                    &format!("'{location}' resolves to"),
                    "secret.bin",
                    "outside the model's directory",
                ],
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn links_that_stay_inside_the_directory_are_followed() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write_bytes(dir.path(), "data/w.bin", &external_payload());
    symlink("data/w.bin", dir.path().join("link.bin")).unwrap();
    let m = model(graph_with(vec![external_tensor("w", "link.bin", 16, None)]));
    let loaded = load_model(&write_model(dir.path(), "m.onnx", &m)).unwrap();
    assert_eq!(loaded.graph.initializers["w"].shape(), &[2, 3]);

    // A model reached through a linked directory reads beside the link, as given.
    let elsewhere = TempDir::new().unwrap();
    symlink(dir.path(), elsewhere.path().join("linked")).unwrap();
    let through = elsewhere.path().join("linked").join("m.onnx");
    assert!(load_model(&through).is_ok());
}

#[cfg(unix)]
#[test]
fn pipes_and_directories_are_refused_without_blocking() {
    let dir = TempDir::new().unwrap();
    let fifo = dir.path().join("pipe.onnx");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Opening a FIFO for reading would block until a writer appears: it must not be opened.
    let e = err_text(load_model(&fifo));
    assert_line(&e, &["pipe.onnx", "not a regular file"]);
    std::fs::rename(&fifo, dir.path().join("pipe.npy")).unwrap();
    let e = err_text(read_arrays(&dir.path().join("pipe.npy")));
    assert_line(&e, &["pipe.npy", "not a regular file"]);
    // The same FIFO as external data.
    let m = model(graph_with(vec![external_tensor("w", "pipe.npy", 0, None)]));
    let e = err_text(load_model(&write_model(dir.path(), "m.onnx", &m)));
    assert_line(&e, &["initializer 'w'", "not a regular file"]);

    let sub = dir.path().join("folder.onnx");
    std::fs::create_dir(&sub).unwrap();
    assert_line(&err_text(load_model(&sub)), &["folder.onnx", "directory"]);
}

// ---------------------------------------------------------------- declared sizes

#[test]
fn a_npy_header_declaring_more_than_the_file_holds_is_one_line() {
    let dir = TempDir::new().unwrap();
    let payload = vec![0u8; 128 * 1024];
    let bytes = npy_bytes("<f4", "(2147483648, 1, 8, 8)", &payload);
    let path = write_bytes(dir.path(), "huge.npy", &bytes);
    let e = err_text(read_arrays(&path));
    assert_line(
        &e,
        &[
            "huge.npy",
            "[2147483648, 1, 8, 8] of float32 (512 GiB)",
            "131072 bytes of data follow",
        ],
    );
    // 2^40 weights, as a model.
    let path = write_bytes(
        dir.path(),
        "w.npy",
        &npy_bytes("<f4", "(1099511627776,)", &[0; 64]),
    );
    assert_line(&err_text(load_model(&path)), &["w.npy", "4 TiB"]);
    // Shapes whose byte size overflows.
    let path = write_bytes(
        dir.path(),
        "o.npy",
        &npy_bytes("<f8", "(4611686018427387904, 4)", &[]),
    );
    assert_line(&err_text(read_arrays(&path)), &["o.npy", "too large"]);
    // An empty array whose other axes ndarray cannot represent (its reader would panic).
    let path = write_bytes(
        dir.path(),
        "z.npy",
        &npy_bytes("<f4", "(0, 4611686018427387904, 4611686018427387904)", &[]),
    );
    assert_line(&err_text(read_arrays(&path)), &["z.npy", "too large"]);
}

#[test]
fn a_npy_header_longer_than_the_file_is_refused_before_reading_it() {
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend(u32::MAX.to_le_bytes());
    bytes.extend(b"{'descr': '<f4'");
    let dir = TempDir::new().unwrap();
    let path = write_bytes(dir.path(), "h.npy", &bytes);
    assert_line(
        &err_text(read_arrays(&path)),
        &["h.npy", "4294967295 bytes of header text"],
    );
}

#[test]
fn a_broken_npy_header_is_one_line() {
    let dir = TempDir::new().unwrap();
    for (i, header) in [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,",
        "{'descr': '<f4', 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': 3, 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
        "[1, 2, 3]",
    ]
    .into_iter()
    .enumerate()
    {
        let mut text = header.to_string();
        text.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((text.len() as u16).to_le_bytes());
        bytes.extend(text.as_bytes());
        bytes.extend([0u8; 8]);
        let path = write_bytes(dir.path(), &format!("b{i}.npy"), &bytes);
        let e = err_text(read_arrays(&path));
        assert_line(&e, &[&format!("b{i}.npy"), "bad header"]);
    }
}

/// A compressed `.npz` whose one member inflates to `len` zero bytes of float32 data.
fn compressed_zeros_npz(path: &Path, len: usize) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("x.npy", options).unwrap();
    zip.write_all(&npy_bytes("<f4", &format!("({},)", len / 4), &[]))
        .unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        zip.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    zip.finish().unwrap();
}

#[test]
fn a_compressed_member_is_not_inflated_past_the_budget() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("bomb.npz");
    compressed_zeros_npz(&path, 64 << 20);
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    let e = err_text(read_arrays_within(&path, MemoryBudget::new(16 << 20)));
    assert_line(
        &e,
        &["bomb.npz", "array 'x'", "64 MiB", "memory budget of 16 MiB"],
    );
    // Within the budget it reads, and the raw bytes and the array were both on the books.
    let arrays = read_arrays_within(&path, MemoryBudget::new(256 << 20)).unwrap();
    assert_eq!(arrays[0].data.len(), 16 << 20);
}

#[test]
fn a_npz_member_declaring_more_than_it_holds_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("lie.npz");
    let file = std::fs::File::create(&path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    zip.start_file("x.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(&npy_bytes("<f4", "(2147483648, 1, 8, 8)", &[0; 4096]))
        .unwrap();
    zip.finish().unwrap();
    // The declared 512 GiB is refused before anything is read.
    assert_line(
        &err_text(read_arrays(&path)),
        &[
            "lie.npz",
            "array 'x'",
            "512 GiB",
            "member holds 4096 bytes of data",
        ],
    );
    // A member whose data is shorter than its header says.
    let small = dir.path().join("short.npz");
    let file = std::fs::File::create(&small).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    zip.start_file("x.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(&npy_bytes("<f4", "(1024,)", &[0; 100]))
        .unwrap();
    zip.finish().unwrap();
    assert_line(
        &err_text(read_arrays(&small)),
        &["short.npz", "array 'x'", "holds 100 bytes of data"],
    );
}

#[test]
fn onnx_tensors_and_safetensors_count_against_the_budget() {
    let dir = TempDir::new().unwrap();
    let values = vec![0.5f32; 1 << 16];
    let m = model(graph_with(vec![
        f32_tensor("a", &[1 << 16], &values),
        f32_tensor("b", &[1 << 16], &values),
    ]));
    let path = write_model(dir.path(), "m.onnx", &m);
    let (_, report) = load_model_checked(&path, MemoryBudget::new(1 << 20)).unwrap();
    assert_eq!(report.peak_bytes, 2 << 18);
    let e = err_text(load_model_checked(&path, MemoryBudget::new(300_000)));
    assert_line(
        &e,
        &[
            "m.onnx",
            "initializer 'b'",
            "256 KiB already loaded",
            "memory budget",
        ],
    );

    let st = write_bytes(dir.path(), "w.safetensors", &safetensors_bytes());
    let (_, report) = load_model_checked(&st, MemoryBudget::new(1 << 20)).unwrap();
    assert!(report.peak_bytes > 0);
    let e = err_text(load_model_checked(&st, MemoryBudget::new(8)));
    assert_line(
        &e,
        &["w.safetensors", "tensor '", "memory budget of 8 bytes"],
    );
}

// ---------------------------------------------------------------- versions

fn relu_model(ir: Option<i64>, opsets: &[(&str, i64)]) -> pb::ModelProto {
    let mut m = model(small_graph());
    m.ir_version = ir;
    m.opset_import = opsets
        .iter()
        .map(|(d, v)| pb::OperatorSetIdProto {
            domain: Some(d.to_string()),
            version: Some(*v),
        })
        .collect();
    m
}

#[test]
fn versions_onnxruntime_refuses_are_errors() {
    let dir = TempDir::new().unwrap();
    let cases: Vec<(pb::ModelProto, &[&str])> = vec![
        (
            relu_model(Some(99), &[("", 17)]),
            &["IR version 99 is newer than any ONNX defines (the newest is 14)"],
        ),
        (
            relu_model(Some(8), &[("", 99)]),
            &["opset 99 is newer than any ONNX release (the newest is 28)"],
        ),
        (
            relu_model(Some(8), &[("", -1)]),
            &["opset -1 is not an ONNX opset"],
        ),
        (
            relu_model(Some(8), &[("", 0)]),
            &["opset 0 is not an ONNX opset"],
        ),
        (
            relu_model(Some(8), &[]),
            &["imports no opset for the default ONNX domain"],
        ),
        (
            relu_model(Some(8), &[("com.microsoft", 1)]),
            &["imports no opset for the default ONNX domain"],
        ),
    ];
    for (i, (m, fragments)) in cases.into_iter().enumerate() {
        let path = write_model(dir.path(), &format!("v{i}.onnx"), &m);
        let e = err_text(load_model(&path));
        assert_line(&e, fragments);
    }
}

#[test]
fn versions_onnxruntime_accepts_are_warnings() {
    let dir = TempDir::new().unwrap();
    let warnings = |m: &pb::ModelProto| -> Vec<Finding> {
        let path = write_model(dir.path(), "w.onnx", m);
        let (_, report) = load_model_checked(&path, MemoryBudget::default()).unwrap();
        assert!(
            report
                .findings
                .iter()
                .all(|f| f.severity == Severity::Warning)
        );
        report.findings
    };
    assert!(warnings(&relu_model(Some(8), &[("", 17)])).is_empty());
    let w = warnings(&relu_model(Some(0), &[("", 17)]));
    assert!(
        w.len() == 1 && w[0].message.contains("IR version 0"),
        "{w:?}"
    );
    let w = warnings(&relu_model(None, &[("", 17)]));
    assert!(
        w.len() == 1 && w[0].message.contains("no IR version"),
        "{w:?}"
    );
    let w = warnings(&relu_model(Some(8), &[("", 5)]));
    assert!(
        w.len() == 1 && w[0].message.contains("opset 5 is older than 7"),
        "{w:?}"
    );
    let w = warnings(&relu_model(Some(10), &[("", 25)]));
    assert!(
        w.len() == 1 && w[0].message.contains("newer than 21"),
        "{w:?}"
    );
}

// ---------------------------------------------------------------- wording

#[test]
fn a_missing_file_is_named_once() {
    let e = load_model(Path::new("/nonexistent/dir/model.onnx")).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(
        chain,
        "/nonexistent/dir/model.onnx: No such file or directory"
    );
}

#[test]
fn unusual_paths_print_on_one_line() {
    let e = load_model(Path::new("bad\nname.onnx"))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "bad\\nname.onnx: No such file or directory");
    let e = load_model(Path::new("")).unwrap_err().to_string();
    assert!(e.starts_with("(empty path): "), "{e}");
    let kind_only = Error::io("/proc/x.onnx", std::io::ErrorKind::NotFound.into());
    assert_eq!(kind_only.to_string(), "/proc/x.onnx: not found");
}
