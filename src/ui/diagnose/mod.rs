//! Where quantization error arises, in the app: the error-propagation diagnosis (each layer's
//! own SQNR beside the accumulated SQNR, from [`crate::diagnose`]) and the integer-only path
//! against the simulation (from [`crate::quant::integer::compare`]), each a background job on
//! the session's data and calibration, started when its switch is on and the session's own
//! jobs are done, cancelled and redone when the settings, the model or the data change.
//!
//! * [`Diagnostics`]: the switches, the two jobs and their latest results (a result of older
//!   settings is kept as stale, never shown as current);
//! * `propagation_chart`: the own/accumulated SQNR bars of the Results panel (a click selects
//!   the layer);
//! * `integer_view`: the per-tensor counts and, in explain mode, one element's arithmetic;
//! * [`own_colour`]: the model list's colour of a layer's own SQNR.

mod integer_view;
mod propagation_chart;

use std::sync::Arc;

use crate::diagnose::{DiagnoseOptions, Diagnosis, diagnose};
use crate::jobs::{JobError, JobSlot};
use crate::quant::integer::compare::{IntegerComparison, compare_integer};
use crate::workflow::RunControl;

use super::results_panel::DiagnosticsInput;
use super::session::Session;
use super::waker::Waker;

pub use integer_view::integer_ui;
pub use propagation_chart::{PropagationInput, PropagationRow, bar_rects, propagation_ui};

/// Own SQNR below this is drawn red.
pub const OWN_RED_DB: f64 = 20.0;
/// Own SQNR below this (and not red) is drawn amber.
pub const OWN_AMBER_DB: f64 = 30.0;

/// What the own-SQNR colours mean (legend and hover text).
pub const OWN_LEGEND: &str = "own SQNR: the error this layer makes alone (only it quantized, \
    float inputs). Red < 20 dB, amber < 30 dB, green ≥ 30 dB";

/// The colour of a layer's own SQNR: red (< 20 dB), amber (< 30 dB) or green.
pub fn own_colour(db: f64) -> egui::Color32 {
    if db < OWN_RED_DB {
        egui::Color32::from_rgb(225, 70, 60)
    } else if db < OWN_AMBER_DB {
        egui::Color32::from_rgb(240, 170, 40)
    } else {
        egui::Color32::from_rgb(80, 190, 100)
    }
}

/// What the diagnosis switches ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagnosticsCommand {
    /// Diagnose error propagation (own vs accumulated SQNR per layer).
    SetPropagation(bool),
    /// Run the integer-only path beside the simulation.
    SetIntegerPath(bool),
}

/// What a result was computed for: the settings revision, the model and the calibration
/// (their allocations; a rebuilt model or new data get new ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    revision: u64,
    model: usize,
    calibration: usize,
}

fn key_of(session: &Session) -> Option<Key> {
    if session.inference_unavailable().is_some() {
        return None;
    }
    session.data.as_ref()?;
    let calibration = session.calibration.as_ref()?;
    Some(Key {
        revision: session.revision,
        model: Arc::as_ptr(&session.loaded.model) as usize,
        calibration: Arc::as_ptr(calibration) as usize,
    })
}

/// One kind of result: its job, the key it runs for, the latest result and its key.
struct Tracked<T> {
    job: JobSlot<T>,
    running: Option<Key>,
    result: Option<(Key, Result<Arc<T>, String>)>,
    /// A key whose run the user cancelled (not restarted until the key changes).
    cancelled: Option<Key>,
}

impl<T> Default for Tracked<T> {
    fn default() -> Self {
        Tracked {
            job: JobSlot::default(),
            running: None,
            result: None,
            cancelled: None,
        }
    }
}

impl<T: Send + Sync + 'static> Tracked<T> {
    fn poll(&mut self) -> bool {
        let Some(outcome) = self.job.poll() else {
            return false;
        };
        let key = self.running.take();
        match (outcome.result, key) {
            (Ok(value), Some(key)) => self.result = Some((key, Ok(Arc::new(value)))),
            (Err(JobError::Cancelled), _) | (_, None) => {}
            (Err(e), Some(key)) => self.result = Some((key, Err(e.to_string()))),
        }
        true
    }

    fn cancel(&mut self) {
        self.job.cancel();
        self.running = None;
    }

    /// Whether `key` has its result, is running, or was cancelled by the user.
    fn settled_for(&self, key: Key) -> bool {
        self.running == Some(key)
            || self.cancelled == Some(key)
            || self.result.as_ref().is_some_and(|(k, _)| *k == key)
    }

    fn progress(&self) -> Option<f32> {
        self.job.running().map(|j| j.progress())
    }

    /// The latest result and whether it is for `key`.
    fn shown(&self, key: Option<Key>) -> Option<(bool, &Result<Arc<T>, String>)> {
        self.result
            .as_ref()
            .map(|(k, result)| (Some(*k) == key, result))
    }
}

/// The diagnosis switches, jobs and results.
#[derive(Default)]
pub struct Diagnostics {
    pub propagation_on: bool,
    pub integer_on: bool,
    propagation: Tracked<Diagnosis>,
    integer: Tracked<IntegerComparison>,
}

/// A result as the panels show it: whether it is for the current settings, and it.
pub type Shown<'a, T> = Option<(bool, &'a Result<Arc<T>, String>)>;

