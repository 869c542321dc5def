//! [`ActivationCollector`]: a [`TensorHook`] that feeds every float tensor of a run into its
//! [`CalibrationStats`], keeping statistics only (never the activations). After a first pass
//! over the data, [`ActivationCollector::start_histogram_pass`] turns it into a collector of
//! exact histograms for a second pass over the same data.
//!
//! During a run each tensor's statistics are updated by a deferred observation on a worker
//! thread, concurrently with the rest of the run (the tensor's entry travels with the work and
//! comes back when the run finishes), so collection does not hold the run up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use ndarray::{ArrayViewD, Axis};

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
    /// Second pass: only the histograms of tensors already seen are fed.
    histograms_only: bool,
    /// Entries updated by deferred observations, put back by `finish`.
    returned: Arc<Mutex<Vec<(String, CalibrationStats)>>>,
}

impl Clone for ActivationCollector {
    fn clone(&self) -> Self {
        ActivationCollector {
            config: self.config,
            only: self.only.clone(),
            stats: self.stats.clone(),
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

    /// Whether every tensor's histograms are exact (no range grew after the first batch).
    pub fn histograms_are_exact(&self) -> bool {
        self.stats
            .values()
            .all(CalibrationStats::histograms_are_exact)
    }

    /// Starts a second pass over the same data: every histogram is emptied with its range fixed
    /// to the tensor's final range, and later runs feed the histograms only, which then equal
    /// single-pass histograms of all the values (the other statistics are kept).
    pub fn start_histogram_pass(&mut self) {
        self.stats
            .values_mut()
            .for_each(CalibrationStats::restart_histograms);
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
                stats.observe_histograms(values);
            }
            return;
        }
        let config = self.config;
        self.stats
            .entry(name.to_string())
            .or_insert_with(|| CalibrationStats::new(config))
            .observe(values);
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
        let value = Arc::clone(value);
        let returned = Arc::clone(&self.returned);
        Some(Box::new(move || {
            if let TensorData::F32(a) = &*value {
                if histograms_only {
                    stats.observe_histograms(a.view());
                } else {
                    stats.observe(a.view());
                }
            }
            drop(value);
            returned
                .lock()
                .map_err(|_| Error::Graph("a calibration observation panicked".into()))?
                .push((name, stats));
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
        self.stats.extend(returned);
        Ok(())
    }
}
