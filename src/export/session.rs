//! The session file: everything a user tuned, as versioned JSON. The model is named by path and
//! SHA-256, the calibration data by path, the whole [`QuantConfig`] (manual ranges included)
//! is kept as is, and `view` is an opaque value the app fills with what was on screen.
//!
//! Opening a session whose model changed (another hash) keeps the settings that still name
//! existing layers and tensors and reports the ones dropped. Learned (AdaRound) rounding is
//! part of the config; one whose layer settings no longer match is dropped with a warning.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::atomic::write_bytes_atomic;
use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::quant::QuantConfig;
use crate::quant::learned_rounding::retain_matching;

/// The session format version this build writes and reads.
pub const SESSION_VERSION: u32 = 1;

/// The model a session was tuned on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
}

/// Where calibration data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSource {
    pub path: PathBuf,
    /// Samples per calibration batch.
    pub batch_size: usize,
}

/// A saved session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub version: u32,
    pub model: ModelRef,
    pub calibration: Option<CalibrationSource>,
    pub config: QuantConfig,
    /// What the app shows (selected tensor, panels, ...): stored and returned untouched.
    #[serde(default)]
    pub view: serde_json::Value,
}

/// What opening a session found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionLoadReport {
    /// The model file's hash differs from the saved one.
    pub model_changed: bool,
    /// Settings dropped because their layer or tensor no longer exists, e.g.
    /// `layer override 'conv3'`, `activation range 'x'`.
    pub dropped: Vec<String>,
    /// Human-readable warnings (model changed, model missing, ...).
    pub warnings: Vec<String>,
}

/// SHA-256 of a file, lowercase hex.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

impl Session {
    /// A session for the model at `model_path` (hashed now).
    pub fn new(
        model_path: &Path,
        calibration: Option<CalibrationSource>,
        config: QuantConfig,
    ) -> Result<Session> {
        Ok(Session {
            version: SESSION_VERSION,
            model: ModelRef {
                path: model_path.to_path_buf(),
                sha256: file_sha256(model_path)?,
            },
            calibration,
            config,
            view: serde_json::Value::Null,
        })
    }

    /// Writes the session as pretty JSON, atomically (never over the model file).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::format(path, format!("cannot serialize the session: {e}")))?;
        write_bytes_atomic(path, &[&self.model.path], json.as_bytes())
    }

    /// Reads a session file without checking the model (see [`Session::load`]).
    pub fn read(path: &Path) -> Result<Session> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not a session file (invalid JSON: {e})")))?;
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(SESSION_VERSION) => {}
            Some(v) => {
                return Err(Error::format(
                    path,
                    format!(
                        "session version {v} is not supported (this build reads version {SESSION_VERSION})"
                    ),
                ));
            }
            None => return Err(Error::format(path, "not a session file (no 'version')")),
        }
        serde_json::from_value(value)
            .map_err(|e| Error::format(path, format!("malformed session: {e}")))
    }

    /// The model path, resolved against the session file's directory when relative and not
    /// found from the working directory.
    pub fn model_path(&self, session_path: &Path) -> PathBuf {
        let p = &self.model.path;
        if p.is_relative()
            && !p.exists()
            && let Some(dir) = session_path.parent()
        {
            return dir.join(p);
        }
        p.clone()
    }

    /// Opens a session: reads it, checks the model's hash, and when the model changed drops the
    /// settings naming layers or tensors `graph` (the model as loaded now) no longer has.
    pub fn load(path: &Path, graph: &Graph) -> Result<(Session, SessionLoadReport)> {
        let mut session = Session::read(path)?;
        let mut report = SessionLoadReport::default();
        let model_path = session.model_path(path);
        match file_sha256(&model_path) {
            Ok(hash) if hash == session.model.sha256 => {}
            Ok(_) => {
                report.model_changed = true;
                report.warnings.push(format!(
                    "the model {} changed since the session was saved; settings for layers and tensors that still exist are kept",
                    model_path.display()
                ));
            }
            Err(e) => {
                report.model_changed = true;
                report.warnings.push(format!("cannot check the model: {e}"));
            }
        }
        report.dropped = retain_existing(&mut session.config, graph);
        report.warnings.extend(retain_matching(&mut session.config));
        if !report.dropped.is_empty() {
            report.warnings.push(format!(
                "dropped {} setting(s) naming what the model no longer has: {}",
                report.dropped.len(),
                report.dropped.join(", ")
            ));
        }
        Ok((session, report))
    }
}

