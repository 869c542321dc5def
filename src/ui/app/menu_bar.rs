//! The main window's menu bar, status line and keyboard shortcuts: what the user asks for
//! becomes `AppCommand`s or a change of the persisted preferences.

use super::*;

impl QuantscopeApp {
    pub(super) fn menu_ui(&mut self, ui: &mut egui::Ui) -> Vec<AppCommand> {
        let mut commands = Vec::new();
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open... (Ctrl+O)").clicked() {
                    ui.close();
                    if let Some(path) = pick_model() {
                        commands.push(AppCommand::Open(path));
                    }
                }
                ui.menu_button("Open recent", |ui| {
                    if self.prefs.recent.is_empty() {
                        ui.weak("none yet");
                    }
                    for path in &self.prefs.recent {
                        if ui.button(path.display().to_string()).clicked() {
                            ui.close();
                            commands.push(AppCommand::Open(path.clone()));
                        }
                    }
                });
                ui.separator();
                if ui
                    .button("Open session...")
                    .on_hover_text(
                        "Reopen a saved session: its model, settings, clip ranges and transforms",
                    )
                    .clicked()
                {
                    ui.close();
                    commands.push(AppCommand::OpenSession);
                }
                if ui
                    .add_enabled(self.session.is_some(), egui::Button::new("Save session..."))
                    .on_hover_text("Save the settings, manual clip ranges and transforms (JSON)")
                    .clicked()
                {
                    ui.close();
                    commands.push(AppCommand::SaveSession);
                }
                ui.add_enabled_ui(self.session.is_some(), |ui| {
                    ui.menu_button("Export", |ui| {
                        for (format, hint) in EXPORT_MENU {
                            if ui.button(format.name()).on_hover_text(hint).clicked() {
                                ui.close();
                                commands.push(AppCommand::Export(format));
                            }
                        }
                    });
                });
                ui.separator();
                if ui
                    .button("Export plot as PNG...")
                    .on_hover_text("Save the centre view as an image, for slides")
                    .clicked()
                {
                    ui.close();
                    self.export_plot(ui.ctx());
                }
                self.slides.menu_ui(ui, self.lecture.current);
            });
            ui.menu_button("View", |ui| {
                ui.checkbox(&mut self.prefs.explain, "Explain mode (E)")
                    .on_hover_text("Lecture mode: larger text and the formulas with live numbers");
                ui.checkbox(&mut self.prefs.dark, "Dark theme");
                ui.separator();
                ui.checkbox(&mut self.prefs.show_model, "Model panel (M)");
                ui.checkbox(&mut self.prefs.show_settings, "Settings panel (S)");
                ui.checkbox(&mut self.prefs.show_results, "Results panel (B)");
                ui.add(
                    egui::Slider::new(&mut self.prefs.font_scale, 0.75..=2.5).text("font scale"),
                );
            });
            ui.menu_button("Lecture", |ui| {
                if let Some(nav) = lecture::menu_ui(ui, self.lecture.current) {
                    let ctx = ui.ctx().clone();
                    self.navigate(&ctx, nav);
                }
            })
            .response
            .on_hover_text(
                "The lecture's sections in order, each set up in one click on the sample \
                 MobileNet (next/previous: arrow keys or PageDown/PageUp)",
            );
            ui.add_enabled_ui(self.session.is_some(), |ui| {
                ui.toggle_value(&mut self.analysis.open, "Analysis")
                    .on_hover_text(
                        "The paper's table (BN folding, CLE, bias correction), per-layer \
                     sensitivity and bit allocation, AdaRound",
                    );
                ui.toggle_value(&mut self.train.open, "Train (QAT)")
                    .on_hover_text("Quantization-aware training under the current settings");
            });
            ui.separator();
            ui.toggle_value(&mut self.prefs.explain, "Explain")
                .on_hover_text("Lecture mode (E): larger text, formulas with live numbers");
        });
        commands
    }

    /// Saves the centre view as PNG: a viewport screenshot cropped to the view, written on a
    /// worker.
    pub(super) fn export_plot(&mut self, ctx: &egui::Context) {
        let Some(path) = rfd::FileDialog::new()
            .add_filter("PNG", &["png"])
            .set_file_name("quantscope-plot.png")
            .save_file()
        else {
            return;
        };
        self.exports = Some(save_view_png(ctx, self.centre_rect, path, waker(ctx)));
    }

    pub(super) fn status_ui(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if self.loading.is_running() {
                ui.spinner();
                if let Some(path) = &self.loading_path {
                    ui.label(format!("loading {}", path.display()));
                }
            } else if let Some(session) = &self.session {
                let s = &session.loaded.summary;
                ui.label(format!(
                    "{} | {} | opset {} | {} nodes | {} parameters | {}",
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
            if let Some(notice) = &self.notice {
                ui.label(notice);
            }
            if let Some(error) = &self.error {
                ui.colored_label(egui::Color32::LIGHT_RED, error);
            }
        });
    }

    pub(super) fn shortcuts(&mut self, ctx: &egui::Context) -> Vec<AppCommand> {
        let mut commands = Vec::new();
        if ctx.egui_wants_keyboard_input() {
            return commands;
        }
        self.slides.shortcut(ctx, self.lecture.current);
        let (open, down, up, reset, explain) = ctx.input_mut(|i| {
            use egui::{Key, KeyboardShortcut, Modifiers};
            (
                i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::O)),
                i.key_pressed(Key::ArrowDown) || i.key_pressed(Key::J),
                i.key_pressed(Key::ArrowUp) || i.key_pressed(Key::K),
                i.key_pressed(Key::R),
                i.key_pressed(Key::E),
            )
        });
        let (next, previous, model, settings, results) = ctx.input(|i| {
            use egui::Key;
            (
                i.key_pressed(Key::ArrowRight) || i.key_pressed(Key::PageDown),
                i.key_pressed(Key::ArrowLeft) || i.key_pressed(Key::PageUp),
                i.key_pressed(Key::M),
                i.key_pressed(Key::S),
                i.key_pressed(Key::B),
            )
        });
        self.prefs.show_model ^= model;
        self.prefs.show_settings ^= settings;
        self.prefs.show_results ^= results;
        let step = match (next, previous) {
            (true, false) => self.lecture.neighbour(1),
            (false, true) => self.lecture.neighbour(-1),
            _ => None,
        };
        if let Some(index) = step {
            self.go_to_step(ctx, index);
        }
        if open && let Some(path) = pick_model() {
            commands.push(AppCommand::Open(path));
        }
        if down {
            commands.push(AppCommand::Step(1));
        }
        if up {
            commands.push(AppCommand::Step(-1));
        }
        if reset {
            commands.push(AppCommand::Distribution(DistributionCommand::ResetClip));
        }
        if explain {
            self.prefs.explain = !self.prefs.explain;
        }
        commands
    }
}
