//! The bad-input suite: a seeded generator (`common/hostile.rs`) makes truncated, bit-flipped,
//! hostile-shaped, broken-zip, linked, huge-declaring and wrongly versioned files; every one,
//! through the library readers (model, arrays, session, encodings), must give a clean one-line
//! error naming the file or load, never panic, and allocate no more than the memory budget
//! plus a small multiple of the file's size (a counting global allocator measures each read).
//! A few cases go through the `quantscope` binary end to end: one `error:` line, exit code 1,
//! no signal.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::repo_path;
use hostile::{Case, Mutator, Reader};
use prost::Message;
use quantscope::budget::MemoryBudget;
use quantscope::export::{Session, import_encodings};
use quantscope::ir::Severity;
use quantscope::load::{load_model, load_model_checked, read_arrays_within};
use quantscope::quant::QuantConfig;
use quantscope::summary::ModelSummary;
use tempfile::TempDir;

// ---------------------------------------------------------------- counting allocator

/// Counts live heap bytes and their peak, for the whole test process.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Tests measure one at a time, so the peak is theirs alone.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` and returns its result with the most heap bytes it held above the start.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(start);
    (out, peak)
}

// ---------------------------------------------------------------- checking one case

/// The budget every library read runs under.
const BUDGET: u64 = 64 << 20;

/// What one read may allocate at most: the budget (converted tensors, inflated members) plus
/// 32 × the file (protobuf and JSON structures decoded from it) plus 4 MiB of fixed overhead.
fn allowed_peak(file_len: usize) -> usize {
    BUDGET as usize + 32 * file_len + (4 << 20)
}

/// The sample CNN, which encodings are imported against.
fn cnn() -> &'static quantscope::ir::Graph {
    static GRAPH: std::sync::OnceLock<quantscope::ir::Graph> = std::sync::OnceLock::new();
    GRAPH.get_or_init(|| {
        load_model(&repo_path("sample_models/digits_cnn.onnx"))
            .expect("sample CNN")
            .graph
    })
}

