//! The main window: menu, model panel (left), settings (right), results (bottom), the
//! distribution view (centre), status line; keyboard shortcuts; persisted preferences.

mod menu_bar;

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use crate::jobs::pipeline::{DataSource, bundled_digits_dir};
use crate::jobs::{JobError, JobSlot};

use super::analysis::{Analysis, AnalysisInput};
use super::commands::AppCommand;
use super::diagnose::Diagnostics;
use super::distribution::{DistributionCommand, DistributionView};
use super::file_actions::{EXPORT_MENU, export_extension, pick_model, save_view_png};
use super::lecture::{self, LECTURE_MODEL, Lecture, LectureNav};
use super::load_job::{LoadedModel, load_for_view};
use super::model_panel::{ModelPanel, ModelPanelInput};
use super::panel::Panel;
use super::results_panel::{ResultsInput, ResultsPanel};
use super::screen_layout::ScreenLayout;
use super::session::Session;
use super::session_file;
use super::settings_panel::{SettingsInput, SettingsPanel};
use super::slide_export::SlideExports;
use super::train::TrainWindow;
use super::transforms_panel::TransformsInput;
use super::waker::{Waker, waker};

/// Recent files kept.
const RECENT: usize = 8;

/// What persists between runs (eframe storage).
#[derive(Debug, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Prefs {
    pub dark: bool,
    pub font_scale: f32,
    pub explain: bool,
    pub recent: Vec<PathBuf>,
    pub model_panel: ModelPanel,
    pub settings_panel: SettingsPanel,
    /// Which of the side and bottom panels are shown (`M`, `S`, `B` toggle them).
    pub show_model: bool,
    pub show_settings: bool,
    pub show_results: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            dark: true,
            font_scale: 1.0,
            explain: false,
            recent: Vec::new(),
            model_panel: ModelPanel::default(),
            settings_panel: SettingsPanel::default(),
            show_model: true,
            show_settings: true,
            show_results: true,
        }
    }
}

/// The zoom of explain mode relative to the font scale.
pub const EXPLAIN_ZOOM: f32 = 1.4;

/// The app: persisted preferences beside the runtime state (open session, jobs).
pub struct QuantscopeApp {
    pub prefs: Prefs,
    /// A file to open on the next frame (where the egui context is at hand).
    pending_open: Option<PathBuf>,
    loading: JobSlot<LoadedModel>,
    loading_path: Option<PathBuf>,
    session: Option<Session>,
    error: Option<String>,
    view: DistributionView,
    /// Plot PNG exports finishing on a worker: their messages.
    exports: Option<Receiver<Result<PathBuf, String>>>,
    notice: Option<String>,
    /// Where the centre view was drawn last (the PNG export's crop).
    centre_rect: Option<egui::Rect>,
    /// Where the Results panel was drawn last (None: hidden).
    results_rect: Option<egui::Rect>,
    /// The Analysis window (paper's table, mixed precision, AdaRound) and its jobs.
    pub analysis: Analysis,
    /// A session file whose model is loading; applied when it has loaded.
    pending_session: Option<session_file::PendingSession>,
    /// Lecture mode: the step on screen.
    pub lecture: Lecture,
    /// Error propagation and the integer-only path (Results panel, model list colours).
    pub diagnostics: Diagnostics,
    /// The Train (QAT) window and its job.
    pub train: TrainWindow,
    /// The centre view to PNG at 2× (F12).
    pub slides: SlideExports,
}

impl QuantscopeApp {
    /// A new app, which starts loading `model` (if given) on its first frame.
    pub fn new(model: Option<PathBuf>) -> Self {
        Self::with_prefs(model, Prefs::default())
    }

    /// A new app with restored preferences.
    pub fn with_prefs(model: Option<PathBuf>, prefs: Prefs) -> Self {
        QuantscopeApp {
            prefs,
            pending_open: model,
            loading: JobSlot::default(),
            loading_path: None,
            session: None,
            error: None,
            view: DistributionView::default(),
            exports: None,
            notice: None,
            centre_rect: None,
            results_rect: None,
            pending_session: None,
            analysis: Analysis::default(),
            lecture: Lecture::default(),
            diagnostics: Diagnostics::default(),
            train: TrainWindow::default(),
            slides: SlideExports::default(),
        }
    }