impl Diagnostics {
    /// Applies a switch.
    pub fn apply(&mut self, command: DiagnosticsCommand) {
        match command {
            DiagnosticsCommand::SetPropagation(on) => {
                self.propagation_on = on;
                self.propagation.cancelled = None;
                if !on {
                    self.propagation.cancel();
                }
            }
            DiagnosticsCommand::SetIntegerPath(on) => {
                self.integer_on = on;
                self.integer.cancelled = None;
                if !on {
                    self.integer.cancel();
                }
            }
        }
    }

    /// Cancels the running jobs (not restarted until the settings change).
    pub fn cancel(&mut self) {
        for (running, cancelled) in [
            (self.propagation.running, &mut self.propagation.cancelled),
            (self.integer.running, &mut self.integer.cancelled),
        ] {
            if running.is_some() {
                *cancelled = running;
            }
        }
        self.propagation.cancel();
        self.integer.cancel();
    }

    /// Whether a diagnosis job is running.
    pub fn is_busy(&self) -> bool {
        self.propagation.job.is_running() || self.integer.job.is_running()
    }

    /// The running jobs' labels and progress.
    pub fn progress(&self) -> Vec<(String, f32)> {
        let mut out = Vec::new();
        if let Some(p) = self.propagation.progress() {
            out.push(("diagnosing error propagation".to_string(), p));
        }
        if let Some(p) = self.integer.progress() {
            out.push(("running the integer-only path".to_string(), p));
        }
        out
    }

    /// The latest diagnosis, if its switch is on.
    pub fn diagnosis<'a>(&'a self, session: &Session) -> Shown<'a, Diagnosis> {
        if !self.propagation_on {
            return None;
        }
        self.propagation.shown(key_of(session))
    }

    /// The latest integer comparison, if its switch is on.
    pub fn integer<'a>(&'a self, session: &Session) -> Shown<'a, IntegerComparison> {
        if !self.integer_on {
            return None;
        }
        self.integer.shown(key_of(session))
    }

    /// Polls the jobs and starts the ones that are due: a switch is on, the session has data
    /// and calibration and no job of its own running, and the result is not for the current
    /// settings. A job for older settings is cancelled. Returns whether anything arrived.
    pub fn tick(&mut self, session: &Session, wake: &Waker) -> bool {
        let changed = self.propagation.poll() | self.integer.poll();
        let key = key_of(session);
        let busy = session.is_busy();
        let (Some(data), Some(calibration)) = (session.data.clone(), session.calibration.clone())
        else {
            return changed;
        };
        if let Some(key) = self.propagation.due(self.propagation_on, key, busy) {
            let (model, config) = (session.loaded.model.clone(), session.config.clone());
            let (data, calibration) = (data.clone(), calibration.clone());
            self.propagation.start(
                key,
                "quantscope-diagnose",
                "diagnosing error propagation",
                wake,
                move |control| {
                    let options = DiagnoseOptions {
                        leave_one_float: false,
                    };
                    diagnose(
                        &model.graph,
                        &config,
                        &calibration.stats,
                        &data.evaluation,
                        None,
                        &options,
                        control,
                    )
                },
            );
        }
        if let Some(key) = self.integer.due(self.integer_on, key, busy) {
            let (model, config) = (session.loaded.model.clone(), session.config.clone());
            self.integer.start(
                key,
                "quantscope-integer-path",
                "running the integer-only path",
                wake,
                move |control| {
                    compare_integer(
                        &model.graph,
                        &config,
                        &calibration.stats,
                        &data.evaluation,
                        None,
                        control,
                    )
                },
            );
        }
        changed
    }
}

impl<T: Send + Sync + 'static> Tracked<T> {
    /// The key to start a job for, if one is due; cancels a job for other settings.
    fn due(&mut self, on: bool, key: Option<Key>, session_busy: bool) -> Option<Key> {
        if !on {
            return None;
        }
        if self.running.is_some() && self.running != key {
            self.cancel();
        }
        let key = key?;
        (!session_busy && !self.settled_for(key)).then_some(key)
    }

    /// Starts `work` for `key` on a thread named `thread_name`.
    fn start(
        &mut self,
        key: Key,
        thread_name: &str,
        label: &str,
        wake: &Waker,
        work: impl FnOnce(&RunControl<'_>) -> crate::Result<T> + Send + 'static,
    ) {
        let w = wake.clone();
        self.running = Some(key);
        let started = self.job.start(
            thread_name,
            label,
            key.revision,
            move || w(),
            move |ctx| {
                let progress = |f: f32| ctx.set_progress(f);
                let control = RunControl {
                    cancel: Some(ctx.cancel_flag()),
                    progress: Some(&progress),
                };
                Ok(work(&control)?)
            },
        );
        if let Err(e) = started {
            self.running = None;
            self.result = Some((key, Err(e.to_string())));
        }
    }
}

impl Diagnostics {
    /// Own SQNR (dB) by node from the latest diagnosis (empty without one).
    pub fn own_sqnr_db<'a>(&'a self, session: &Session) -> std::collections::HashMap<&'a str, f64> {
        match self.diagnosis(session) {
            Some((_, Ok(d))) => d
                .layers
                .iter()
                .map(|l| (l.node.as_str(), l.own_sqnr_db))
                .collect(),
            _ => Default::default(),
        }
    }
}

impl Diagnostics {
    /// The Results panel's diagnosis input for `session`.
    pub fn input<'a>(&'a self, session: &'a Session, explain: bool) -> DiagnosticsInput<'a> {
        DiagnosticsInput {
            propagation_on: self.propagation_on,
            integer_on: self.integer_on,
            diagnosis: self.diagnosis(session),
            integer: self.integer(session),
            progress: self.progress(),
            layers: &session.loaded.layers,
            selection: session.selection,
            explain,
        }
    }
}