/// Reads a case with its reader: Ok, or the error text.
fn read(case: &Case) -> Result<(), String> {
    let budget = MemoryBudget::new(BUDGET);
    match case.reader {
        Reader::Model => {
            let (model, report) =
                load_model_checked(&case.path, budget).map_err(|e| e.to_string())?;
            // What `inspect` does with a loaded model must not fail either.
            let summary = ModelSummary::of(&model);
            let errors = report
                .findings
                .iter()
                .any(|f| f.severity == Severity::Error);
            assert!(
                !(errors && summary.runnable),
                "{}: findings say not runnable",
                case.label
            );
            Ok(())
        }
        Reader::Arrays => read_arrays_within(&case.path, budget)
            .map(drop)
            .map_err(|e| e.to_string()),
        Reader::Session => Session::read(&case.path)
            .map(drop)
            .map_err(|e| e.to_string()),
        Reader::Encodings => {
            let mut config = QuantConfig::int8_per_channel();
            import_encodings(&case.path, cnn(), &mut config)
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

/// Reads `case` and checks: no panic, an error is one non-empty line naming the file, and the
/// allocation stayed bounded. Returns the error text, if any.
fn check(case: &Case) -> Option<String> {
    let file_len = std::fs::metadata(&case.path).map_or(0, |m| m.len() as usize);
    let (outcome, peak) = measured(|| std::panic::catch_unwind(|| read(case)));
    let label = format!("{} ({})", case.label, case.path.display());
    let result = outcome.unwrap_or_else(|_| panic!("{label}: the reader panicked"));
    assert!(
        peak <= allowed_peak(file_len),
        "{label}: allocated {peak} bytes at peak for a {file_len}-byte file"
    );
    let error = result.err()?;
    assert!(!error.trim().is_empty(), "{label}: empty error");
    assert!(
        !error.contains('\n') && !error.contains('\r'),
        "{label}: more than one line: {error}"
    );
    assert!(
        error.len() < 1000,
        "{label}: {} characters: {error}",
        error.len()
    );
    let name = case
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        error.contains(&name),
        "{label}: the error does not name the file: {error}"
    );
    Some(error)
}

// ---------------------------------------------------------------- mutated valid files

/// Valid base files: (file name, bytes, reader).
fn bases(dir: &Path) -> Vec<(String, Vec<u8>, Reader)> {
    let sample = |p: &str| std::fs::read(repo_path(p)).expect("sample file");
    let small_npy = hostile::npy_bytes(
        "<f8",
        "(2, 3)",
        &(0..6)
            .flat_map(|i| (i as f64).to_le_bytes())
            .collect::<Vec<_>>(),
    );
    let int_npy = hostile::npy_bytes(
        "<i4",
        "(4,)",
        &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 9, 0, 0, 0],
    );
    let model_path = repo_path("sample_models/digits_cnn.onnx");
    let mut out = vec![
        (
            "mlp.onnx".into(),
            sample("sample_models/digits_mlp.onnx"),
            Reader::Model,
        ),
        (
            "cnn.onnx".into(),
            sample("sample_models/digits_cnn.onnx"),
            Reader::Model,
        ),
        (
            "conv.onnx".into(),
            hostile::conv_model(&[1, 1], Some(17), Some(8)).encode_to_vec(),
            Reader::Model,
        ),
        (
            "w.safetensors".into(),
            hostile::safetensors_valid(),
            Reader::Model,
        ),
        (
            "labels.npy".into(),
            sample("sample_models/data/digits_test_y.npy"),
            Reader::Model,
        ),
        ("small.npy".into(), small_npy.clone(), Reader::Arrays),
        (
            "stored.npz".into(),
            hostile::zip_bytes(
                &[("a.npy", small_npy.clone()), ("b.npy", int_npy.clone())],
                false,
            ),
            Reader::Arrays,
        ),
        (
            "deflated.npz".into(),
            hostile::zip_bytes(&[("a.npy", small_npy), ("b.npy", int_npy)], true),
            Reader::Model,
        ),
        (
            "session.json".into(),
            hostile::session_text(&model_path).into_bytes(),
            Reader::Session,
        ),
    ];
    for (name, text) in hostile::encodings_texts() {
        out.push((name.to_string(), text.into_bytes(), Reader::Encodings));
    }
    // Every base must be valid as written, or the mutations prove little.
    for (name, bytes, reader) in &out {
        let case = Case {
            label: format!("valid {name}"),
            path: hostile::write(dir, name, bytes),
            reader: *reader,
        };
        assert_eq!(check(&case), None, "{name} should read");
    }
    out
}

/// Mutations per base file.
const MUTATIONS: u64 = 300;

#[test]
fn mutated_files_give_one_line_errors_within_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let mut errors = 0;
    let mut total = 0;
    for (b, (name, bytes, reader)) in bases(dir.path()).into_iter().enumerate() {
        let mut mutator = Mutator::new(0x5eed_0000 + b as u64);
        for k in 0..MUTATIONS {
            let (mutated, what) = mutator.mutate(&bytes);
            let case = Case {
                label: format!("{name} #{k}: {what}"),
                path: hostile::write(dir.path(), &format!("m{k}-{name}"), &mutated),
                reader,
            };
            errors += usize::from(check(&case).is_some());
            total += 1;
            let _ = std::fs::remove_file(&case.path);
        }
    }
    // The mutations must mostly break the files, or the suite tests nothing.
    assert!(
        errors * 2 > total,
        "only {errors} of {total} mutated files were refused"
    );
}

// ---------------------------------------------------------------- hand-made hostile files

/// A case that must fail, with fragments its message must contain.
fn refused(dir: &Path, name: &str, bytes: &[u8], reader: Reader, fragments: &[&str]) {
    let case = Case {
        label: name.to_string(),
        path: hostile::write(dir, name, bytes),
        reader,
    };
    let error = check(&case).unwrap_or_else(|| panic!("{name} was accepted"));
    for f in fragments {
        assert!(error.contains(f), "{name}: {f:?} not in: {error}");
    }
}

