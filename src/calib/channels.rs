//! Streaming per-channel statistics of one activation over calibration batches: each channel's
//! min/max of the finite values and a coarse histogram over the channel's own range, in memory
//! bounded by [`ChannelConfig`] whatever the number of batches.
//!
//! # Which axis is the channel axis
//!
//! The channel axis of an activation is the one the layer consuming it treats as channels
//! ([`ChannelAxis::of_graph`]): axis 1 for the data input of a `Conv`/`ConvTranspose` (NCHW),
//! the last axis for input A of a `MatMul`/`Gemm` (the features a row is multiplied over). A
//! tensor with several such consumers takes the first one in node order; a tensor with none
//! (element-wise layers, graph outputs) takes axis 1, the NC… convention. Tensors of rank below
//! 2 have no channels.
//!
//! # Memory
//!
//! A tensor with more than [`ChannelConfig::max_channels`] channels keeps no per-channel
//! statistics; one with more than [`ChannelConfig::histogram_channels`] keeps min/max only.
//! [`ChannelConfig::bytes`] is the most one tensor's statistics hold; the observer settings
//! count it in the memory budget ([`super::ObserverConfig::within`]).
//!
//! # Histograms
//!
//! Each channel's histogram is a [`GrowingHistogram`] of [`ChannelConfig::bins`] bins, re-binned
//! as the channel's range grows (approximate, see [`super::histogram`]); a second pass over the
//! same data with the final ranges fixed ([`ChannelStats::restart_histograms`], then
//! [`ChannelStats::observe_histograms`]) makes it exact: equal to a single histogram of all the
//! channel's values over its [min, max].

use std::collections::HashMap;
use std::fmt;

use ndarray::{ArrayViewD, Axis};
use serde::{Deserialize, Serialize};

use super::histogram::GrowingHistogram;
use crate::ir::Graph;
use crate::stats::Histogram;

/// Where an activation's channels are, from the layer that consumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAxis {
    /// Axis 1 (NCHW, NC…): the data input of a convolution, and the default.
    Second,
    /// The last axis: input A of a `MatMul` or `Gemm`, the sequence X of an LSTM/GRU/RNN.
    Last,
}

impl ChannelAxis {
    /// The rule a consumer `op_type` reading the tensor as its input number `input` sets; None
    /// when the consumer does not define one.
    pub fn of_consumer(op_type: &str, input: usize) -> Option<ChannelAxis> {
        match (op_type, input) {
            ("Conv" | "ConvTranspose", 0) => Some(ChannelAxis::Second),
            // A recurrent op's sequence X is [seq, batch, input] (or [batch, seq, input]).
            ("MatMul" | "Gemm" | "LSTM" | "GRU" | "RNN", 0) => Some(ChannelAxis::Last),
            _ => None,
        }
    }

    /// The rule of every tensor of `graph` whose first defining consumer sets one (the others
    /// take [`ChannelAxis::Second`]).
    pub fn of_graph(graph: &Graph) -> HashMap<String, ChannelAxis> {
        let mut axes = HashMap::new();
        for node in &graph.nodes {
            for (i, input) in node.inputs.iter().enumerate() {
                if let Some(rule) = ChannelAxis::of_consumer(&node.op_type, i) {
                    axes.entry(input.clone()).or_insert(rule);
                }
            }
        }
        axes
    }

    /// The axis index for a tensor of `rank` (None below rank 2: no channels).
    pub fn resolve(self, rank: usize) -> Option<usize> {
        (rank >= 2).then_some(match self {
            ChannelAxis::Second => 1,
            ChannelAxis::Last => rank - 1,
        })
    }
}

/// Limits of the per-channel statistics of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelConfig {
    /// Bins of each channel's histogram. Default 64.
    pub bins: usize,
    /// A tensor with more channels keeps no per-channel statistics. Default 4096.
    pub max_channels: usize,
    /// A tensor with more channels keeps min/max only, no histograms. Default 1024.
    pub histogram_channels: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            bins: 64,
            max_channels: 4096,
            histogram_channels: 1024,
        }
    }
}

/// Bookkeeping bytes of one channel's histogram besides its counts (range, vector header).
const HISTOGRAM_OVERHEAD: u64 = 64;

impl ChannelConfig {
    /// Bytes of one channel's histogram.
    fn histogram_bytes(&self) -> u64 {
        self.bins.max(1) as u64 * 8 + HISTOGRAM_OVERHEAD
    }

    /// The most bytes one tensor's [`ChannelStats`] hold: min and max (f32) of up to
    /// `max_channels` channels and histograms of up to `histogram_channels`.
    pub fn bytes(&self) -> u64 {
        self.max_channels as u64 * 8
            + self.histogram_channels.min(self.max_channels) as u64 * self.histogram_bytes()
    }

