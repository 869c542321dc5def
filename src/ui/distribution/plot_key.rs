//! The key of a plot, drawn as a wrapped row of coloured swatches beside (never over) the plot,
//! so that a long list of calibration markers cannot cover the data or the figures under it.

use egui::{Color32, RichText};

/// How an entry is drawn in its plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swatch {
    /// Filled bars.
    Fill,
    /// A solid line.
    Line,
    /// A dashed or dotted line.
    Dashed,
}

/// One entry of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub label: String,
    pub color: Color32,
    pub swatch: Swatch,
}

impl KeyEntry {
    pub fn new(label: impl Into<String>, color: Color32, swatch: Swatch) -> Self {
        KeyEntry {
            label: label.into(),
            color,
            swatch,
        }
    }
}

/// Draws `entries` as one wrapped row; returns the rect it took.
pub fn plot_key_ui(ui: &mut egui::Ui, entries: &[KeyEntry]) -> egui::Rect {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 6.0;
        for entry in entries {
            swatch_ui(ui, entry);
            ui.label(RichText::new(&entry.label).color(entry.color));
            ui.add_space(6.0);
        }
    })
    .response
    .rect
}

fn swatch_ui(ui: &mut egui::Ui, entry: &KeyEntry) {
    let size = egui::vec2(18.0, ui.text_style_height(&egui::TextStyle::Body));
    let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
    let painter = ui.painter();
    let y = rect.center().y;
    match entry.swatch {
        Swatch::Fill => {
            painter.rect_filled(
                egui::Rect::from_center_size(rect.center(), egui::vec2(14.0, 10.0)),
                1.0,
                entry.color,
            );
        }
        Swatch::Line => {
            painter.line_segment(
                [egui::pos2(rect.left(), y), egui::pos2(rect.right(), y)],
                egui::Stroke::new(3.0, entry.color),
            );
        }
        Swatch::Dashed => {
            for i in 0..3 {
                let x = rect.left() + i as f32 * 7.0;
                painter.line_segment(
                    [egui::pos2(x, y), egui::pos2(x + 4.0, y)],
                    egui::Stroke::new(2.0, entry.color),
                );
            }
        }
    }
}