#[test]
fn hostile_shapes_and_sizes_are_refused_before_allocating() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let kb128 = vec![0u8; 128 * 1024];
    refused(
        d,
        "declares-512g.npy",
        &hostile::npy_bytes("<f4", "(2147483648, 1, 8, 8)", &kb128),
        Reader::Arrays,
        &["512 GiB", "131072 bytes of data"],
    );
    refused(
        d,
        "weights-2p40.npy",
        &hostile::npy_bytes("<f4", "(1099511627776,)", &[0; 64]),
        Reader::Model,
        &["4 TiB"],
    );
    refused(
        d,
        "header-4g.npy",
        &hostile::npy_v2_with_header_len(u32::MAX),
        Reader::Arrays,
        &["4294967295 bytes of header text"],
    );
    refused(
        d,
        "member-512g.npz",
        &hostile::zip_bytes(
            &[(
                "x.npy",
                hostile::npy_bytes("<f4", "(2147483648, 1, 8, 8)", &kb128),
            )],
            true,
        ),
        Reader::Arrays,
        &["array 'x'", "512 GiB"],
    );
    refused(
        d,
        "member-header-4g.npz",
        &hostile::zip_bytes(
            &[("x.npy", hostile::npy_v2_with_header_len(u32::MAX))],
            false,
        ),
        Reader::Arrays,
        &["array 'x'", "header text"],
    );
    refused(
        d,
        "huge-shape.safetensors",
        &hostile::safetensors_raw(
            r#"{"w":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,16]}}"#,
            &[0; 16],
        ),
        Reader::Model,
        &["not a valid safetensors file"],
    );
    refused(
        d,
        "huge-header.safetensors",
        &{
            let mut b = (1u64 << 62).to_le_bytes().to_vec();
            b.extend(b"{}");
            b
        },
        Reader::Model,
        &["safetensors"],
    );
    refused(
        d,
        "dims-2p40.onnx",
        &hostile::hostile_dims_model(&[1 << 40], vec![0; 16]),
        Reader::Model,
        &[
            "initializer 'w'",
            "raw_data does not match",
            "4398046511104",
        ],
    );
    refused(
        d,
        "dims-no-data.onnx",
        &hostile::hostile_dims_model(&[1 << 20, 1 << 20], Vec::new()),
        Reader::Model,
        &["initializer 'w'"],
    );
    // External data declaring far more than its file holds, and a (sparse) file big enough
    // for what is declared but over the budget.
    hostile::write(d, "w.bin", &[0u8; 64]);
    refused(
        d,
        "external-long.onnx",
        &hostile::external_model("w.bin", 0, None, &[1 << 38]),
        Reader::Model,
        &["initializer 'w'", "too short"],
    );
    let big = std::fs::File::create(d.join("big.bin")).unwrap();
    big.set_len(128 << 20).unwrap();
    refused(
        d,
        "external-big.onnx",
        &hostile::external_model("big.bin", 0, None, &[1 << 25]),
        Reader::Model,
        &[
            "initializer 'w'",
            "big.bin",
            "128 MiB",
            "memory budget of 64 MiB",
        ],
    );
    refused(
        d,
        "external-offset.onnx",
        &hostile::external_model("w.bin", u64::MAX - 4, None, &[1, 1, 3, 3]),
        Reader::Model,
        &["initializer 'w'", "too short"],
    );
}

/// Found by the onnx fuzz target (2026-12-07): an empty float initializer whose first axis
/// declares 2^51 − 1 channels made the summary allocate one range per declared channel (an
/// abort on allocation). An empty tensor has no channels: it is summarized with none, or
/// refused. Here as a Conv weight, the role that always gets a channel axis.
#[test]
fn an_empty_weight_with_a_huge_axis_allocates_nothing_per_channel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("empty-huge-axis.onnx");
    let dims = [(1i64 << 51) - 1, 0, 64];
    std::fs::write(&path, hostile::hostile_dims_model(&dims, Vec::new())).unwrap();
    let (outcome, peak) = measured(|| {
        load_model(&path).map(|model| {
            let summary = ModelSummary::of(&model);
            summary
                .tensors
                .iter()
                .find(|t| t.name == "w")
                .map(|t| t.channels)
        })
    });
    match outcome {
        Ok(Some(channels)) => assert_eq!(channels, None, "an empty tensor has no channels"),
        Ok(None) => panic!("the summary lost initializer 'w'"),
        Err(e) => assert!(
            e.to_string().contains('w'),
            "error does not name the tensor: {e}"
        ),
    }
    assert!(
        peak < 16 << 20,
        "peak allocation {peak} bytes for an empty tensor"
    );
}

#[test]
fn a_compressed_member_is_bounded_while_inflating() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let path = hostile::write(dir.path(), "bomb.npz", &hostile::zip_bomb(64 << 20));
    let file_len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(file_len < 1 << 20, "{file_len}");
    let (result, peak) = measured(|| read_arrays_within(&path, MemoryBudget::new(16 << 20)));
    let error = result
        .expect_err("64 MiB inflated under a 16 MiB budget")
        .to_string();
    assert!(
        error.contains("array 'x'") && error.contains("memory budget of 16 MiB"),
        "{error}"
    );
    assert!(peak < 4 << 20, "refusing the bomb allocated {peak} bytes");
    // Within a budget that allows it, the peak stays near what the ledger counted: the raw
    // member and the array, not the file size times anything.
    let (arrays, peak) = measured(|| read_arrays_within(&path, MemoryBudget::new(256 << 20)));
    assert_eq!(arrays.expect("within the budget")[0].data.len(), 16 << 20);
    assert!(peak <= (128 << 20) + (4 << 20), "peak {peak}");
}