    /// This configuration with fewer histogram channels, then fewer channels, until one
    /// tensor's statistics fit in `bytes` (possibly none at all).
    pub fn within(mut self, bytes: u64) -> Self {
        let ranges = self.max_channels as u64 * 8;
        if bytes < ranges {
            self.max_channels = (bytes / 8) as usize;
            self.histogram_channels = 0;
        } else {
            let affordable = (bytes - ranges) / self.histogram_bytes();
            self.histogram_channels = self.histogram_channels.min(affordable as usize);
        }
        self
    }
}

/// What a tensor's per-channel statistics leave out, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelLimit {
    /// Every channel has min/max and a histogram.
    None,
    /// More channels than `limit` have histograms: min/max only.
    NoHistograms { limit: usize },
    /// More channels than `limit`: no per-channel statistics.
    TooManyChannels { limit: usize },
    /// The channel count changed between batches (from `first` to `now`): statistics dropped.
    ShapeChanged { first: usize, now: usize },
}

impl fmt::Display for ChannelLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelLimit::None => write!(f, "min/max and a histogram per channel"),
            ChannelLimit::NoHistograms { limit } => write!(
                f,
                "min/max per channel only: channel histograms are kept for tensors of at most \
                 {limit} channels (memory budget)"
            ),
            ChannelLimit::TooManyChannels { limit } => write!(
                f,
                "no per-channel statistics: kept for tensors of at most {limit} channels \
                 (memory budget)"
            ),
            ChannelLimit::ShapeChanged { first, now } => write!(
                f,
                "no per-channel statistics: the channel count changed between batches \
                 ({first} then {now})"
            ),
        }
    }
}

/// Per-channel statistics of one activation over batches.
#[derive(Debug, Clone)]
pub struct ChannelStats {
    config: ChannelConfig,
    /// The axis index the channels are on.
    axis: usize,
    channels: usize,
    limit: ChannelLimit,
    /// Per channel min and max of the finite values (±∞ before any).
    min: Vec<f32>,
    max: Vec<f32>,
    /// One per channel, or empty (see `limit`).
    histograms: Vec<GrowingHistogram>,
}

impl ChannelStats {
    /// Empty statistics of a tensor with `channels` channels along `axis`.
    pub fn new(axis: usize, channels: usize, config: ChannelConfig) -> Self {
        let limit = if channels > config.max_channels {
            ChannelLimit::TooManyChannels {
                limit: config.max_channels,
            }
        } else if channels > config.histogram_channels {
            ChannelLimit::NoHistograms {
                limit: config.histogram_channels,
            }
        } else {
            ChannelLimit::None
        };
        let kept = if matches!(limit, ChannelLimit::TooManyChannels { .. }) {
            0
        } else {
            channels
        };
        let histograms = if limit == ChannelLimit::None {
            (0..channels)
                .map(|_| GrowingHistogram::new(config.bins))
                .collect()
        } else {
            Vec::new()
        };
        ChannelStats {
            config,
            axis,
            channels,
            limit,
            min: vec![f32::INFINITY; kept],
            max: vec![f32::NEG_INFINITY; kept],
            histograms,
        }
    }

    /// Statistics of `values` seen as one batch, channels along `axis` (None: `axis` is not an
    /// axis of `values`).
    pub fn of_tensor(
        values: ArrayViewD<'_, f32>,
        axis: usize,
        config: ChannelConfig,
    ) -> Option<Self> {
        let channels = *values.shape().get(axis)?;
        let mut s = ChannelStats::new(axis, channels, config);
        s.observe(values);
        Some(s)
    }

    /// Whether `values` has this tensor's channel count along its axis; a mismatch drops the
    /// statistics for good.
    fn accepts(&mut self, values: &ArrayViewD<'_, f32>) -> bool {
        let now = values.shape().get(self.axis).copied().unwrap_or(0);
        if let ChannelLimit::ShapeChanged { .. } = self.limit {
            return false;
        }
        if now != self.channels {
            self.limit = ChannelLimit::ShapeChanged {
                first: self.channels,
                now,
            };
            self.min.clear();
            self.max.clear();
            self.histograms.clear();
            return false;
        }
        !self.min.is_empty()
    }

    /// Adds one batch (its channel axis must have the same length as before).
    pub fn observe(&mut self, values: ArrayViewD<'_, f32>) {
        self.observe_with(values, true);
    }

    /// Adds one batch to the min/max only, leaving the histograms to a second pass (cheaper
    /// when one will run: its histograms are exact and the streamed ones are dropped).
    pub fn observe_ranges(&mut self, values: ArrayViewD<'_, f32>) {
        self.observe_with(values, false);
    }

    fn observe_with(&mut self, values: ArrayViewD<'_, f32>, with_histograms: bool) {
        if !self.accepts(&values) {
            return;
        }
        let histograms = with_histograms && !self.histograms.is_empty();
        for_each_channel(&values, self.axis, |c, slice| {
            let (lo, hi) = finite_range(slice);
            if lo > hi {
                return;
            }
            self.min[c] = self.min[c].min(lo);
            self.max[c] = self.max[c].max(hi);
            if histograms {
                let h = &mut self.histograms[c];
                h.ensure_range(f64::from(lo), f64::from(hi));
                h.add(slice, false);
            }
        });
    }

