//! The distribution view (centre panel): one tensor's value histogram with the quantization
//! grid over it, two draggable clip handles whose estimated error updates every frame, markers
//! for every calibration method's range, the per-channel range plot, original vs reconstructed
//! values with the error distribution, and (in explain mode) the formulas with live numbers.
//!
//! Contract with the app shell: the shell prepares a [`TensorDistribution`] once per tensor on
//! a worker thread, passes the current quantization choice and clip range in a
//! [`DistributionInput`] every frame, and applies the [`DistributionCommand`]s the view returns
//! (it owns the `QuantConfig`; the view never edits it). Everything the view computes per frame
//! is O(bins) (histogram estimates) or O(sample); what is heavier (marker estimates, the
//! per-channel estimate, k-means codebooks fitted on the sample) is cached per tensor and
//! setting in the view.
//!
//! Files: `view` (state and layout), `histogram_plot` (the histogram and grid drawing),
//! `interaction` + `clip_handles` (drag, double-click, marker clicks), `channels_plot`,
//! `reconstruction`, `explain`, `cache`. The quantizer drawn is [`crate::quant::Quantizer`],
//! built from the choice by [`QuantChoice::quantizer`]; its estimate and quantized histogram
//! come from [`crate::metrics::FineHistogram`].

mod cache;
mod channel_tab;
mod channels_plot;
mod clip_handles;
mod explain;
mod figures;
mod histogram_plot;
mod interaction;
mod plot_key;
mod reconstruction;
#[cfg(all(test, feature = "ui-tests"))]
mod tests;
mod threshold;
mod view;

use std::collections::BTreeMap;

use ndarray::ArrayViewD;

pub use crate::quant::scalar::{ScaleStats, SchemeStats, TernaryParams};
pub use clip_handles::Handle;
pub use threshold::{AciqDensities, DrawnCurves, WhyThreshold};
pub use view::{DistributionView, Ghost, Tab, ViewRects, histogram_height, level_count_text};

use crate::metrics::{FineHistogram, TensorMetrics};
use crate::quant::Quantizer;
use crate::quant::config::WeightScheme;
use crate::stats::channel_ranges;
use crate::summary::TensorSummary;

/// Values kept for the original-vs-reconstructed scatter.
pub const SAMPLE_SIZE: usize = 4096;
/// Bins of each per-channel histogram.
pub const CHANNEL_BINS: usize = 256;

/// One calibration method's range for this tensor, drawn as a marker.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationMarker {
    /// Display name, e.g. "min-max", "percentile 99.99", "MSE", "ACIQ Laplace", "KL".
    pub method: String,
    pub range: (f32, f32),
}

/// What the view shows about one tensor, computed once (on a worker) and reused every frame.
#[derive(Debug, Clone)]
pub struct TensorDistribution {
    /// Fine histogram of all finite values (with per-bin moments, for the O(bins) estimate).
    pub fine: FineHistogram,
    /// Per output channel (min, max); empty when the tensor has no channel axis.
    pub channel_ranges: Vec<(f32, f32)>,
    /// One coarse histogram per channel (same order as `channel_ranges`; empty when they are
    /// not kept).
    pub channel_histograms: Vec<FineHistogram>,
    /// What the channel view should say about where its channels come from and what is left
    /// out (activations: the calibration's per-channel statistics); None for weights.
    pub channel_note: Option<String>,
    /// An evenly strided sample of the values (at most [`SAMPLE_SIZE`]).
    pub sample: Vec<f32>,
    /// Every calibration method's range, for the markers.
    pub markers: Vec<CalibrationMarker>,
    /// Binary and ternary scales per tensor and per channel (for their levels).
    pub scheme_stats: SchemeStats,
    /// The MSE and KL curves against the clip value and ACIQ's densities (None when the
    /// statistics cannot give them).
    pub why: Option<WhyThreshold>,
}

impl TensorDistribution {
    /// Prepares the view data of `values` (channels along `channel_axis`). Heavy: call it on a
    /// worker. Errors (as text naming the problem) when the tensor has no finite value.
    pub fn prepare(
        values: ArrayViewD<'_, f32>,
        channel_axis: Option<usize>,
        markers: Vec<CalibrationMarker>,
    ) -> Result<Self, String> {
        let fine = FineHistogram::from_view(values.view()).map_err(|e| e.to_string())?;
        let (channel_ranges, channel_histograms) = match channel_axis {
            Some(axis) if axis < values.ndim() && values.len_of(ndarray::Axis(axis)) > 1 => {
                let ranges = channel_ranges(values.view(), axis);
                let histograms = values
                    .axis_iter(ndarray::Axis(axis))
                    .filter_map(|channel| {
                        let flat: Vec<f32> = channel.iter().copied().collect();
                        FineHistogram::with_bins(&flat, CHANNEL_BINS).ok()
                    })
                    .collect::<Vec<_>>();
                if histograms.len() == ranges.len() {
                    (ranges, histograms)
                } else {
                    (ranges, Vec::new())
                }
            }
            _ => (Vec::new(), Vec::new()),
        };
        let stride = values.len().div_ceil(SAMPLE_SIZE).max(1);
        let sample = values
            .iter()
            .step_by(stride)
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let scheme_stats = if channel_ranges.is_empty() {
            SchemeStats::compute(values.view(), None)
        } else {
            SchemeStats::compute(values.view(), channel_axis)
        };
        Ok(TensorDistribution {
            fine,
            channel_ranges,
            channel_histograms,
            channel_note: None,
            sample,
            markers,
            scheme_stats,
            why: None,
        })
    }
}