#[cfg(unix)]
#[test]
fn external_data_through_links_stays_in_the_model_directory() {
    use std::os::unix::fs::symlink;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let model_dir = dir.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    let outside = hostile::write(dir.path(), "outside.bin", &[7u8; 36]);
    symlink(&outside, model_dir.join("link.bin")).unwrap();
    symlink("/etc/passwd", model_dir.join("passwd.bin")).unwrap();
    symlink(dir.path(), model_dir.join("parent")).unwrap();
    for location in ["link.bin", "passwd.bin", "parent/outside.bin"] {
        refused(
            &model_dir,
            &format!("via-{}.onnx", location.replace('/', "-")),
            &hostile::external_model(location, 0, None, &[1, 1, 3, 3]),
            Reader::Model,
            &["initializer 'w'", "outside the model's directory", location],
        );
    }
}

#[test]
fn versions_and_attributes_outside_onnx_are_reported() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    for (name, opset, ir, fragment) in [
        (
            "opset99.onnx",
            Some(99),
            Some(8),
            "opset 99 is newer than any ONNX release",
        ),
        (
            "opset-1.onnx",
            Some(-1),
            Some(8),
            "opset -1 is not an ONNX opset",
        ),
        ("no-opset.onnx", None, Some(8), "imports no opset"),
        ("ir99.onnx", Some(17), Some(99), "IR version 99"),
    ] {
        refused(
            d,
            name,
            &hostile::conv_model(&[1, 1], opset, ir).encode_to_vec(),
            Reader::Model,
            &[fragment],
        );
    }
    // Accepted with a warning, as onnxruntime accepts them.
    for (name, opset, ir, fragment) in [
        ("opset1.onnx", Some(1), Some(8), "opset 1 is older than 7"),
        ("ir0.onnx", Some(17), Some(0), "IR version 0"),
    ] {
        let path = hostile::write(
            d,
            name,
            &hostile::conv_model(&[1, 1], opset, ir).encode_to_vec(),
        );
        let (_, report) = load_model_checked(&path, MemoryBudget::new(BUDGET)).expect(name);
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.severity == Severity::Warning && f.message.contains(fragment)),
            "{name}: {:?}",
            report.findings
        );
    }
    // Loads (the weights stay viewable) but is not runnable.
    let path = hostile::write(
        d,
        "strides0.onnx",
        &hostile::conv_model(&[0, 0], Some(17), Some(8)).encode_to_vec(),
    );
    let (model, report) = load_model_checked(&path, MemoryBudget::new(BUDGET)).unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.severity == Severity::Error)
    );
    let summary = ModelSummary::of(&model);
    assert!(!summary.runnable);
    assert_eq!(
        summary.run_error.as_deref(),
        Some("node 'conv' (Conv): attribute 'strides' must be positive, the file has [0, 0]")
    );
}

// ---------------------------------------------------------------- end to end

fn quantscope(args: &[&std::ffi::OsStr], budget: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quantscope"));
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    match budget {
        Some(b) => command.env("QUANTSCOPE_MEMORY_BUDGET", b),
        None => command.env_remove("QUANTSCOPE_MEMORY_BUDGET"),
    };
    command.output().expect("the binary runs")
}

/// Asserts a run failed with exit code 1 (not a signal) and exactly one `error:` line holding
/// every fragment.
fn assert_one_error_line(o: &Output, fragments: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "status {:?}, stderr: {err}",
        o.status
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    for f in fragments {
        assert!(err.contains(f), "{f:?} not in: {err}");
    }
}

