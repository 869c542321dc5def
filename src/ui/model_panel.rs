//! The left panel: layers in execution order with op type, weight shape, parameter count,
//! chosen scheme and bits, an SQNR badge from the latest exact results and, once the error
//! propagation is diagnosed, a square in the colour of the layer's own SQNR (with a legend);
//! each layer's weight and input/output activations are selectable. Reads state, returns
//! commands.

use std::collections::HashMap;

use crate::quant::QuantConfig;

use super::badge::{sqnr_colour, sqnr_text};
use super::commands::AppCommand;
use super::diagnose::{OWN_AMBER_DB, OWN_LEGEND, OWN_RED_DB, own_colour};
use super::layers::LayerRow;
use super::panel::Panel;
use super::selection::{Part, Selection};

/// The panel's own UI state.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct ModelPanel {
    pub filter: String,
    /// List every op, not only the quantizable layers.
    pub all_ops: bool,
}

/// What the panel shows.
pub struct ModelPanelInput<'a> {
    pub layers: &'a [LayerRow],
    pub config: &'a QuantConfig,
    pub selection: Option<Selection>,
    /// Output SQNR (dB) by node, from the latest evaluation.
    pub sqnr_db: HashMap<&'a str, f64>,
    /// Whether that evaluation is for the current settings.
    pub sqnr_current: bool,
    /// Own SQNR (dB) by node, from the latest error-propagation diagnosis.
    pub own_sqnr_db: HashMap<&'a str, f64>,
    /// Whether that diagnosis is for the current settings.
    pub own_current: bool,
}

fn scheme_text(config: &QuantConfig, row: &LayerRow) -> String {
    if !row.quantizable {
        return String::new();
    }
    let layer = config.layer(&row.node);
    let weights = match layer.weights {
        Some(w) if row.weight.is_some() => {
            format!("{}{}", w.scheme, if w.per_channel { "/ch" } else { "" })
        }
        Some(_) => String::new(),
        None => "float".into(),
    };
    let acts = match layer.activations {
        Some(a) => format!(" a{}", a.bits),
        None => " a-float".into(),
    };
    let overridden = if config.layers.contains_key(&row.node) {
        " *"
    } else {
        ""
    };
    format!("{weights}{acts}{overridden}")
}

impl Panel for ModelPanel {
    type Input<'a> = ModelPanelInput<'a>;

    /// Draws the list; clicks become [`AppCommand::Select`].
    fn ui(&mut self, ui: &mut egui::Ui, input: &ModelPanelInput<'_>) -> Vec<AppCommand> {
        let mut commands = Vec::new();
        ui.horizontal(|ui| {
            ui.label("Filter:");
            ui.text_edit_singleline(&mut self.filter)
                .on_hover_text("Show only layers whose op, name or tensors contain this text");
        });
        ui.checkbox(&mut self.all_ops, "all ops").on_hover_text(
            "Also list the ops that are not quantized (BatchNorm, activations, pooling): \
             their outputs are activations you can inspect",
        );
        if !input.own_sqnr_db.is_empty() {
            own_legend_ui(ui, input.own_current);
        }
        ui.separator();
        let needle = self.filter.to_lowercase();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for (index, row) in input.layers.iter().enumerate() {
                    if !self.all_ops && !row.quantizable {
                        continue;
                    }
                    let haystack = format!(
                        "{} {} {} {} {} {}",
                        row.op,
                        row.node,
                        row.weight.as_deref().unwrap_or(""),
                        row.recurrence.as_deref().unwrap_or(""),
                        row.input.as_deref().unwrap_or(""),
                        row.output.as_deref().unwrap_or("")
                    )
                    .to_lowercase();
                    if !needle.is_empty() && !haystack.contains(&needle) {
                        continue;
                    }
                    self.row_ui(ui, index, row, input, &mut commands);
                }
            });
        commands
    }
}

