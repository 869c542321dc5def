//! Background jobs: work on a named worker thread with progress, a cancel flag and the config
//! revision it was started for. No GUI here: the worker wakes its owner through an injected
//! closure (the app passes `ctx.request_repaint`).
//!
//! * [`JobSlot`] holds at most one job of a kind; starting a new one cancels (supersedes) the
//!   old one, whose result is then dropped, never shown as current.
//! * A job's closure gets a [`JobContext`] for progress and cancellation; an error or a panic
//!   becomes a [`JobError`] with its message, and the owner keeps running.
//! * [`pipeline`] holds the app's jobs themselves: calibration data, calibration and
//!   evaluation of a quantization config.

pub mod pipeline;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};

/// Why a job gave no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// Cancelled by the user or superseded by a newer job.
    #[error("cancelled")]
    Cancelled,
    /// The work returned an error.
    #[error("{0}")]
    Failed(String),
    /// The work panicked (a bug); the message is the panic's.
    #[error("internal error (a bug): {0}")]
    Panicked(String),
}

impl From<crate::Error> for JobError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Cancelled => JobError::Cancelled,
            other => JobError::Failed(other.to_string()),
        }
    }
}

/// What a running job sees: its cancel flag and its progress.
#[derive(Debug, Clone, Default)]
pub struct JobContext {
    cancel: Arc<AtomicBool>,
    /// Progress in millionths.
    progress: Arc<AtomicU32>,
}

impl JobContext {
    /// Whether the job should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once cancellation was asked for (use with `?` between steps).
    pub fn check(&self) -> Result<(), JobError> {
        if self.is_cancelled() {
            Err(JobError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The flag itself, for APIs that poll one (`RunOptions::cancel`).
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    /// Reports progress as a fraction in [0, 1].
    pub fn set_progress(&self, fraction: f32) {
        let millionths = (fraction.clamp(0.0, 1.0) * 1e6) as u32;
        self.progress.store(millionths, Ordering::Relaxed);
    }

    fn progress(&self) -> f32 {
        self.progress.load(Ordering::Relaxed) as f32 / 1e6
    }
}

/// A finished job: the revision it was started for and its result.
#[derive(Debug)]
pub struct JobOutcome<T> {
    pub revision: u64,
    pub result: Result<T, JobError>,
}

/// One job in flight.
pub struct Job<T> {
    /// What the job does, for the progress line ("calibrating", "evaluating").
    pub label: String,
    pub revision: u64,
    context: JobContext,
    receiver: Receiver<Result<T, JobError>>,
}

impl<T: Send + 'static> Job<T> {
    /// Starts `work` on a thread named `thread_name`; `wake` is called when it has finished.
    pub fn start(
        thread_name: &str,
        label: impl Into<String>,
        revision: u64,
        wake: impl Fn() + Send + 'static,
        work: impl FnOnce(&JobContext) -> Result<T, JobError> + Send + 'static,
    ) -> Result<Job<T>, JobError> {
        let (sender, receiver) = sync_channel(1);
        let context = JobContext::default();
        let worker_context = context.clone();
        std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(|| work(&worker_context)))
                    .unwrap_or_else(|payload| Err(JobError::Panicked(panic_message(&*payload))));
                worker_context.set_progress(1.0);
                // The receiver is gone when the job was superseded: the result is dropped.
                let _ = sender.send(result);
                wake();
            })
            .map_err(|e| JobError::Failed(format!("could not start a worker thread: {e}")))?;
        Ok(Job {
            label: label.into(),
            revision,
            context,
            receiver,
        })
    }

    /// Asks the worker to stop (it notices at its next check).
    pub fn cancel(&self) {
        self.context.cancel.store(true, Ordering::Relaxed);
    }

    /// Progress in [0, 1].
    pub fn progress(&self) -> f32 {
        self.context.progress()
    }

    /// The outcome, once the worker has finished.
    pub fn poll(&self) -> Option<JobOutcome<T>> {
        let result = match self.receiver.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err(JobError::Failed(
                "the worker stopped without a result".into(),
            )),
        };
        Some(JobOutcome {
            revision: self.revision,
            result,
        })
    }
}

impl<T> Drop for Job<T> {
    fn drop(&mut self) {
        // Nobody will read the result: let the worker stop early.
        self.context.cancel.store(true, Ordering::Relaxed);
    }
}

/// At most one job of a kind; a newer one supersedes (cancels) the older.
pub struct JobSlot<T> {
    job: Option<Job<T>>,
}

impl<T> Default for JobSlot<T> {
    fn default() -> Self {
        JobSlot { job: None }
    }
}

