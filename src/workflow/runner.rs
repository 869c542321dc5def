//! Running over [`Samples`] chunk by chunk: [`run_chunks`] runs chunks in parallel on rayon
//! (each chunk with its own hooks, in waves of one chunk per worker) and returns the
//! per-chunk results in chunk order; [`for_each_chunk`] visits chunks one after another, in
//! order, for state that must see the data in order. Both stop at the cancel flag and report
//! progress as the fraction of chunks done.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::samples::{Feeds, Samples};
use crate::engine::RunOptions;
use crate::error::{Error, Result};

/// Cancellation and progress of a workflow step.
#[derive(Clone, Copy, Default)]
pub struct RunControl<'a> {
    /// Checked before every chunk and between nodes.
    pub cancel: Option<&'a AtomicBool>,
    /// Called with the fraction done, in [0, 1] (from any thread).
    pub progress: Option<&'a (dyn Fn(f32) + Sync)>,
}

impl<'a> RunControl<'a> {
    /// A control with a cancel flag only.
    pub fn cancel(flag: &'a AtomicBool) -> Self {
        RunControl {
            cancel: Some(flag),
            progress: None,
        }
    }

    /// The engine's options for one run.
    pub fn options(&self) -> RunOptions<'a> {
        RunOptions {
            cancel: self.cancel,
        }
    }

    /// `Err(Cancelled)` once cancellation was asked for.
    pub fn check(&self) -> Result<()> {
        match self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }

    /// Reports `fraction` done.
    pub fn report(&self, fraction: f32) {
        if let Some(progress) = self.progress {
            progress(fraction.clamp(0.0, 1.0));
        }
    }
}

/// One chunk: its index and the samples it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub index: usize,
    pub range: Range<usize>,
}

impl Chunk {
    /// Number of samples in the chunk.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether the chunk holds no sample.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// The chunks of `count` samples at `batch` per chunk.
pub fn chunks(count: usize, batch: usize) -> Vec<Chunk> {
    let batch = batch.max(1);
    (0..count)
        .step_by(batch)
        .enumerate()
        .map(|(index, start)| Chunk {
            index,
            range: start..(start + batch).min(count),
        })
        .collect()
}

/// Runs `per_chunk` on every chunk of `samples` (`batch` samples each) in parallel; results in
/// chunk order. The first error (or cancellation) is returned.
pub fn run_chunks<T: Send>(
    samples: &Samples,
    batch: usize,
    control: &RunControl<'_>,
    per_chunk: impl Fn(&Chunk, Feeds) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let all = chunks(samples.count(), batch);
    let total = all.len().max(1);
    let done = AtomicUsize::new(0);
    control.check()?;
    // Waves of one chunk per worker: a worker waiting inside a kernel may steal another chunk
    // of its wave, never one of a later wave, so memory stays at one wave of chunks.
    let wave = rayon::current_num_threads().max(1);
    let mut results = Vec::with_capacity(all.len());
    for group in all.chunks(wave) {
        let part: Vec<T> = group
            .par_iter()
            .with_max_len(1)
            .map(|chunk| {
                control.check()?;
                let result = per_chunk(chunk, samples.feeds(chunk.range.clone()))?;
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                control.report(finished as f32 / total as f32);
                Ok(result)
            })
            .collect::<Result<_>>()?;
        results.extend(part);
    }
    Ok(results)
}

/// Visits every chunk of `samples` in order on this thread.
pub fn for_each_chunk(
    samples: &Samples,
    batch: usize,
    control: &RunControl<'_>,
    mut per_chunk: impl FnMut(&Chunk, Feeds) -> Result<()>,
) -> Result<()> {
    let all = chunks(samples.count(), batch);
    let total = all.len().max(1);
    for chunk in &all {
        control.check()?;
        per_chunk(chunk, samples.feeds(chunk.range.clone()))?;
        control.report((chunk.index + 1) as f32 / total as f32);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::ir::TensorData;

    fn samples(n: usize) -> Samples {
        let values = ArrayD::from_shape_vec(IxDyn(&[n, 1]), (0..n).map(|v| v as f32).collect());
        Samples::single("x", TensorData::F32(values.unwrap()), "t").unwrap()
    }

    #[test]
    fn chunks_cover_the_samples_in_order() {
        let c = chunks(5, 2);
        let ranges: Vec<_> = c.iter().map(|c| c.range.clone()).collect();
        assert_eq!(ranges, vec![0..2, 2..4, 4..5]);
        assert!(chunks(0, 4).is_empty());
    }

    #[test]
    fn parallel_results_come_back_in_chunk_order_with_progress() {
        let seen = Mutex::new(Vec::new());
        let progress = |f: f32| seen.lock().unwrap().push(f);
        let control = RunControl {
            cancel: None,
            progress: Some(&progress),
        };
        let firsts = run_chunks(&samples(10), 3, &control, |chunk, feeds| {
            let x = feeds["x"].as_f32().unwrap().clone();
            assert_eq!(x.shape()[0], chunk.len());
            Ok(x[[0, 0]])
        })
        .unwrap();
        assert_eq!(firsts, vec![0.0, 3.0, 6.0, 9.0]);
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 4);
        assert!(seen.contains(&1.0));
    }

    #[test]
    fn a_cancelled_run_stops_before_any_chunk() {
        let flag = AtomicBool::new(true);
        let err =
            run_chunks(&samples(4), 1, &RunControl::cancel(&flag), |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Cancelled));
        let err =
            for_each_chunk(&samples(4), 1, &RunControl::cancel(&flag), |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Cancelled));
    }
}
