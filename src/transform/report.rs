//! What a transform did, for the CLI and the app: the layers it changed, the ones it skipped and
//! why, warnings, and the per-channel weight ranges before and after.

use serde::Serialize;

use crate::stats::range_spread;

/// One layer a transform changed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Applied {
    /// The node (or pair of nodes, `a → b`) that was changed.
    pub layer: String,
    pub detail: String,
}

/// One candidate a transform left alone, with the reason.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Skipped {
    pub layer: String,
    pub reason: String,
}

/// Per-output-channel (min, max) of one weight tensor before and after a transform.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelRanges {
    /// The node reading the weight.
    pub layer: String,
    pub tensor: String,
    pub before: Vec<(f32, f32)>,
    pub after: Vec<(f32, f32)>,
}

impl ChannelRanges {
    /// Widest over narrowest channel range before the transform (see [`range_spread`]).
    pub fn spread_before(&self) -> Option<f32> {
        range_spread(&self.before)
    }

    /// Widest over narrowest channel range after the transform.
    pub fn spread_after(&self) -> Option<f32> {
        range_spread(&self.after)
    }
}

/// Per-output-channel mean shift of one layer's output (quantized minus float) before and
/// after bias correction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelShifts {
    /// The node whose bias was corrected.
    pub layer: String,
    /// The shift in the quantized model before correction: as the correction estimated it
    /// (and removed it), or as `measure_shifts` measured it on other data.
    pub before: Vec<f32>,
    /// The shift left in the corrected quantized model, as `measure_shifts` measured it
    /// (empty when not measured).
    pub after: Vec<f32>,
}

/// The account of one transform run.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct TransformReport {
    /// "BN folding", "cross-layer equalization", ...
    pub transform: String,
    pub applied: Vec<Applied>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    /// Weight ranges of every changed layer (first and second layers of equalized pairs).
    pub ranges: Vec<ChannelRanges>,
    /// Output shifts of every corrected layer (bias correction).
    pub shifts: Vec<ChannelShifts>,
    /// Sweeps over the chain of pairs (equalization); 1 for one-pass transforms.
    pub iterations: usize,
}

impl TransformReport {
    pub(crate) fn new(transform: &str) -> Self {
        TransformReport {
            transform: transform.to_string(),
            iterations: 1,
            ..Default::default()
        }
    }

    pub(crate) fn skip(&mut self, layer: &str, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            layer: layer.to_string(),
            reason: reason.into(),
        });
    }

    pub(crate) fn apply(&mut self, layer: &str, detail: impl Into<String>) {
        self.applied.push(Applied {
            layer: layer.to_string(),
            detail: detail.into(),
        });
    }

    /// Whether the transform changed nothing.
    pub fn nothing_applied(&self) -> bool {
        self.applied.is_empty()
    }

    /// A human-readable account: what was done, or "nothing to <transform>, because ..." with
    /// every skipped candidate and its reason.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        if self.nothing_applied() {
            let why = if self.skipped.is_empty() {
                "the graph has no candidate layers".to_string()
            } else {
                format!("no candidate qualified ({} skipped)", self.skipped.len())
            };
            lines.push(format!("{}: nothing to do: {why}", self.transform));
        } else {
            lines.push(format!(
                "{}: {} applied, {} skipped{}",
                self.transform,
                self.applied.len(),
                self.skipped.len(),
                if self.iterations > 1 {
                    format!(", {} sweeps", self.iterations)
                } else {
                    String::new()
                }
            ));
        }
        for a in &self.applied {
            lines.push(format!("  applied {}: {}", a.layer, a.detail));
        }
        for s in &self.skipped {
            lines.push(format!("  skipped {}: {}", s.layer, s.reason));
        }
        for r in &self.ranges {
            let show = |s: Option<f32>| s.map_or("-".to_string(), |v| format!("{v:.3e}"));
            lines.push(format!(
                "  ranges {} ({}): channel spread {} -> {}",
                r.layer,
                r.tensor,
                show(r.spread_before()),
                show(r.spread_after())
            ));
        }
        for w in &self.warnings {
            lines.push(format!("  warning: {w}"));
        }
        lines.join("\n")
    }
}