/// The quantizer currently chosen for the shown tensor (activations use `Linear`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantChoice {
    pub scheme: WeightScheme,
    pub per_channel: bool,
    /// Activations after ReLU and other non-negative tensors on an unsigned grid.
    pub unsigned: bool,
}

impl QuantChoice {
    /// The quantizer of this choice with clip range `clip` (linear schemes), the scales `stats`
    /// (binary, ternary) and `codebook` (k-means; None while it is not computed). Errors as
    /// text.
    pub fn quantizer(
        &self,
        clip: (f32, f32),
        stats: &ScaleStats,
        codebook: Option<&[f32]>,
    ) -> Result<Quantizer, String> {
        self.scheme
            .quantizer(self.unsigned, clip, stats, codebook)
            .map_err(|e| e.to_string())
    }
}

/// Exact figures for the current config revision, computed by a worker.
#[derive(Debug, Clone)]
pub struct ExactFigures {
    /// Element-wise metrics of the whole tensor under the current choice.
    pub metrics: TensorMetrics,
    /// SQNR (dB) of the same scheme per tensor and per channel, for the side-by-side figure.
    pub per_tensor_sqnr_db: Option<f64>,
    pub per_channel_sqnr_db: Option<f64>,
}

/// Everything the view reads in one frame.
pub struct DistributionInput<'a> {
    pub tensor: &'a TensorSummary,
    pub data: &'a TensorDistribution,
    pub choice: QuantChoice,
    /// The clip range in force (manual, or from the calibration method).
    pub clip: (f32, f32),
    /// Whether `clip` was set by hand.
    pub clip_is_manual: bool,
    /// The calibration method that gives the range when none is set by hand.
    pub method_name: String,
    /// Channels whose clip range is set by hand (weights of linear schemes): channel → range.
    /// Such a tensor is quantized per channel, the other channels as [`Self::channel_clip`]
    /// says.
    pub channel_clips: &'a BTreeMap<usize, (f32, f32)>,
    /// Exact figures for the current revision; None while a worker computes them.
    pub exact: Option<&'a ExactFigures>,
    /// Lecture mode: large fonts and formulas with live numbers.
    pub explain: bool,
}

/// No manual channel clips (activations, and weights without any).
pub static NO_CHANNEL_CLIPS: BTreeMap<usize, (f32, f32)> = BTreeMap::new();

impl DistributionInput<'_> {
    /// Whether the tensor is quantized with one grid per channel: per-channel layers without a
    /// per-tensor range set by hand, and any tensor with a channel's range set by hand.
    pub fn quantized_per_channel(&self) -> bool {
        !self.data.channel_ranges.is_empty()
            && ((self.choice.per_channel && !self.clip_is_manual) || !self.channel_clips.is_empty())
    }

    /// The clip range of channel `c` in force (as [`crate::quant::QuantizedModel`] chooses it
    /// with min-max weights): its range set by hand; else, per channel, its own min and max
    /// (or the tensor's range set by hand); else the tensor's clip range.
    pub fn channel_clip(&self, c: usize) -> (f32, f32) {
        if let Some(&clip) = self.channel_clips.get(&c) {
            return clip;
        }
        match self.data.channel_ranges.get(c) {
            Some(&own) if self.choice.per_channel && !self.clip_is_manual => own,
            _ => self.clip,
        }
    }

    /// Every channel's clip range in force (empty without channels).
    pub fn channel_clip_ranges(&self) -> Vec<(f32, f32)> {
        (0..self.data.channel_ranges.len())
            .map(|c| self.channel_clip(c))
            .collect()
    }
}

/// What the user asked for in the view; the shell applies it to the `QuantConfig`.
#[derive(Debug, Clone, PartialEq)]
pub enum DistributionCommand {
    /// A clip handle was dragged: the new manual range.
    SetClip { lo: f32, hi: f32 },
    /// Double-click: drop the manual range, back to the calibration method.
    ResetClip,
    /// A calibration marker was clicked: use this method's range (by marker name).
    AdoptMarker(String),
    /// A channel's clip handle was dragged (channel view): that channel's new manual range.
    SetChannelClip { channel: usize, lo: f32, hi: f32 },
    /// Drop a channel's manual range (double-click on the channel's histogram, or its reset).
    ResetChannelClip(usize),
}
