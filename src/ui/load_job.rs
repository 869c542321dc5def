//! Loading a model and computing its summary and histograms on a named worker thread.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};

use rayon::prelude::*;

use crate::load::load_model;
use crate::stats::Histogram;
use crate::summary::ModelSummary;

/// Bins of the per-tensor histogram shown in the tensor view.
pub const HISTOGRAM_BINS: usize = 128;

/// A model as the UI shows it.
pub struct LoadedModel {
    pub summary: ModelSummary,
    /// One histogram per entry of `summary.tensors`.
    pub histograms: Vec<Histogram>,
}

/// A load in progress; dropped to abandon it (the worker's result is then discarded).
pub struct LoadJob {
    pub path: PathBuf,
    receiver: Receiver<Result<LoadedModel, String>>,
}

impl LoadJob {
    /// Starts loading `path`; `wake` is called (from the worker) when the result is ready.
    pub fn start(path: &Path, wake: impl Fn() + Send + 'static) -> Result<LoadJob, String> {
        let (sender, receiver) = sync_channel(1);
        let job_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("quantscope-load".into())
            .spawn(move || {
                let result = std::panic::catch_unwind(|| load_for_view(&job_path))
                    .unwrap_or_else(|_| Err("internal error while loading (a bug)".to_string()));
                // The receiver may be gone when a newer load superseded this one.
                let _ = sender.send(result);
                wake();
            })
            .map_err(|e| format!("could not start the loading thread: {e}"))?;
        Ok(LoadJob {
            path: path.to_path_buf(),
            receiver,
        })
    }

    /// The result, once the worker has finished.
    pub fn poll(&self) -> Option<Result<LoadedModel, String>> {
        match self.receiver.try_recv() {
            Ok(result) => Some(result),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                Some(Err("the loading thread stopped without a result".into()))
            }
        }
    }
}

fn load_for_view(path: &Path) -> Result<LoadedModel, String> {
    let model = load_model(path).map_err(|e| e.to_string())?;
    let summary = ModelSummary::of(&model);
    let histograms = summary
        .tensors
        .par_iter()
        .map(|t| match model.graph.initializers.get(&t.name) {
            Some(tensor) => {
                let values = tensor.data.to_f32();
                let slice = values.as_slice_memory_order().unwrap_or(&[]);
                Histogram::with_range(slice, HISTOGRAM_BINS, t.stats.min, t.stats.max)
            }
            None => Histogram::with_range(&[], HISTOGRAM_BINS, 0.0, 0.0),
        })
        .collect();
    Ok(LoadedModel {
        summary,
        histograms,
    })
}