    /// Where the centre panel was drawn last (its visible area).
    pub fn centre_rect(&self) -> Option<egui::Rect> {
        self.centre_rect
    }

    /// Where the Results panel was drawn last (its outer rect; None while hidden).
    pub fn results_rect(&self) -> Option<egui::Rect> {
        self.results_rect
    }

    /// The centre view (its layout rects, tab, ghost), for tests.
    pub fn view(&self) -> &DistributionView {
        &self.view
    }

    /// Starts lecture step `index`: opens the lecture's model if another one is open, then
    /// sets up the step's config, transforms, view and tensor.
    pub fn go_to_step(&mut self, ctx: &egui::Context, index: usize) {
        self.lecture.begin(index);
        let model_open = self.session.as_ref().is_some_and(|s| {
            s.loaded.model.path.file_name() == Some(std::ffi::OsStr::new(LECTURE_MODEL))
        });
        if model_open && !self.is_loading() {
            self.set_up_step(ctx);
        } else {
            self.lecture.waiting_for_model = true;
            self.request_open(super::bundled_sample_model());
        }
    }

    /// Applies the current step's setup to the open session.
    fn set_up_step(&mut self, ctx: &egui::Context) {
        self.lecture.waiting_for_model = false;
        let Some(step) = self.lecture.step() else {
            return;
        };
        let setup = step.setup;
        let Some(session) = &self.session else {
            return;
        };
        match lecture::step_config(&setup, &session.loaded.model.graph) {
            Ok(config) => self.apply(ctx, AppCommand::SetConfig(Box::new(config))),
            Err(e) => self.error = Some(e),
        }
        self.apply(ctx, AppCommand::SetTransforms(setup.transforms));
        self.view.tab = setup.tab;
        self.view.selected_channel = None;
        self.analysis.open = setup.analysis;
    }

    fn navigate(&mut self, ctx: &egui::Context, nav: LectureNav) {
        match nav {
            LectureNav::Go(index) => self.go_to_step(ctx, index),
            LectureNav::End => self.lecture.end(),
        }
    }