impl<T: Send + 'static> JobSlot<T> {
    /// Starts a job, cancelling the one in flight. A failure to start is returned as the
    /// outcome of that revision.
    pub fn start(
        &mut self,
        thread_name: &str,
        label: impl Into<String>,
        revision: u64,
        wake: impl Fn() + Send + 'static,
        work: impl FnOnce(&JobContext) -> Result<T, JobError> + Send + 'static,
    ) -> Result<(), JobError> {
        self.job = None; // dropping cancels
        self.job = Some(Job::start(thread_name, label, revision, wake, work)?);
        Ok(())
    }

    /// The running job, if any.
    pub fn running(&self) -> Option<&Job<T>> {
        self.job.as_ref()
    }

    /// Whether a job is in flight.
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Cancels and forgets the job in flight.
    pub fn cancel(&mut self) {
        self.job = None;
    }

    /// The outcome of the job in flight, once finished (the slot is then empty).
    pub fn poll(&mut self) -> Option<JobOutcome<T>> {
        let outcome = self.job.as_ref()?.poll()?;
        self.job = None;
        Some(outcome)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    /// Waits for the outcome without timing anything: each wake sends one message.
    fn wait<T: Send + 'static>(slot: &mut JobSlot<T>, woken: &Receiver<()>) -> JobOutcome<T> {
        loop {
            if let Some(outcome) = slot.poll() {
                return outcome;
            }
            woken.recv().expect("the worker wakes its owner");
        }
    }

    fn waker() -> (impl Fn() + Send + 'static, Receiver<()>) {
        let (tx, rx) = sync_channel(8);
        (
            move || {
                let _ = tx.try_send(());
            },
            rx,
        )
    }

    #[test]
    fn a_job_reports_its_result_with_its_revision() {
        let (wake, woken) = waker();
        let mut slot = JobSlot::default();
        slot.start("test-job", "adding", 7, wake, |ctx| {
            ctx.set_progress(0.5);
            Ok(2 + 2)
        })
        .unwrap();
        let outcome = wait(&mut slot, &woken);
        assert_eq!(outcome.revision, 7);
        assert_eq!(outcome.result, Ok(4));
        assert!(!slot.is_running());
    }

    #[test]
    fn errors_and_panics_become_messages() {
        let (wake, woken) = waker();
        let mut slot: JobSlot<u32> = JobSlot::default();
        slot.start("test-job", "failing", 1, wake, |_| {
            Err(JobError::Failed("no data".into()))
        })
        .unwrap();
        assert_eq!(
            wait(&mut slot, &woken).result,
            Err(JobError::Failed("no data".into()))
        );
        let (wake, woken) = waker();
        slot.start("test-job", "panicking", 2, wake, |_| panic!("boom"))
            .unwrap();
        let outcome = wait(&mut slot, &woken);
        assert_eq!(outcome.result, Err(JobError::Panicked("boom".into())));
    }

    #[test]
    fn cancel_stops_a_job_that_checks_its_flag() {
        let (gate_tx, gate_rx) = sync_channel::<()>(0);
        let (wake, woken) = waker();
        let mut slot: JobSlot<u32> = JobSlot::default();
        slot.start("test-job", "waiting", 3, wake, move |ctx| {
            // Waits until the test has cancelled, then notices it.
            let _ = gate_rx.recv();
            ctx.check()?;
            Ok(1)
        })
        .unwrap();
        let job = slot.running().unwrap();
        job.cancel();
        gate_tx.send(()).unwrap();
        assert_eq!(wait(&mut slot, &woken).result, Err(JobError::Cancelled));
    }

    #[test]
    fn a_newer_job_supersedes_the_older_one() {
        let (gate_tx, gate_rx) = sync_channel::<()>(0);
        let (old_done_tx, old_done_rx) = sync_channel::<bool>(1);
        let (wake, woken) = waker();
        let mut slot: JobSlot<u32> = JobSlot::default();
        slot.start(
            "test-job",
            "old",
            1,
            || {},
            move |ctx| {
                let _ = gate_rx.recv();
                let _ = old_done_tx.send(ctx.is_cancelled());
                Ok(1)
            },
        )
        .unwrap();
        slot.start("test-job", "new", 2, wake, |_| Ok(2)).unwrap();
        gate_tx.send(()).unwrap();
        // The old worker saw its cancel flag; only the new result arrives.
        assert!(old_done_rx.recv().unwrap());
        let outcome = wait(&mut slot, &woken);
        assert_eq!((outcome.revision, outcome.result), (2, Ok(2)));
    }
}