    /// Empties the histograms and fixes each one's range to its channel's [min, max] so far,
    /// for a second pass over the same data with [`observe_histograms`](Self::observe_histograms).
    pub fn restart_histograms(&mut self) {
        for c in 0..self.histograms.len() {
            let mut h = GrowingHistogram::new(self.config.bins);
            if self.min[c] <= self.max[c] {
                h.ensure_range(f64::from(self.min[c]), f64::from(self.max[c]));
            }
            self.histograms[c] = h;
        }
    }

    /// Adds one batch to the histograms only (the second pass). A value beyond a fixed range
    /// grows it as [`observe`](Self::observe) does.
    pub fn observe_histograms(&mut self, values: ArrayViewD<'_, f32>) {
        if self.histograms.is_empty() || !self.accepts(&values) {
            return;
        }
        for_each_channel(&values, self.axis, |c, slice| {
            let (lo, hi) = finite_range(slice);
            if lo <= hi {
                let h = &mut self.histograms[c];
                h.ensure_range(f64::from(lo), f64::from(hi));
                h.add(slice, false);
            }
        });
    }

    /// The axis the channels are on.
    pub fn axis(&self) -> usize {
        self.axis
    }

    /// Number of channels along the axis (kept or not).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// What is left out, if anything.
    pub fn limit(&self) -> ChannelLimit {
        self.limit
    }

    /// Each channel's (min, max) of the finite values (None for a channel without any); empty
    /// when no per-channel statistics are kept.
    pub fn ranges(&self) -> Vec<Option<(f32, f32)>> {
        self.min
            .iter()
            .zip(&self.max)
            .map(|(&lo, &hi)| (lo <= hi).then_some((lo, hi)))
            .collect()
    }

    /// Channel `c`'s histogram over its [min, max] with [`ChannelConfig::bins`] bins; None
    /// without histograms or finite values.
    pub fn histogram(&self, c: usize) -> Option<Histogram> {
        let h = self.histograms.get(c)?;
        let (lo, hi) = self.ranges().get(c).copied().flatten()?;
        Some(h.resample(f64::from(lo), f64::from(hi), self.config.bins.max(1)))
    }

    /// Whether the histograms are kept for this tensor.
    pub fn has_histograms(&self) -> bool {
        !self.histograms.is_empty()
    }

    /// Whether every channel's histogram holds each value in the bin a single pass over the
    /// channel's final range would give (no range grew after its first batch).
    pub fn histograms_are_exact(&self) -> bool {
        self.histograms.iter().all(|h| h.rebin_count() == 0)
    }
}

/// Calls `f(c, values of channel c)` for every channel along `axis`, each channel's values in
/// one slice: the runs of a row-major tensor gathered into a scratch buffer (borrowed when
/// they are already one run), or, when the channels are interleaved (runs shorter than 16,
/// the last axis), one transposing copy, channel-major.
fn for_each_channel(values: &ArrayViewD<'_, f32>, axis: usize, mut f: impl FnMut(usize, &[f32])) {
    let channels = values.len_of(Axis(axis));
    if channels == 0 || values.is_empty() {
        return;
    }
    let inner: usize = values.shape()[axis + 1..].iter().product();
    if inner >= 16 {
        let owned;
        let all = match values.as_slice() {
            Some(all) => all,
            None => {
                owned = values.iter().copied().collect::<Vec<f32>>();
                &owned
            }
        };
        let outer = all.len() / (channels * inner);
        if outer == 1 {
            for (c, run) in all.chunks_exact(inner).enumerate() {
                f(c, run);
            }
            return;
        }
        let mut scratch = Vec::with_capacity(outer * inner);
        for c in 0..channels {
            scratch.clear();
            for o in 0..outer {
                let start = (o * channels + c) * inner;
                scratch.extend_from_slice(&all[start..start + inner]);
            }
            f(c, &scratch);
        }
    } else {
        let mut order: Vec<usize> = (0..values.ndim()).collect();
        order.remove(axis);
        order.insert(0, axis);
        let major = values.view().permuted_axes(order);
        let major = major.as_standard_layout();
        let per_channel = values.len() / channels;
        if let Some(all) = major.as_slice() {
            for (c, slice) in all.chunks_exact(per_channel).enumerate() {
                f(c, slice);
            }
        }
    }
}

/// (min, max) of the finite values (min > max when there is none): the plain extremes when
/// they are finite (NaN is skipped by `min`/`max`), else a pass that leaves ±∞ out.
fn finite_range(values: &[f32]) -> (f32, f32) {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if lo.is_finite() && hi.is_finite() {
        return (lo, hi);
    }
    values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        })
}

#[cfg(test)]
mod tests;