#[test]
fn the_binary_refuses_hostile_files_with_one_line() {
    // Held so this test's own allocations do not count in another test's measurement.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let os = |p: &Path| p.as_os_str().to_owned();
    let cnn = repo_path("sample_models/digits_cnn.onnx");
    let s = |t: &str| std::ffi::OsString::from(t);

    let w = hostile::write(
        d,
        "w.npy",
        &hostile::npy_bytes("<f4", "(1099511627776,)", &[0; 64]),
    );
    let o = quantscope(&[&s("inspect"), &os(&w)], None);
    assert_one_error_line(&o, &["w.npy", "4 TiB"]);

    let data = hostile::write(
        d,
        "x.npy",
        &hostile::npy_bytes("<f4", "(2147483648, 1, 8, 8)", &vec![0; 128 * 1024]),
    );
    let o = quantscope(&[&s("run"), &os(&cnn), &s("--data"), &os(&data)], None);
    assert_one_error_line(&o, &["x.npy", "512 GiB"]);

    let bomb = hostile::write(d, "bomb.npz", &hostile::zip_bomb(64 << 20));
    let o = quantscope(
        &[&s("run"), &os(&cnn), &s("--data"), &os(&bomb)],
        Some("16M"),
    );
    assert_one_error_line(&o, &["bomb.npz", "memory budget of 16 MiB"]);

    let mut header = hostile::npy_bytes("<f4", "(4,)", &[0; 16]);
    header[20] = b'!';
    let broken = hostile::write(d, "broken.npy", &header);
    let o = quantscope(&[&s("inspect"), &os(&broken)], None);
    assert_one_error_line(&o, &["broken.npy", "bad header"]);

    let opset = hostile::write(
        d,
        "opset99.onnx",
        &hostile::conv_model(&[1, 1], Some(99), Some(8)).encode_to_vec(),
    );
    let o = quantscope(&[&s("inspect"), &os(&opset)], None);
    assert_one_error_line(&o, &["opset 99"]);

    let missing = d.join("nowhere").join("m.onnx");
    let o = quantscope(&[&s("inspect"), &os(&missing)], None);
    assert_one_error_line(&o, &["m.onnx: No such file or directory"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");

    #[cfg(unix)]
    {
        let model_dir = d.join("model");
        std::fs::create_dir(&model_dir).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", model_dir.join("link.bin")).unwrap();
        let linked = hostile::write(
            &model_dir,
            "m.onnx",
            &hostile::external_model("link.bin", 0, None, &[1, 1, 3, 3]),
        );
        let o = quantscope(&[&s("inspect"), &os(&linked)], None);
        assert_one_error_line(
            &o,
            &[
                "initializer 'w'",
                "link.bin",
                "outside the model's directory",
            ],
        );
    }
}

#[test]
fn inspect_says_a_zero_stride_conv_is_not_runnable() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let path: PathBuf = hostile::write(
        dir.path(),
        "strides0.onnx",
        &hostile::conv_model(&[0, 0], Some(17), Some(8)).encode_to_vec(),
    );
    let o = quantscope(&[std::ffi::OsStr::new("inspect"), path.as_os_str()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("runnable:   no: node 'conv' (Conv): attribute 'strides' must be positive"),
        "{out}"
    );
}

#[test]
fn a_huge_aimet_bit_width_is_reported_as_it_is() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let graph = cnn();
    let weight = graph
        .nodes
        .iter()
        .find(|n| n.op_type == "Conv")
        .and_then(|n| n.input(1))
        .expect("a Conv weight");
    let dir = TempDir::new().unwrap();
    let text = format!(
        r#"{{"activation_encodings": {{}}, "param_encodings": {{"{weight}": [{{"bitwidth": 1099511627776, "min": -1.0, "max": 1.0}}]}}}}"#
    );
    let path = hostile::write(dir.path(), "huge-bits.encodings", text.as_bytes());
    let mut config = QuantConfig::int8_per_channel();
    let report = import_encodings(&path, graph, &mut config).expect("read");
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert!(
        report.skipped[0]
            .1
            .starts_with("1099511627776-bit encoding"),
        "{report:?}"
    );
}

// ---------------------------------------------------------------- outputs and settings

/// Every file under `dir` (recursively) with its bytes, links as their targets' text.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().map(|e| e.unwrap()) {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(path, target.to_string_lossy().into_owned().into_bytes());
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Asserts a failed run changed nothing under `dir`: no file changed, none added or removed
/// (no partial output, no temporary file left behind).
fn assert_untouched(dir: &Path, before: &std::collections::BTreeMap<PathBuf, Vec<u8>>, what: &str) {
    let after = tree(dir);
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let removed: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "{what}: added {added:?}, removed {removed:?}"
    );
    for (path, bytes) in before {
        assert!(after[path] == *bytes, "{what}: {} changed", path.display());
    }
}

/// Spellings of `file` (in `dir`, the working directory of the runs) that name the same file.
fn spellings(dir: &Path, file: &str, rng: &mut Mutator) -> Vec<PathBuf> {
    let mut all = vec![
        PathBuf::from(file),
        PathBuf::from(".").join(file),
        PathBuf::from("sub").join("..").join(file),
        dir.join(file),
        dir.join("sub").join(".").join("..").join(file),
    ];
    #[cfg(unix)]
    {
        let soft = format!("soft-{}-{file}", rng.below(1 << 20));
        std::os::unix::fs::symlink(dir.join(file), dir.join(&soft)).unwrap();
        all.push(PathBuf::from(soft));
        let hard = format!("hard-{}-{file}", rng.below(1 << 20));
        std::fs::hard_link(dir.join(file), dir.join(&hard)).unwrap();
        all.push(PathBuf::from(hard));
    }
    all
}

