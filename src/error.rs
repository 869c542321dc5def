//! The core's error type: every failure names what went wrong and where.
//!
//! Errors are created once, where they happen, and carried up unchanged; the CLI and the app
//! print them (anyhow at the edges).

use std::path::PathBuf;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file's contents are malformed (truncated, wrong magic, missing fields, bad values).
    #[error("{path}: {what}")]
    Format { path: PathBuf, what: String },
    /// The file type is not one Quantscope reads.
    #[error("{path}: unsupported file type (expected .onnx, .safetensors, .npy or .npz)")]
    UnsupportedFormat { path: PathBuf },
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
    #[error("{0} holds weights only; there is no graph to run")]
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
    /// Shorthand for a [`Error::Format`] error.
    pub fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            what: what.into(),
        }
    }

    /// Shorthand for an [`Error::Io`] error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