    /// Selects the step's tensor once its transforms have rebuilt the model.
    fn select_for_lecture(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let busy = session.extras.is_busy();
        match self.lecture.selection_due(&session.loaded.layers, busy) {
            Some(Ok(selection)) if session.selection != Some(selection) => {
                session.select(selection);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => self.error = Some(e),
            None => {}
        }
    }

    /// Asks for `path` to be opened on the next frame.
    pub fn request_open(&mut self, path: PathBuf) {
        self.pending_open = Some(path);
    }

    /// Whether a load is pending or in progress.
    pub fn is_loading(&self) -> bool {
        self.loading.is_running() || self.pending_open.is_some()
    }

    /// The error shown in the status line, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The open model's session.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The open model's session, to edit (tests, session files).
    pub fn session_mut(&mut self) -> Option<&mut Session> {
        self.session.as_mut()
    }

    /// Applies a command as if a panel had emitted it.
    pub fn apply(&mut self, ctx: &egui::Context, command: AppCommand) {
        let wake = waker(ctx);
        match command {
            AppCommand::Open(path) => self.request_open(path),
            AppCommand::PickDataFile => {
                if let Some(path) = rfd::FileDialog::new()
                    .add_filter("arrays", &["npy", "npz"])
                    .pick_file()
                {
                    self.apply(ctx, AppCommand::SetSource(DataSource::File(path)));
                }
            }
            AppCommand::PickNpzFolder => {
                if let Some(dir) = rfd::FileDialog::new().pick_folder() {
                    self.apply(ctx, AppCommand::SetSource(DataSource::NpzFolder(dir)));
                }
            }
            AppCommand::PickImageFolder(preset) => {
                if let Some(dir) = rfd::FileDialog::new().pick_folder() {
                    self.apply(
                        ctx,
                        AppCommand::SetSource(DataSource::ImageFolder { dir, preset }),
                    );
                }
            }
            AppCommand::Export(format) => {
                let name = format!("{}.{}", format.name(), export_extension(format));
                if let Some(path) = rfd::FileDialog::new().set_file_name(name).save_file() {
                    self.apply(ctx, AppCommand::ExportTo(format, path));
                }
            }
            AppCommand::SaveSession => {
                if let Some(path) = rfd::FileDialog::new()
                    .add_filter("Quantscope session", &["json"])
                    .set_file_name("session.quantscope.json")
                    .save_file()
                {
                    self.apply(ctx, AppCommand::SaveSessionTo(path));
                }
            }
            AppCommand::OpenSession => {
                if let Some(path) = rfd::FileDialog::new()
                    .add_filter("Quantscope session", &["json"])
                    .pick_file()
                {
                    self.apply(ctx, AppCommand::OpenSessionFrom(path));
                }
            }
            AppCommand::SaveSessionTo(path) => match self.session.as_ref() {
                Some(session) => match session_file::save(session, &path) {
                    Ok(()) => self.notice = Some(format!("saved session {}", path.display())),
                    Err(e) => self.error = Some(format!("could not save the session: {e}")),
                },
                None => self.error = Some("open a model before saving a session".into()),
            },
            AppCommand::OpenSessionFrom(path) => match session_file::read(&path) {
                Ok(saved) => {
                    self.request_open(saved.model_path.clone());
                    self.pending_session = Some(saved);
                }
                Err(e) => self.error = Some(format!("could not open the session: {e}")),
            },
            AppCommand::Analysis(command) => {
                if let Some(session) = &self.session {
                    self.analysis.jobs.start(command, session, &wake);
                }
            }
            AppCommand::Diagnostics(command) => self.diagnostics.apply(command),
            other => {
                if other == AppCommand::Cancel {
                    self.diagnostics.cancel();
                }
                let Some(session) = self.session.as_mut() else {
                    return;
                };
                apply_to_session(session, other, &wake);
            }
        }
    }

    /// Starts loading `path` in the background, superseding any load in progress.
    fn open(&mut self, ctx: &egui::Context, path: &Path) {
        let job_path = path.to_path_buf();
        let wake = waker(ctx);
        let started = self.loading.start(
            "quantscope-load",
            format!("loading {}", path.display()),
            0,
            move || wake(),
            move |job| load_for_view(&job_path, job),
        );
        match started {
            Ok(()) => self.loading_path = Some(path.to_path_buf()),
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    fn poll_load(&mut self, ctx: &egui::Context) {
        let Some(outcome) = self.loading.poll() else {
            return;
        };
        let path = self.loading_path.take().unwrap_or_default();
        match outcome.result {
            Ok(model) => {
                let mut session = Session::new(model);
                if let Some(pending) = self.pending_session.take() {
                    match session_file::restore(&mut session, &pending, &waker(ctx)) {
                        Ok(warnings) if warnings.is_empty() => {
                            self.notice = Some(format!("opened session {}", pending.path.display()))
                        }
                        Ok(warnings) => self.notice = Some(warnings.join("; ")),
                        Err(e) => self.error = Some(format!("could not apply the session: {e}")),
                    }
                }
                session.calibrate(&waker(ctx));
                self.session = Some(session);
                self.error = None;
                if self.lecture.waiting_for_model {
                    self.set_up_step(ctx);
                }
                self.prefs.recent.retain(|p| p != &path);
                self.prefs.recent.insert(0, path);
                self.prefs.recent.truncate(RECENT);
            }
            Err(JobError::Cancelled) => {}
            Err(e) => self.error = Some(format!("could not open {}: {e}", path.display())),
        }
    }

    fn apply_style(&self, ctx: &egui::Context) {
        let theme = if self.prefs.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        };
        if ctx.theme() != theme {
            ctx.set_theme(theme);
        }
        let zoom = self.screen_layout(ctx).zoom;
        if (ctx.zoom_factor() - zoom).abs() > 1e-3 {
            ctx.set_zoom_factor(zoom);
        }
    }

    /// The layout for the window's current size.
    fn screen_layout(&self, ctx: &egui::Context) -> ScreenLayout {
        ScreenLayout::of(ctx, self.prefs.font_scale, self.prefs.explain, EXPLAIN_ZOOM)
    }
}

fn apply_to_session(session: &mut Session, command: AppCommand, wake: &Waker) {
    match command {
        AppCommand::Select(selection) => session.select(selection),
        AppCommand::Step(delta) => session.step_selection(delta),
        AppCommand::SetDefault(quant) => session.set_default(quant),
        AppCommand::SetLayer { node, quant } => session.set_layer(node, quant),
        AppCommand::SetSource(source) => session.set_source(source, wake),
        AppCommand::Evaluate => session.request_evaluation(true),
        AppCommand::SetAutoEvaluate(on) => session.auto_evaluate = on,
        AppCommand::Cancel => session.cancel(),
        AppCommand::Distribution(command) => session.apply_distribution_command(command),
        AppCommand::SetTransforms(toggles) => session.set_transforms(toggles, wake),
        AppCommand::SetConfig(config) => session.set_config(*config),
        AppCommand::ExportTo(format, path) => session.export(format, path, wake),
        AppCommand::Open(_)
        | AppCommand::PickDataFile
        | AppCommand::PickImageFolder(_)
        | AppCommand::PickNpzFolder
        | AppCommand::Export(_)
        | AppCommand::SaveSession
        | AppCommand::SaveSessionTo(_)
        | AppCommand::OpenSession
        | AppCommand::OpenSessionFrom(_)
        | AppCommand::Analysis(_)
        | AppCommand::Diagnostics(_) => {}
    }
}

impl eframe::App for QuantscopeApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show_ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.prefs);
    }
}

