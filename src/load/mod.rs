//! Loaders: model and data files into the IR, and nothing else.
//!
//! [`load_model`] picks the loader from the file extension and checks the content agrees
//! (an `.onnx` that is really a zip archive or a `.npy` array is reported as such).
//!
//! Every reader checks what a file declares (shapes, lengths, offsets) against the bytes the
//! file really holds and against a [`MemoryBudget`] before allocating, reads only regular
//! files, and keeps external tensor data inside the model's directory.

mod convert;
pub mod images;
mod mapped;
mod numpy;
mod onnx;
pub mod pb;
mod safetensors;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::budget::{Ledger, MemoryBudget};
use crate::error::{Error, Result};
use crate::ir::{self, Finding, Model, ModelFormat};

pub use numpy::{
    NamedArray, read_arrays, read_arrays_within, read_npy_bytes, read_npz_bytes, write_npz,
};
pub use onnx::{load_onnx, load_onnx_bytes, load_onnx_bytes_within};
pub use safetensors::{load_safetensors, load_safetensors_bytes};

/// What loading a model found besides the model itself.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Load-time facts ([`ir::validate`] plus what only the file shows, such as an unusual
    /// IR version): errors make the graph not runnable, warnings are worth showing.
    pub findings: Vec<Finding>,
    /// The most bytes the load had reserved against its memory budget at once.
    pub peak_bytes: u64,
}

/// Loads a model file (.onnx, .safetensors, .npy, .npz), assigning parameter roles, within the
/// process-wide memory budget ([`MemoryBudget::current`]).
pub fn load_model(path: &Path) -> Result<Model> {
    load_model_checked(path, MemoryBudget::current()).map(|(model, _)| model)
}

/// Loads a model within `budget` and validates it: the model and what the load found.
pub fn load_model_checked(path: &Path, budget: MemoryBudget) -> Result<(Model, LoadReport)> {
    let mut ledger = budget.ledger();
    let mut findings = Vec::new();
    let model = load_counted(path, &mut ledger, &mut findings)?;
    findings.extend(ir::validate(&model.graph));
    Ok((
        model,
        LoadReport {
            findings,
            peak_bytes: ledger.peak(),
        },
    ))
}

fn load_counted(path: &Path, ledger: &mut Ledger, findings: &mut Vec<Finding>) -> Result<Model> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let format = match ext.as_deref() {
        Some("onnx") => ModelFormat::Onnx,
        Some("safetensors") => ModelFormat::Safetensors,
        Some("npy") => ModelFormat::Npy,
        Some("npz") => ModelFormat::Npz,
        _ => {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
            });
        }
    };
    check_content(path, format)?;
    match format {
        ModelFormat::Onnx => onnx::load_onnx_counted(path, ledger, findings),
        ModelFormat::Safetensors => safetensors::load_safetensors_counted(path, ledger),
        ModelFormat::Npy | ModelFormat::Npz => numpy::load_numpy_model(path, ledger),
    }
}

/// Opens `path` for reading after checking it is a regular file (a directory, FIFO, socket or
/// device is refused before opening, so reading never blocks on a pipe or runs forever on
/// `/dev/zero`). `kind` names what was expected, e.g. "an ONNX model".
pub(crate) fn open_regular(path: &Path, kind: &str) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::format(
            path,
            format!("this is a directory, not {kind}"),
        ));
    }
    if !meta.is_file() {
        return Err(Error::format(
            path,
            format!("not a regular file (a pipe, socket or device), not {kind}"),
        ));
    }
    File::open(path).map_err(|e| Error::io(path, e))
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Empty,
    Zip,
    Npy,
    Safetensors,
    /// None of the above (ONNX protobuf has no magic number).
    Other,
}

impl Sniffed {
    fn describe(self) -> &'static str {
        match self {
            Sniffed::Empty => "empty",
            Sniffed::Zip => "a zip archive (as .npz files are)",
            Sniffed::Npy => "a NumPy .npy array",
            Sniffed::Safetensors => "a safetensors file",
            Sniffed::Other => "of unknown type",
        }
    }
}

/// "an ONNX model", "a .npz archive", ... for messages.
fn kind_of(format: ModelFormat) -> &'static str {
    match format {
        ModelFormat::Onnx => "an ONNX model",
        ModelFormat::Safetensors => "a safetensors file",
        ModelFormat::Npy => "a .npy array",
        ModelFormat::Npz => "a .npz archive",
    }
}

fn sniff(head: &[u8]) -> Sniffed {
    if head.is_empty() {
        Sniffed::Empty
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Sniffed::Zip
    } else if head.starts_with(b"\x93NUMPY") {
        Sniffed::Npy
    } else if head.len() >= 9 && head[8] == b'{' && head[..8].iter().rev().take(2).all(|&b| b == 0)
    {
        // An 8-byte little-endian header length (small, so its top bytes are zero) followed by
        // the JSON header.
        Sniffed::Safetensors
    } else {
        Sniffed::Other
    }
}

/// Rejects a file whose content is clearly another format than its extension says.
fn check_content(path: &Path, format: ModelFormat) -> Result<()> {
    let mut head = [0u8; 16];
    let mut file = open_regular(path, kind_of(format))?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let found = sniff(head.get(..filled).unwrap_or_default());
    let expected = match format {
        ModelFormat::Onnx => matches!(found, Sniffed::Other),
        ModelFormat::Safetensors => matches!(found, Sniffed::Safetensors),
        ModelFormat::Npy => matches!(found, Sniffed::Npy),
        ModelFormat::Npz => matches!(found, Sniffed::Zip),
    };
    if expected {
        return Ok(());
    }
    let kind = kind_of(format);
    let what = match found {
        Sniffed::Empty => format!("the file is empty, not {kind}"),
        Sniffed::Other => {
            format!("the file is not {kind}: its first bytes do not match the format")
        }
        other => format!(
            "the file is {}, not {kind} as its extension says",
            other.describe()
        ),
    };
    Err(Error::format(path, what))
}

#[cfg(test)]
mod tests;