/// Removes the entries of `settings` whose name is not `known`, naming each (as `what`) in
/// `dropped`.
fn retain_known<V>(
    settings: &mut BTreeMap<String, V>,
    what: &str,
    known: impl Fn(&str) -> bool,
    dropped: &mut Vec<String>,
) {
    settings.retain(|name, _| {
        let keep = known(name);
        if !keep {
            dropped.push(format!("{what} '{name}'"));
        }
        keep
    });
}

/// Removes from `config` the layer overrides and manual ranges that name nodes or tensors not in
/// `graph`; returns what was removed.
pub fn retain_existing(config: &mut QuantConfig, graph: &Graph) -> Vec<String> {
    let nodes: HashSet<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut tensors: HashSet<&str> = graph.initializers.keys().map(String::as_str).collect();
    tensors.extend(graph.inputs.iter().map(|i| i.name.as_str()));
    tensors.extend(
        graph
            .nodes
            .iter()
            .flat_map(|n| n.outputs.iter().map(String::as_str)),
    );
    let mut dropped = Vec::new();
    retain_known(
        &mut config.layers,
        "layer override",
        |n| nodes.contains(n),
        &mut dropped,
    );
    retain_known(
        &mut config.activation_ranges,
        "activation range",
        |n| tensors.contains(n),
        &mut dropped,
    );
    retain_known(
        &mut config.activation_channel_ranges,
        "channel clip ranges of activation",
        |n| tensors.contains(n),
        &mut dropped,
    );
    // an activation's channel count is known only when the data runs: the run checks it then
    retain_channels(
        &mut config.activation_channel_ranges,
        "activation",
        |name| crate::quant::fake::channel_clips::channel_count(graph, name),
        &mut dropped,
    );
    retain_known(
        &mut config.weight_ranges,
        "weight range",
        |n| graph.initializers.contains_key(n),
        &mut dropped,
    );
    retain_known(
        &mut config.adaround,
        "AdaRound rounding of weight",
        |n| graph.initializers.contains_key(n),
        &mut dropped,
    );
    let channels = |name: &str| {
        let tensor = graph.initializers.get(name)?;
        tensor.shape().get(tensor.channel_axis?).copied()
    };
    retain_known(
        &mut config.weight_channel_ranges,
        "channel clip ranges of weight",
        |n| channels(n).is_some(),
        &mut dropped,
    );
    retain_channels(
        &mut config.weight_channel_ranges,
        "weight",
        |name| Some(channels(name).unwrap_or(0)),
        &mut dropped,
    );
    dropped
}

/// Drops the channel clips of `ranges` whose channel is not below the tensor's channel count
/// (`count`; None: unknown, all kept), noting each in `dropped`, then tensors left without clips.
fn retain_channels(
    ranges: &mut BTreeMap<String, BTreeMap<usize, (f32, f32)>>,
    kind: &str,
    count: impl Fn(&str) -> Option<usize>,
    dropped: &mut Vec<String>,
) {
    for (name, clips) in ranges.iter_mut() {
        let Some(count) = count(name) else {
            continue;
        };
        clips.retain(|&c, _| {
            let keep = c < count;
            if !keep {
                dropped.push(format!("clip range of channel {c} of {kind} '{name}'"));
            }
            keep
        });
    }
    ranges.retain(|_, clips| !clips.is_empty());
}