impl QuantscopeApp {
    /// The whole window's content (also what UI tests drive).
    pub fn show_ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.apply_style(&ctx);
        let dropped: Option<PathBuf> =
            ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(path) = dropped.or_else(|| self.pending_open.take()) {
            self.open(&ctx, &path);
        }
        let mut commands = Vec::new();
        commands.extend(self.shortcuts(&ctx));
        egui::Panel::top("menu").show(ui, |ui| commands.extend(self.menu_ui(ui)));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        if let Some(index) = self.lecture.current {
            self.lecture.shifts = self.session.as_ref().and_then(lecture::bias_shifts);
            let shifts = self.lecture.shifts.as_ref();
            let nav = egui::Panel::top("lecture")
                .show(ui, |ui| lecture::caption_ui(ui, index, shifts))
                .inner;
            if let Some(nav) = nav {
                self.navigate(&ctx, nav);
            }
        }
        self.select_for_lecture();
        self.view.ghost = self.session.as_ref().and_then(lecture::equalization_ghost);
        let layout = self.screen_layout(&ctx);
        let Some(session) = &self.session else {
            egui::CentralPanel::default_margins().show(ui, |ui| {
                ui.centered_and_justified(|ui| {
                    ui.label("Open a model: File > Open (Ctrl+O), or drop a file here.");
                });
            });
            self.apply_all(&ctx, commands);
            self.poll(&ctx);
            return;
        };
        self.results_rect = self.prefs.show_results.then(|| {
            egui::Panel::bottom("results")
                .resizable(true)
                .default_size(layout.results_default)
                .max_size(layout.results_max)
                .show(ui, |ui| {
                    let input = ResultsInput::of(session, &self.diagnostics, self.prefs.explain);
                    commands.extend(ResultsPanel.ui(ui, &input));
                })
                .response
                .rect
        });
        if self.prefs.show_model {
            egui::Panel::left("model")
                .resizable(true)
                .default_size(layout.left_default)
                .max_size(layout.left_max)
                .show(ui, |ui| {
                    ui.heading("Model");
                    let evaluation = session.evaluation.as_ref();
                    let input = ModelPanelInput {
                        layers: &session.loaded.layers,
                        config: &session.config,
                        selection: session.selection,
                        sqnr_db: evaluation
                            .map(|(_, e)| {
                                e.layers
                                    .iter()
                                    .map(|l| (l.node.as_str(), l.sqnr_db))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        sqnr_current: evaluation.is_some_and(|(r, _)| *r == session.revision),
                        own_sqnr_db: self.diagnostics.own_sqnr_db(session),
                        own_current: self.diagnostics.diagnosis(session).is_some_and(|(c, _)| c),
                    };
                    commands.extend(self.prefs.model_panel.ui(ui, &input));
                });
        }
        if self.prefs.show_settings {
            egui::Panel::right("settings")
                .resizable(true)
                .default_size(layout.right_default)
                .max_size(layout.right_max)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical().show(ui, |ui| {
                        let node = session.selected_tensor().map(|(_, _, node)| node);
                        let reason = session.inference_unavailable();
                        let input = SettingsInput {
                            config: &session.config,
                            adaround_notice: session.adaround_notice.as_deref(),
                            node: node.as_deref(),
                            source: &session.source,
                            source_label: session.source.describe_for(&session.loaded.model.graph),
                            bundled_available: bundled_digits_dir(&session.loaded.model.path)
                                .is_some(),
                            inference_unavailable: reason.as_deref(),
                            transforms: TransformsInput {
                                toggles: session.transforms(),
                                reports: &session.extras.reports,
                                busy: session.extras.is_busy(),
                                message: session.extras.message.as_deref(),
                                unavailable: reason.as_deref(),
                            },
                        };
                        commands.extend(self.prefs.settings_panel.ui(ui, &input));
                    });
                });
        }
        egui::CentralPanel::default_margins().show(ui, |ui| {
            self.centre_rect = Some(ui.max_rect());
            self.view.fit_height = Some(ui.available_height());
            let exact = session.exact_figures();
            match session.distribution_input(exact.as_ref(), self.prefs.explain) {
                Some(input) => {
                    let size = ui.max_rect().size();
                    let slide = self.slides.export_if_due(&ctx, size, |ui| {
                        let _ = self.view.ui(ui, &input);
                    });
                    self.error = slide.err().or(self.error.take());
                    egui::ScrollArea::vertical()
                        .id_salt("centre")
                        .auto_shrink(false)
                        .show(ui, |ui| commands.extend(self.view.ui(ui, &input)));
                }
                None => match session.view_problem() {
                    Some(problem) => {
                        ui.label(problem);
                    }
                    None if session.selection.is_none() => {
                        ui.label("Select a weight or activation on the left.");
                    }
                    None => {
                        ui.spinner();
                    }
                },
            }
        });
        if self.analysis.open
            && let Some(session) = &self.session
        {
            let input = AnalysisInput {
                config: &session.config,
            };
            commands.extend(self.analysis.ui(ui, &input));
        }
        if let Some(session) = self.session.as_mut() {
            self.train.show_ui(ui, session, &waker(&ctx));
        }
        self.apply_all(&ctx, commands);
        self.poll(&ctx);
    }

    /// Polls the jobs after the frame's commands were applied (so a Cancel clicked on this
    /// frame's progress bar always wins over a result that arrived meanwhile).
    fn poll(&mut self, ctx: &egui::Context) {
        let had_session = self.session.is_some();
        self.poll_load(ctx);
        let mut changed = had_session != self.session.is_some();
        if let Some(receiver) = &self.exports
            && let Ok(result) = receiver.try_recv()
        {
            match result {
                Ok(path) => self.notice = Some(format!("saved {}", path.display())),
                Err(e) => self.error = Some(format!("could not export the plot: {e}")),
            }
            self.exports = None;
            changed = true;
        }
        if self.slides.take_due().is_some() {
            self.error = Some("no view in the centre to export as a slide".into());
        }
        if let Some(outcome) = self.slides.poll() {
            (self.notice, self.error) = (outcome.as_ref().ok().cloned(), outcome.err());
            changed = true;
        }
        let wake = waker(ctx);
        if let Some(session) = self.session.as_mut() {
            let (tick_changed, wait) = session.tick(&wake);
            changed |= tick_changed;
            changed |= session.tick_extras(&wake);
            changed |= self.analysis.jobs.poll();
            changed |= self.diagnostics.tick(session, &wake);
            if let Some(wait) = wait {
                ctx.request_repaint_after(wait);
            }
        }
        if changed {
            ctx.request_repaint();
        }
    }

    fn apply_all(&mut self, ctx: &egui::Context, commands: Vec<AppCommand>) {
        for command in commands {
            self.apply(ctx, command);
        }
    }
}
