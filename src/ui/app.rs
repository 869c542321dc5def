//! The main window: menu, tensor list, tensor view, status line.

use std::path::{Path, PathBuf};

use super::load_job::{LoadJob, LoadedModel};
use super::tensor_list::tensor_list_ui;
use super::tensor_view::tensor_view_ui;

/// The app's state. Runtime handles (the load job) live beside the shown model.
pub struct QuantscopeApp {
    /// A file to open on the next frame (where the egui context is at hand).
    pending_open: Option<PathBuf>,
    model: Option<LoadedModel>,
    loading: Option<LoadJob>,
    error: Option<String>,
    selected: Option<usize>,
    filter: String,
    log_counts: bool,
    show_constants: bool,
}

impl QuantscopeApp {
    /// A new app, which starts loading `model` (if given) on its first frame.
    pub fn new(model: Option<PathBuf>) -> Self {
        QuantscopeApp {
            pending_open: model,
            model: None,
            loading: None,
            error: None,
            selected: None,
            filter: String::new(),
            log_counts: false,
            show_constants: false,
        }
    }

    /// Asks for `path` to be opened on the next frame.
    pub fn request_open(&mut self, path: PathBuf) {
        self.pending_open = Some(path);
    }

    /// Starts loading `path` in the background, superseding any load in progress.
    fn open(&mut self, ctx: &egui::Context, path: &Path) {
        let ctx = ctx.clone();
        match LoadJob::start(path, move || ctx.request_repaint()) {
            Ok(job) => self.loading = Some(job),
            Err(e) => self.error = Some(e),
        }
    }

    /// Whether a load is pending or in progress.
    pub fn is_loading(&self) -> bool {
        self.loading.is_some() || self.pending_open.is_some()
    }

    /// The error shown in the status line, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn poll_load(&mut self) {
        let Some(job) = &self.loading else { return };
        let Some(result) = job.poll() else { return };
        let path = job.path.display().to_string();
        self.loading = None;
        match result {
            Ok(model) => {
                self.selected = model
                    .summary
                    .tensors
                    .iter()
                    .position(|t| t.role == "weight")
                    .or(if model.summary.tensors.is_empty() {
                        None
                    } else {
                        Some(0)
                    });
                self.model = Some(model);
                self.error = None;
            }
            Err(e) => self.error = Some(format!("could not open {path}: {e}")),
        }
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open…").clicked() {
                    ui.close();
                    if let Some(path) = rfd::FileDialog::new()
                        .add_filter("models", &["onnx", "safetensors", "npz", "npy"])
                        .pick_file()
                    {
                        self.request_open(path);
                    }
                }
            });
        });
    }

    fn status_ui(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if let Some(job) = &self.loading {
                ui.spinner();
                ui.label(format!("loading {}", job.path.display()));
            } else if let Some(model) = &self.model {
                let s = &model.summary;
                ui.label(format!(
                    "{} · {} · opset {} · {} nodes · {} parameters · {}",
                    s.path,
                    s.format,
                    s.opset,
                    s.node_count,
                    s.parameter_count,
                    if s.runnable {
                        "runnable"
                    } else {
                        "weights only"
                    }
                ));
            }
            if let Some(error) = &self.error {
                ui.colored_label(egui::Color32::LIGHT_RED, error);
            }
        });
    }
}

impl eframe::App for QuantscopeApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show_ui(ui);
    }
}

impl QuantscopeApp {
    /// The whole window's content (also what UI tests drive).
    pub fn show_ui(&mut self, ui: &mut egui::Ui) {
        let dropped: Option<PathBuf> = ui
            .ctx()
            .input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(path) = dropped.or_else(|| self.pending_open.take()) {
            self.open(ui.ctx(), &path);
        }
        self.poll_load();

        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        let Some(model) = &self.model else {
            egui::CentralPanel::default_margins().show(ui, |ui| {
                ui.label("Open a model (File > Open, or drop a file here).");
            });
            return;
        };
        egui::Panel::left("tensors")
            .default_size(360.0)
            .resizable(true)
            .show(ui, |ui| {
                ui.heading("Tensors");
                tensor_list_ui(
                    ui,
                    &model.summary,
                    &mut self.selected,
                    &mut self.filter,
                    &mut self.show_constants,
                );
            });
        egui::CentralPanel::default_margins().show(ui, |ui| {
            let shown = self
                .selected
                .and_then(|i| Some((model.summary.tensors.get(i)?, model.histograms.get(i)?)));
            match shown {
                Some((tensor, histogram)) => {
                    tensor_view_ui(ui, tensor, histogram, &mut self.log_counts)
                }
                None => {
                    ui.label("Select a tensor on the left.");
                }
            }
        });
    }
}
