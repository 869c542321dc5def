//! The Train (QAT) window: quantization-aware training of the session's model under the
//! session's config (schemes, bits, calibrated and manual ranges, transforms), as a background
//! job with progress, Cancel and live per-epoch curves; a finished run's model can become the
//! session's model (its weight views, Results, exports and saved sessions then use it).
//!
//! * [`settings`]: the training settings and the core options they make;
//! * [`data`]: what a run trains on (the digits' training split, or the session's labelled
//!   samples) and why it cannot;
//! * [`job`]: the run on a worker, its curves and its result;
//! * [`panel`]: the window's drawing;
//! * [`stored`]: a trained model beside a session file.

pub mod data;
pub mod job;
pub mod panel;
pub mod settings;
pub mod stored;

use crate::quant::WeightScheme;

use super::session::Session;
use super::waker::Waker;
use job::TrainJob;
use panel::{TrainAction, TrainInput, train_ui};
use settings::{TrainSettings, describe_quant};

pub use job::{LiveCurve, TrainState};

/// The window: open or not, its settings and its job.
#[derive(Default)]
pub struct TrainWindow {
    pub open: bool,
    pub settings: TrainSettings,
    pub job: TrainJob,
}

impl TrainWindow {
    /// Draws the window (when open) for `session` and applies what was asked, then collects
    /// the job's progress (after the frame's clicks, so a Cancel always wins over a result that
    /// arrived meanwhile); repaints when anything changed.
    pub fn show_ui(&mut self, ui: &mut egui::Ui, session: &mut Session, wake: &Waker) {
        let mut actions = Vec::new();
        if self.open {
            let input = TrainInput {
                quant: describe_quant(&session.config, self.settings.xnor),
                ttq: session
                    .config
                    .default
                    .weights
                    .is_some_and(|w| w.scheme == WeightScheme::Ternary { ttq: true }),
                plan: data::plan_text(
                    &session.loaded.model.graph,
                    &session.loaded.model.path,
                    &session.source,
                    session.data.as_deref(),
                    &self.settings,
                ),
                job: &self.job,
                in_use: session.trained.as_deref(),
            };
            let mut open = self.open;
            let settings = &mut self.settings;
            let shown = egui::Window::new("Train (QAT)")
                .open(&mut open)
                .default_pos([330.0, 40.0])
                .default_size([720.0, 600.0])
                .show(ui.ctx(), |ui| {
                    egui::ScrollArea::vertical()
                        .show(ui, |ui| train_ui(ui, settings, &input))
                        .inner
                });
            if let Some(inner) = shown.and_then(|r| r.inner) {
                actions = inner;
            }
            self.open = open;
        }
        for action in &actions {
            self.apply(*action, session, wake);
        }
        if self.job.poll() || !actions.is_empty() {
            ui.ctx().request_repaint();
        }
    }

    /// Applies an action of the window (also what tests drive).
    pub fn apply(&mut self, action: TrainAction, session: &mut Session, wake: &Waker) {
        match action {
            TrainAction::Start => self.job.start(session, self.settings, wake),
            TrainAction::Cancel => self.job.cancel(),
            TrainAction::UseTrained => self.job.use_trained(session, wake),
        }
    }
}