fn run_in(dir: &Path, args: &[std::ffi::OsString]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .args(args)
        .current_dir(dir)
        .env_remove("QUANTSCOPE_MEMORY_BUDGET")
        .output()
        .expect("the binary runs")
}

#[test]
fn no_output_replaces_an_input_or_another_output() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("sub")).unwrap();
    for (name, from) in [
        ("m.onnx", "sample_models/digits_cnn.onnx"),
        ("x.npy", "sample_models/data/digits_calib_x.npy"),
        ("y.npy", "sample_models/data/digits_test_y.npy"),
        ("t.npz", "sample_models/data/digits_train.npz"),
    ] {
        std::fs::copy(repo_path(from), d.join(name)).unwrap();
    }
    std::fs::write(d.join("s.json"), hostile::session_text(&d.join("m.onnx"))).unwrap();
    std::fs::write(d.join("e.encodings"), &hostile::encodings_texts()[0].1).unwrap();

    // (command and its other arguments, the input files it reads, the output flags).
    let base = "--data x.npy";
    let commands: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (
            format!("run m.onnx {base} --labels y.npy"),
            vec!["m.onnx", "x.npy", "y.npy"],
            vec!["--out", "--save-inputs"],
        ),
        (
            format!("calibrate m.onnx {base} --methods minmax"),
            vec!["m.onnx", "x.npy"],
            vec!["--out"],
        ),
        (
            format!("quantize m.onnx {base} --eval-data t.npz --import-encodings e.encodings"),
            vec!["m.onnx", "x.npy", "t.npz", "e.encodings"],
            vec!["--report"],
        ),
        (
            format!("export m.onnx {base} --format aimet --session s.json --labels y.npy"),
            vec!["m.onnx", "x.npy", "s.json", "y.npy"],
            vec!["--out", "--save-session"],
        ),
        (
            format!("export m.onnx {base} --format qdq --import-encodings e.encodings"),
            vec!["m.onnx", "x.npy", "e.encodings"],
            vec!["--out"],
        ),
        (
            "transform m.onnx --fold-bn".into(),
            vec!["m.onnx"],
            vec!["--out"],
        ),
        (
            "qat m.onnx --train-data t.npz --eval-data x.npy --labels y.npy --epochs 1".into(),
            vec!["m.onnx", "t.npz", "x.npy", "y.npy"],
            vec!["--out", "--report"],
        ),
    ];
    let mut rng = Mutator::new(0x0a7f_11e5);
    let mut runs = 0;
    for (command, inputs, outputs) in &commands {
        for input in inputs {
            let spelled = spellings(d, input, &mut rng);
            for out_flag in outputs {
                // One spelling chosen by the seed per (command, input, output); all of them
                // for the model.
                let chosen: Vec<&PathBuf> = if *input == "m.onnx" {
                    spelled.iter().collect()
                } else {
                    vec![&spelled[rng.below(spelled.len())]]
                };
                for spelling in chosen {
                    let mut args: Vec<std::ffi::OsString> =
                        command.split(' ').map(Into::into).collect();
                    args.push(out_flag.into());
                    args.push(spelling.into());
                    // The other outputs go somewhere harmless.
                    for other in outputs.iter().filter(|o| *o != out_flag) {
                        args.push(other.into());
                        args.push(format!("other{}.json", other.len()).into());
                    }
                    let before = tree(d);
                    let o = run_in(d, &args);
                    let what = format!("{args:?}");
                    assert_one_error_line(&o, &["same file as", "choose another"]);
                    assert_untouched(d, &before, &what);
                    runs += 1;
                }
            }
        }
    }
    // Two outputs of one command naming one file, spelled differently.
    for args in [
        "run m.onnx --data x.npy --out o.npz --save-inputs sub/../o.npz",
        "export m.onnx --data x.npy --format aimet --out s2.json --save-session ./s2.json",
        "export m.onnx --data x.npy --format report --out r.json",
        "qat m.onnx --train-data t.npz --eval-data x.npy --labels y.npy --out q.onnx --report ./q.onnx",
    ] {
        let args: Vec<std::ffi::OsString> = args.split(' ').map(Into::into).collect();
        let before = tree(d);
        let o = run_in(d, &args);
        assert_one_error_line(&o, &["two outputs cannot share a file"]);
        assert_untouched(d, &before, &format!("{args:?}"));
        runs += 1;
    }
    assert!(runs > 60, "{runs} runs");
}