impl ModelPanel {
    fn row_ui(
        &self,
        ui: &mut egui::Ui,
        index: usize,
        row: &LayerRow,
        input: &ModelPanelInput<'_>,
        commands: &mut Vec<AppCommand>,
    ) {
        ui.horizontal(|ui| {
            let sqnr = input.sqnr_db.get(row.node.as_str()).copied();
            badge_ui(ui, sqnr, input.sqnr_current);
            if let Some(&own) = input.own_sqnr_db.get(row.node.as_str()) {
                own_swatch_ui(ui, own, input.own_current);
            }
            ui.strong(&row.op);
            ui.label(&row.node);
        });
        ui.horizontal(|ui| {
            ui.add_space(18.0);
            ui.weak(format!(
                "{} params  {}",
                row.params,
                scheme_text(input.config, row)
            ));
        });
        let parts = [
            (Part::Weight, "W", row.weight.as_deref(), &row.weight_shape),
            (
                Part::Recurrence,
                "R",
                row.recurrence.as_deref(),
                &row.recurrence_shape,
            ),
            (Part::Input, "in", row.input.as_deref(), &Vec::new()),
            (Part::Output, "out", row.output.as_deref(), &Vec::new()),
        ];
        for (part, tag, tensor, shape) in parts {
            let Some(tensor) = tensor else { continue };
            let selection = Selection { layer: index, part };
            let text = if shape.is_empty() {
                format!("{tag} {tensor}")
            } else {
                format!("{tag} {tensor} {shape:?}")
            };
            ui.horizontal(|ui| {
                ui.add_space(18.0);
                let hover = match part {
                    Part::Weight => "The layer's weights: quantized once, offline",
                    Part::Recurrence => {
                        "The recurrence weights R, which multiply the hidden state at every \
                         step: quantized once, offline, per gate row like W"
                    }
                    Part::Input => {
                        "The activation entering the layer: quantized at run time with the \
                         calibrated range"
                    }
                    Part::Output => "The activation the layer produces",
                };
                if ui
                    .selectable_label(input.selection == Some(selection), text)
                    .on_hover_text(hover)
                    .clicked()
                {
                    commands.push(AppCommand::Select(selection));
                }
            });
        }
        ui.add_space(4.0);
    }
}

/// A filled circle in the SQNR colour (hollow grey without results), with the figure on hover.
fn badge_ui(ui: &mut egui::Ui, sqnr_db: Option<f64>, current: bool) {
    let (rect, response) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    let centre = rect.center();
    match sqnr_db {
        Some(db) => {
            let colour = if current {
                sqnr_colour(db)
            } else {
                sqnr_colour(db).gamma_multiply(0.4)
            };
            ui.painter().circle_filled(centre, 5.0, colour);
            response.on_hover_text(format!(
                "output SQNR {}{}",
                sqnr_text(db),
                if current {
                    ""
                } else {
                    " (before the last settings change)"
                }
            ));
        }
        None => {
            let stroke = egui::Stroke::new(1.0, ui.visuals().weak_text_color());
            ui.painter().circle_stroke(centre, 4.5, stroke);
            response.on_hover_text("no exact results yet (evaluate to see the error)");
        }
    }
}

/// A square in the colour of the layer's own SQNR, with the figure and its meaning on hover.
fn own_swatch_ui(ui: &mut egui::Ui, own_db: f64, current: bool) {
    swatch_ui(ui, own_db, current).on_hover_text(format!(
        "own SQNR {}{}\n{OWN_LEGEND}",
        sqnr_text(own_db),
        if current {
            ""
        } else {
            " (before the last settings change)"
        }
    ));
}

/// A square in the colour of `own_db` (faded when not current).
fn swatch_ui(ui: &mut egui::Ui, own_db: f64, current: bool) -> egui::Response {
    let (rect, response) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    let colour = if current {
        own_colour(own_db)
    } else {
        own_colour(own_db).gamma_multiply(0.4)
    };
    ui.painter().rect_filled(rect.shrink(1.0), 2.0, colour);
    response
}

/// What the squares' colours mean.
fn own_legend_ui(ui: &mut egui::Ui, current: bool) {
    ui.horizontal_wrapped(|ui| {
        ui.weak("own error:");
        for (db, text) in [
            (OWN_RED_DB - 1.0, format!("< {OWN_RED_DB:.0} dB")),
            (OWN_AMBER_DB - 1.0, format!("< {OWN_AMBER_DB:.0} dB")),
            (OWN_AMBER_DB, format!("≥ {OWN_AMBER_DB:.0} dB")),
        ] {
            swatch_ui(ui, db, current);
            ui.weak(text);
        }
    })
    .response
    .on_hover_text(OWN_LEGEND);
}
