//! The core's error type: every failure names what went wrong and where.
//!
//! Errors are created once, where they happen, and carried up unchanged; the CLI and the app
//! print them (anyhow at the edges).

use std::path::{Path, PathBuf};

use crate::budget::bytes_text;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed. The I/O error is part of the message and not
    /// chained as a source, so printing the error with its chain does not repeat it.
    #[error("{}: {}", shown_path(.path), io_text(.cause))]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A file's contents are malformed (truncated, wrong magic, missing fields, bad values).
    #[error("{}: {what}", shown_path(.path))]
    Format { path: PathBuf, what: String },
    /// The file type is not one Quantscope reads.
    #[error(
        "{}: unsupported file type (expected .onnx, .safetensors, .npy or .npz)",
        shown_path(.path)
    )]
    UnsupportedFormat { path: PathBuf },
    /// Something a file declares (a shape, a size) would need more memory than the budget
    /// allows; nothing was allocated for it.
    #[error("{}", over_budget_message(.what, *.needed, *.in_use, *.budget))]
    OverBudget {
        /// What was to be allocated, with the file it came from.
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// Bytes already reserved by the same load.
        in_use: u64,
        budget: u64,
    },
    /// The graph uses operators the engine does not implement. Weights remain viewable.
    #[error("{}", unsupported_ops_message(.ops, .supported))]
    UnsupportedOps {
        /// (op type, node name) of each unsupported node.
        ops: Vec<(String, String)>,
        /// Every op type the engine implements.
        supported: Vec<&'static str>,
    },
    /// The graph is structurally wrong: dangling tensor names, cycles, missing outputs.
    #[error("graph: {0}")]
    Graph(String),
    /// An operator failed at run time (bad shapes, bad attributes).
    #[error("node '{node}' ({op}): {msg}")]
    Op {
        node: String,
        op: String,
        msg: String,
    },
    /// Input data given by the user does not fit the model.
    #[error("input '{name}': {msg}")]
    Input { name: String, msg: String },
    /// The model has no graph to run (weights-only file).
    #[error("{} holds weights only; there is no graph to run", shown_path(.0))]
    NotRunnable(PathBuf),
    /// Quantizing or calibrating a tensor failed (bad setting, no calibration data, ...).
    #[error("tensor '{tensor}': {msg}")]
    Quant { tensor: String, msg: String },
    /// A graph transform (BN folding, equalization, bias correction, ...) was refused; the
    /// model is left as it was.
    #[error("{transform}: {msg}")]
    Transform { transform: String, msg: String },
    /// The run was cancelled by its caller.
    #[error("cancelled")]
    Cancelled,
}

fn over_budget_message(what: &str, needed: u64, in_use: u64, budget: u64) -> String {
    let with = if in_use > 0 {
        format!(" with {} already loaded", bytes_text(in_use))
    } else {
        String::new()
    };
    format!(
        "{what} needs {}{with}, over the memory budget of {} (QUANTSCOPE_MEMORY_BUDGET raises it)",
        bytes_text(needed),
        bytes_text(budget)
    )
}

fn unsupported_ops_message(ops: &[(String, String)], supported: &[&'static str]) -> String {
    // Group by op type, in order of first appearance, naming at most three nodes each.
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (op, node) in ops {
        match groups.iter_mut().find(|(o, _)| o == op) {
            Some((_, nodes)) => nodes.push(node),
            None => groups.push((op, vec![node])),
        }
    }
    let listed: Vec<String> = groups
        .iter()
        .map(|(op, nodes)| {
            let shown: Vec<String> = nodes.iter().take(3).map(|n| format!("'{n}'")).collect();
            let more = match nodes.len() {
                0..=3 => String::new(),
                n => format!(" and {} more", n - 3),
            };
            let noun = if nodes.len() == 1 { "node" } else { "nodes" };
            format!("{op} ({noun} {}{more})", shown.join(", "))
        })
        .collect();
    format!(
        "unsupported operator(s): {}; weights can still be viewed. Supported: {}",
        listed.join(", "),
        supported.join(", ")
    )
}

impl Error {
    /// Shorthand for a [`Error::Format`] error. The text is kept to one line (line breaks in
    /// messages from parsers become "; ").
    pub fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            what: one_line(&what.into()),
        }
    }

    /// Shorthand for an [`Error::Io`] error.
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }
}

/// A path as shown in messages: `(empty path)` for an empty one, control characters (line
/// breaks, escapes) escaped so a message stays one line, and bytes that are not UTF-8 shown
/// as U+FFFD.
pub fn shown_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    if text.is_empty() {
        return "(empty path)".to_string();
    }
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// An I/O error as text, without the "(os error N)" suffix, with a readable sentence for
/// errors that carry only their kind ("entity not found" becomes "not found").
pub fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    if e.raw_os_error().is_none() && e.get_ref().is_none() {
        let plain = match e.kind() {
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::ReadOnlyFilesystem => "read-only file system",
            ErrorKind::StorageFull => "no space left on the device",
            ErrorKind::UnexpectedEof => "the file ends early",
            _ => return one_line(&e.to_string()),
        };
        return plain.to_string();
    }
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    };
    one_line(&text)
}

/// Joins the lines of a multi-line message with "; " (blank lines and surrounding spaces
/// dropped), so every error prints as one line.
pub fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r']) {
        return text.to_string();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