#[test]
fn a_report_appears_whole_or_not_at_all() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    // The layer table's name is taken by a directory, so its rename fails after the others'
    // temporary files were written (and the summary and tensor table renamed).
    std::fs::create_dir(d.join("r.layers.csv")).unwrap();
    let model = repo_path("sample_models/digits_cnn.onnx");
    let data = repo_path("sample_models/data/digits_calib_x.npy");
    let before = tree(d);
    let o = quantscope(
        &[
            "export".as_ref(),
            model.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
            "--format".as_ref(),
            "report".as_ref(),
            "--out".as_ref(),
            d.join("r.md").as_os_str(),
        ],
        None,
    );
    assert_one_error_line(&o, &["r.layers.csv", "cannot write"]);
    assert_untouched(d, &before, "report over a directory");
    assert!(d.join("r.layers.csv").is_dir());

    std::fs::remove_dir(d.join("r.layers.csv")).unwrap();
    let o = quantscope(
        &[
            "export".as_ref(),
            model.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
            "--format".as_ref(),
            "report".as_ref(),
            "--out".as_ref(),
            d.join("r.md").as_os_str(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> = tree(d)
        .keys()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["r.json", "r.layers.csv", "r.md", "r.tensors.csv"]);
}

#[test]
fn nonsense_settings_and_data_are_refused_with_one_line() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    std::fs::copy(repo_path("sample_models/digits_cnn.onnx"), d.join("m.onnx")).unwrap();
    std::fs::copy(
        repo_path("sample_models/data/digits_calib_x.npy"),
        d.join("x.npy"),
    )
    .unwrap();
    std::fs::copy(
        repo_path("sample_models/data/digits_test_x.npy"),
        d.join("tx.npy"),
    )
    .unwrap();
    let f32s = |values: &[f32]| {
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>()
    };
    hostile::write(
        d,
        "zero.npy",
        &hostile::npy_bytes("<f4", "(0, 1, 8, 8)", &[]),
    );
    hostile::write(
        d,
        "nan.npy",
        &hostile::npy_bytes("<f4", "(2, 1, 8, 8)", &f32s(&[f32::NAN; 128])),
    );
    hostile::write(
        d,
        "one.npy",
        &hostile::npy_bytes("<f4", "(1,)", &f32s(&[0.0])),
    );
    hostile::write(d, "range.onnx", &hostile::range_model(1e12));
    for (name, label) in [
        ("l10.npy", 10i64),
        ("lneg.npy", -1),
        ("lhuge.npy", 1_000_000_000_000),
    ] {
        let labels: Vec<u8> = (0..540).flat_map(|_| label.to_le_bytes()).collect();
        hostile::write(d, name, &hostile::npy_bytes("<i8", "(540,)", &labels));
    }
    let cases: &[(&str, &[&str])] = &[
        (
            "calibrate m.onnx --data x.npy --bits 0",
            &["--bits 0", "2 to 16"],
        ),
        (
            "calibrate m.onnx --data x.npy --bits 1",
            &["--bits 1", "2 to 16"],
        ),
        (
            "calibrate m.onnx --data x.npy --bits 64",
            &["--bits 64", "2 to 16"],
        ),
        ("run m.onnx --data zero.npy", &["zero.npy", "no samples"]),
        (
            "calibrate m.onnx --data zero.npy",
            &["zero.npy", "no samples"],
        ),
        ("bench m.onnx --data zero.npy", &["zero.npy", "no samples"]),
        (
            "calibrate m.onnx --data nan.npy",
            &["nan.npy", "NaN or infinite"],
        ),
        (
            "run m.onnx --data tx.npy --labels l10.npy",
            &["label 10", "0..9"],
        ),
        (
            "run m.onnx --data tx.npy --labels lneg.npy",
            &["label -1", "0..9"],
        ),
        (
            "run m.onnx --data tx.npy --labels lhuge.npy",
            &["label 1000000000000"],
        ),
        ("run range.onnx --data one.npy", &["Range", "too large"]),
        (
            "--memory-budget 100K run m.onnx --data x.npy",
            &["x.npy", "memory budget of 100 KiB"],
        ),
        #[cfg(target_os = "linux")]
        (
            "run m.onnx --data x.npy --out /proc/x.npz",
            &["/proc/x.npz", "does not accept new files"],
        ),
        #[cfg(target_os = "linux")]
        (
            "export m.onnx --data x.npy --format qdq --out /proc/x.onnx",
            &["/proc/x.onnx", "does not accept new files"],
        ),
    ];
    for (args, fragments) in cases {
        let args: Vec<std::ffi::OsString> = args.split(' ').map(Into::into).collect();
        let before = tree(d);
        let o = run_in(d, &args);
        assert_one_error_line(&o, fragments);
        assert_untouched(d, &before, &format!("{args:?}"));
    }

    // Versions ONNX defines but Quantscope is not tested with run, with one warning.
    for (name, opset, ir, fragment) in [
        ("opset1.onnx", Some(1), Some(8), "opset 1 is older than 7"),
        ("ir0.onnx", Some(17), Some(0), "IR version 0"),
        (
            "opset22.onnx",
            Some(22),
            Some(10),
            "opset 22 is newer than 21",
        ),
    ] {
        let path = hostile::write(
            d,
            name,
            &hostile::conv_model(&[1, 1], opset, ir).encode_to_vec(),
        );
        let o = quantscope(&["inspect".as_ref(), path.as_os_str()], None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(
            err.starts_with("warning: ") && err.contains(name) && err.contains(fragment),
            "{name}: {err}"
        );
    }
}

// ---------------------------------------------------------------- calibration memory

/// A chain of `n` Relu nodes on a [4, 8] input `x`: outputs `t1` … `tn`.
fn relu_chain(n: usize) -> quantscope::ir::Graph {
    use quantscope::ir::{DType, Dim, Graph, Node, ValueInfo};
    let mut graph = Graph {
        name: "chain".into(),
        opset: 17,
        ..Default::default()
    };
    graph.inputs.push(ValueInfo {
        name: "x".into(),
        dtype: Some(DType::F32),
        shape: Some(vec![Dim::Fixed(4), Dim::Fixed(8)]),
    });
    graph.outputs.push(ValueInfo {
        name: format!("t{n}"),
        dtype: Some(DType::F32),
        shape: None,
    });
    graph.nodes = (1..=n)
        .map(|i| {
            let input = if i == 1 {
                "x".to_string()
            } else {
                format!("t{}", i - 1)
            };
            let output = format!("t{i}");
            Node::new(
                format!("relu{i}"),
                "Relu",
                &[input.as_str()],
                &[output.as_str()],
            )
        })
        .collect();
    graph
}

/// Calibration keeps two histograms per tensor; their memory follows the budget, not the
/// model's depth: a 2,000-node chain that needs 750 MiB of histograms at the default
/// resolution calibrates within a 256 MiB budget (fewer internal bins), and a 64 MiB budget
/// refuses it with one line before allocating them.
#[test]
fn calibration_histograms_stay_within_the_memory_budget() {
    use ndarray::{ArrayD, IxDyn};
    use quantscope::calib::ObserverConfig;
    use quantscope::ir::TensorData;
    use quantscope::workflow::{Detail, RunControl, Samples, calibrate_within};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = 2000;
    let graph = relu_chain(n);
    let x = ArrayD::from_shape_fn(IxDyn(&[4, 8]), |i| (i[0] * 8 + i[1]) as f32 - 16.0);
    let samples = Samples::single("x", TensorData::F32(x), "a ramp").unwrap();
    let control = RunControl::default();
    let at_default = (n as u64 + 1) * ObserverConfig::default().histogram_bytes();
    assert!(at_default > 700 << 20, "{at_default}");

    let budget = MemoryBudget::new(256 << 20);
    let (calibration, peak) =
        measured(|| calibrate_within(&graph, &samples, None, &control, Detail::Channels, budget));
    let calibration = calibration.expect("fits with fewer internal bins");
    assert!(
        peak < 256 << 20,
        "calibration allocated {peak} bytes at peak"
    );
    let last = &calibration.stats[&format!("t{n}")];
    assert_eq!(last.min_max(), Some((0.0, 15.0)));
    let config = *last.config();
    assert!(
        config.oversample < 8,
        "fewer internal bins: {}",
        config.oversample
    );
    assert!((n as u64 + 1) * config.histogram_bytes() <= 128 << 20);
    assert_eq!(calibration.stats.len(), n + 1);

    let (result, peak) = measured(|| {
        calibrate_within(
            &graph,
            &samples,
            None,
            &control,
            Detail::Channels,
            MemoryBudget::new(64 << 20),
        )
    });
    let error = result
        .expect_err("2,001 tensors' histograms over 32 MiB")
        .to_string();
    assert!(
        error.contains("calibration histograms of 2001 tensors")
            && error.contains("memory budget of 64 MiB"),
        "{error}"
    );
    assert!(peak < 8 << 20, "refusing allocated {peak} bytes");
}
