//! [`ActivationCollector`]: a [`TensorHook`] that feeds every float tensor of a run into its
//! [`CalibrationStats`], keeping statistics only (never the activations). After a first pass
//! over the data, [`ActivationCollector::start_histogram_pass`] turns it into a collector of
//! exact histograms for a second pass over the same data. Optionally
//! ([`ActivationCollector::with_channels`]) it also keeps every tensor's per-channel statistics
//! ([`ChannelStats`]), along the axis its consumer treats as channels.
//!
//! During a run each tensor's statistics are updated by a deferred observation on a worker
//! thread, concurrently with the rest of the run (the tensor's entry travels with the work and
//! comes back when the run finishes), so collection does not hold the run up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use ndarray::{ArrayViewD, Axis};

use super::channels::{ChannelAxis, ChannelStats};
use super::observer::{CalibrationStats, ObserverConfig};
use crate::engine::{Observation, Plan, RunOptions, TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::TensorData;

/// Collects [`CalibrationStats`] of every float tensor (graph inputs and node outputs) seen
/// during [`Plan::run`]s; each run is one batch. Integer tensors (shapes, indices) are skipped.
#[derive(Debug, Default)]
pub struct ActivationCollector {
    config: ObserverConfig,
    only: Option<BTreeSet<String>>,
    stats: BTreeMap<String, CalibrationStats>,
    /// Per-channel statistics are kept when set: the channel axis rule of the tensors whose
    /// consumer sets one (the others take [`ChannelAxis::Second`]).
    channel_axes: Option<Arc<HashMap<String, ChannelAxis>>>,
    channels: BTreeMap<String, ChannelStats>,
    /// The histograms are left to the second pass (the first keeps the other statistics, and
    /// per channel min/max).
    histograms_later: bool,
    /// Second pass: only the histograms of tensors already seen are fed.
    histograms_only: bool,
    /// Entries updated by deferred observations, put back by `finish`.
    returned: Arc<Mutex<Vec<Returned>>>,
}

/// A tensor's entries coming back from a deferred observation.
type Returned = (String, CalibrationStats, Option<ChannelStats>);

impl Clone for ActivationCollector {
    fn clone(&self) -> Self {
        ActivationCollector {
            config: self.config,
            only: self.only.clone(),
            stats: self.stats.clone(),
            channel_axes: self.channel_axes.clone(),
            channels: self.channels.clone(),
            histograms_later: self.histograms_later,
            histograms_only: self.histograms_only,
            returned: Arc::default(),
        }
    }
}

impl ActivationCollector {
    /// A collector of every float tensor, with default observer settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// A collector with these observer settings.
    pub fn with_config(config: ObserverConfig) -> Self {
        ActivationCollector {
            config,
            ..Self::default()
        }
    }

    /// Also keeps per-channel statistics of every tensor (of rank 2 or more), channels along
    /// the axis `axes` names for it ([`ChannelAxis::of_graph`]), axis 1 for the others.
    pub fn with_channels(mut self, axes: HashMap<String, ChannelAxis>) -> Self {
        self.channel_axes = Some(Arc::new(axes));
        self
    }

    /// Whether the histograms (per tensor and per channel) wait for the second pass
    /// ([`start_histogram_pass`](Self::start_histogram_pass)), the first keeping the other
    /// statistics and per-channel min/max: cheaper when a second pass will run anyway (several
    /// batches, whose ranges almost always grow after the first).
    pub fn histograms_in_second_pass(mut self, later: bool) -> Self {
        self.histograms_later = later;
        self
    }

    /// Whether some histograms still wait for the second pass.
    pub fn histograms_pending(&self) -> bool {
        self.histograms_later
            && !self.histograms_only
            && !(self.channels.is_empty() && self.stats.is_empty())
    }

    /// Restricts collection to the tensors named in `names`.
    pub fn only<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Statistics gathered so far, by tensor name.
    pub fn stats(&self) -> &BTreeMap<String, CalibrationStats> {
        &self.stats
    }

    /// The statistics, by tensor name.
    pub fn into_stats(self) -> BTreeMap<String, CalibrationStats> {
        self.stats
    }

    /// Per-channel statistics gathered so far, by tensor name (empty unless
    /// [`with_channels`](Self::with_channels)).
    pub fn channel_stats(&self) -> &BTreeMap<String, ChannelStats> {
        &self.channels
    }

    /// The per-tensor and the per-channel statistics, by tensor name.
    pub fn into_parts(
        self,
    ) -> (
        BTreeMap<String, CalibrationStats>,
        BTreeMap<String, ChannelStats>,
    ) {
        (self.stats, self.channels)
    }

    /// Whether every tensor's histograms are exact (no range grew after the first batch).
    /// The per-channel histograms are not counted: see
    /// [`channel_histograms_are_exact`](Self::channel_histograms_are_exact).
    pub fn histograms_are_exact(&self) -> bool {
        self.stats
            .values()
            .all(CalibrationStats::histograms_are_exact)
    }

    /// Whether every tensor's per-channel histograms are exact.
    pub fn channel_histograms_are_exact(&self) -> bool {
        self.channels
            .values()
            .all(ChannelStats::histograms_are_exact)
    }

    /// Starts a second pass over the same data: every histogram is emptied with its range fixed
    /// to the tensor's final range, and later runs feed the histograms only, which then equal
    /// single-pass histograms of all the values (the other statistics are kept).
    pub fn start_histogram_pass(&mut self) {
        self.stats
            .values_mut()
            .for_each(CalibrationStats::restart_histograms);
        self.channels
            .values_mut()
            .for_each(ChannelStats::restart_histograms);
        self.histograms_only = true;
    }

    /// Feeds one tensor (as a batch) by name; what the hook does for each float tensor.
    pub fn observe(&mut self, name: &str, values: ArrayViewD<'_, f32>) {
        if let Some(only) = &self.only
            && !only.contains(name)
        {
            return;
        }
        if self.histograms_only {
            if let Some(stats) = self.stats.get_mut(name) {
                stats.observe_histograms(values.view());
            }
            if let Some(channels) = self.channels.get_mut(name) {
                channels.observe_histograms(values);
            }
            return;
        }
        let config = self.config;
        let later = self.histograms_later;
        observe_tensor(
            self.stats
                .entry(name.to_string())
                .or_insert_with(|| CalibrationStats::new(config)),
            values.view(),
            later,
        );
        if let Some(channels) = self.channels.get_mut(name) {
            observe_channels(channels, values, later);
        } else if let Some(mut channels) = self.fresh_channels(name, &values) {
            observe_channels(&mut channels, values, later);
            self.channels.insert(name.to_string(), channels);
        }
    }

    /// New per-channel statistics for tensor `name` shaped like `values`, when they are kept
    /// and there are none yet.
    fn fresh_channels(&self, name: &str, values: &ArrayViewD<'_, f32>) -> Option<ChannelStats> {
        let axes = self.channel_axes.as_ref()?;
        if self.channels.contains_key(name) {
            return None;
        }
        new_channel_stats(axes, name, values, self.config)
    }

    /// Runs `plan` over `data` (samples along axis 0) in batches of `batch_size`, fed to the
    /// graph input `input`, collecting statistics of every batch.
    pub fn run_batches(
        &mut self,
        plan: &Plan<'_>,
        input: &str,
        data: ArrayViewD<'_, f32>,
        batch_size: usize,
    ) -> Result<()> {
        if data.ndim() == 0 || batch_size == 0 {
            return Err(Error::Input {
                name: input.to_string(),
                msg: "calibration data needs a sample axis and a batch size of at least 1".into(),
            });
        }
        let samples = data.len_of(Axis(0));
        let mut start = 0;
        while start < samples {
            let end = (start + batch_size).min(samples);
            let batch = data
                .slice_axis(Axis(0), ndarray::Slice::from(start..end))
                .to_owned();
            let mut feeds = HashMap::new();
            feeds.insert(input.to_string(), TensorData::F32(batch));
            plan.run(feeds, Some(self), RunOptions::default())?;
            start = end;
        }
        Ok(())
    }
}

impl TensorHook for ActivationCollector {
    fn wants(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(name))
    }

    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if let TensorData::F32(a) = value {
            self.observe(site.name, a.view());
        }
        Ok(())
    }

    fn defer(&mut self, site: TensorSite<'_>, value: &Arc<TensorData>) -> Option<Observation> {
        if !matches!(**value, TensorData::F32(_)) || !self.wants(site.name) {
            return None; // `on_tensor` skips it
        }
        let name = site.name.to_string();
        let histograms_only = self.histograms_only;
        let mut stats = match self.stats.remove(&name) {
            Some(stats) => stats,
            None if histograms_only => return None, // second pass: tensors seen before only
            None => CalibrationStats::new(self.config),
        };
        let mut channels = self.channels.remove(&name);
        let axes = if histograms_only || channels.is_some() {
            None
        } else {
            self.channel_axes.clone()
        };
        let config = self.config;
        let later = self.histograms_later;
        let value = Arc::clone(value);
        let returned = Arc::clone(&self.returned);
        Some(Box::new(move || {
            if let TensorData::F32(a) = &*value {
                if histograms_only {
                    stats.observe_histograms(a.view());
                    if let Some(channels) = channels.as_mut() {
                        channels.observe_histograms(a.view());
                    }
                } else {
                    observe_tensor(&mut stats, a.view(), later);
                    if let Some(axes) = axes {
                        channels = new_channel_stats(&axes, &name, &a.view(), config);
                    }
                    if let Some(channels) = channels.as_mut() {
                        observe_channels(channels, a.view(), later);
                    }
                }
            }
            drop(value);
            returned
                .lock()
                .map_err(|_| Error::Graph("a calibration observation panicked".into()))?
                .push((name, stats, channels));
            Ok(())
        }))
    }

    fn finish(&mut self) -> Result<()> {
        let returned = std::mem::take(
            &mut *self
                .returned
                .lock()
                .map_err(|_| Error::Graph("a calibration observation panicked".into()))?,
        );
        for (name, stats, channels) in returned {
            if let Some(channels) = channels {
                self.channels.insert(name.clone(), channels);
            }
            self.stats.insert(name, stats);
        }
        Ok(())
    }
}

/// A first-pass observation of `values`: no histograms when they come `later`.
fn observe_tensor(stats: &mut CalibrationStats, values: ArrayViewD<'_, f32>, later: bool) {
    if later {
        stats.observe_statistics(values);
    } else {
        stats.observe(values);
    }
}

/// A first-pass observation of `values`: min/max only when the histograms come `later`.
fn observe_channels(channels: &mut ChannelStats, values: ArrayViewD<'_, f32>, later: bool) {
    if later {
        channels.observe_ranges(values);
    } else {
        channels.observe(values);
    }
}

/// Empty per-channel statistics of tensor `name` shaped like `values` (None below rank 2).
fn new_channel_stats(
    axes: &HashMap<String, ChannelAxis>,
    name: &str,
    values: &ArrayViewD<'_, f32>,
    config: ObserverConfig,
) -> Option<ChannelStats> {
    let rule = axes.get(name).copied().unwrap_or(ChannelAxis::Second);
    let axis = rule.resolve(values.ndim())?;
    Some(ChannelStats::new(
        axis,
        values.len_of(Axis(axis)),
        config.channels,
    ))
}
