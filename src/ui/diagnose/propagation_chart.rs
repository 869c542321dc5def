//! The Results panel's per-layer SQNR chart: horizontal bars, one row per layer in execution
//! order with its name on the y axis; the accumulated SQNR (everything up to the layer
//! quantized: the evaluation's per-layer output SQNR) and, once the diagnosis is there, the
//! layer's own SQNR (only it quantized) beside it. Clicking a row selects that layer. The
//! chart scrolls when the layers do not fit, and its dB axis picks steps whose labels fit.

use egui_plot::{AxisHints, Bar, BarChart, GridInput, GridMark, PlotPoint, VPlacement};

use crate::ui::badge::sqnr_text;
use crate::ui::fixed_plot::fixed_plot;

use super::{OWN_LEGEND, own_colour};

/// Height of one layer's row, in points (two bars).
const ROW_POINTS: f32 = 22.0;
/// Longest layer name drawn on the axis (longer ones are shortened in the middle).
const NAME_CHARS: usize = 26;
/// Where infinite (exact) SQNRs are drawn.
const EXACT_DB: f64 = 100.0;
/// The accumulated series' colour.
const ACCUMULATED: egui::Color32 = egui::Color32::from_rgb(110, 150, 210);

/// One layer's row.
pub struct PropagationRow<'a> {
    pub node: &'a str,
    pub accumulated_db: f64,
    pub own_db: Option<f64>,
}

/// What the chart draws.
pub struct PropagationInput<'a> {
    pub rows: Vec<PropagationRow<'a>>,
    /// The selected layer's node.
    pub selected: Option<&'a str>,
    /// Whether the figures are for the current settings (greyed when not).
    pub current: bool,
}

/// The id under which the last drawn rows' screen rects are kept (for tests and tools).
fn rects_id() -> egui::Id {
    egui::Id::unique("quantscope_propagation_bar_rects")
}

/// The screen rect of each row's own bar (else its accumulated bar) drawn last, by node.
pub fn bar_rects(ctx: &egui::Context) -> Vec<(String, egui::Rect)> {
    ctx.data(|d| d.get_temp::<Vec<(String, egui::Rect)>>(rects_id()))
        .unwrap_or_default()
}

fn shown_db(db: f64) -> f64 {
    if db.is_finite() {
        db.clamp(-EXACT_DB, EXACT_DB)
    } else if db > 0.0 {
        EXACT_DB
    } else {
        -EXACT_DB
    }
}

fn short_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= NAME_CHARS {
        return name.to_string();
    }
    let half = (NAME_CHARS - 1) / 2;
    let head: String = chars[..half].iter().collect();
    let tail: String = chars[chars.len() - half..].iter().collect();
    format!("{head}…{tail}")
}

/// Grid marks at 1, 2 or 5 × 10^k dB, the finest step whose labels stay `min_points` apart.
fn db_marks(input: GridInput, min_points: f64) -> Vec<GridMark> {
    let (lo, hi) = input.bounds;
    // base_step_size is the value of egui_plot's smallest grid spacing (8 points).
    let per_point = input.base_step_size / 8.0;
    let wanted = (per_point * min_points).max(1e-9);
    let magnitude = 10f64.powf(wanted.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= wanted)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|i| GridMark {
            value: i as f64 * step,
            step_size: step,
        })
        .collect()
}

/// One mark per row (y = row index).
fn row_marks(input: GridInput) -> Vec<GridMark> {
    let (lo, hi) = input.bounds;
    (lo.ceil() as i64..=hi.floor() as i64)
        .map(|i| GridMark {
            value: i as f64,
            step_size: 1.0,
        })
        .collect()
}

/// Draws the key and the chart; returns the node of a clicked row.
pub fn propagation_ui(ui: &mut egui::Ui, input: &PropagationInput<'_>) -> Option<String> {
    let has_own = input.rows.iter().any(|r| r.own_db.is_some());
    ui.horizontal_wrapped(|ui| {
        ui.label("per-layer SQNR (dB), lowest hurts most:")
            .on_hover_text(
                "10*log10(sum float^2 / sum (float - quantized)^2) of each layer's output",
            );
        key_swatch_ui(ui, ACCUMULATED);
        ui.label("accumulated").on_hover_text(
            "Everything up to and including this layer quantized: the error that reaches it",
        );
        if has_own {
            for db in [10.0, 25.0, 40.0] {
                key_swatch_ui(ui, own_colour(db));
            }
            ui.label("own").on_hover_text(OWN_LEGEND);
        } else {
            ui.weak("(own error: switch on \"error propagation\")");
        }
    });
    let n = input.rows.len();
    if n == 0 {
        ui.weak("no quantized layers");
        return None;
    }
    let names: Vec<String> = input.rows.iter().map(|r| short_name(r.node)).collect();
    let font = egui::TextStyle::Body.resolve(ui.style());
    let name_width = names
        .iter()
        .map(|s| {
            ui.painter()
                .layout_no_wrap(s.clone(), font.clone(), egui::Color32::WHITE)
                .size()
                .x
        })
        .fold(40.0f32, f32::max)
        + 12.0;
    let content_height = n as f32 * ROW_POINTS + 48.0;
    let room = ui.available_height().max(120.0);
    // Row y = n − 1 − index, so the first layer is at the top.
    let row_y = |i: usize| (n - 1 - i) as f64;
    let mut accumulated = Vec::with_capacity(n);
    let mut own = Vec::new();
    for (i, row) in input.rows.iter().enumerate() {
        let selected = input.selected == Some(row.node);
        let stroke = if selected {
            egui::Stroke::new(2.0, ui.visuals().strong_text_color())
        } else {
            egui::Stroke::NONE
        };
        let offset = if has_own { 0.2 } else { 0.0 };
        let width = if has_own { 0.38 } else { 0.7 };
        accumulated.push(
            Bar::new(row_y(i) + offset, shown_db(row.accumulated_db))
                .name(format!(
                    "{}: accumulated {}",
                    row.node,
                    sqnr_text(row.accumulated_db)
                ))
                .fill(ACCUMULATED)
                .stroke(stroke)
                .width(width),
        );
        if let Some(db) = row.own_db {
            own.push(
                Bar::new(row_y(i) - 0.2, shown_db(db))
                    .name(format!("{}: own {}", row.node, sqnr_text(db)))
                    .fill(own_colour(db))
                    .stroke(stroke)
                    .width(0.38),
            );
        }
    }
    let axis_names = names.clone();
    let y_axis = AxisHints::new_y()
        .formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() > 1e-6 || i < 0.0 || i >= n as f64 {
                return String::new();
            }
            axis_names[n - 1 - i as usize].clone()
        })
        .min_thickness(name_width)
        .label_spacing(10.0..=12.0);
    let draw = |ui: &mut egui::Ui| {
        if !input.current {
            ui.disable();
        }
        fixed_plot("layer_sqnr")
            .height(content_height.max(room))
            .show_grid([true, false])
            .custom_y_axes(vec![y_axis])
            .x_grid_spacer(|g| db_marks(g, 72.0))
            .y_grid_spacer(row_marks)
            .x_axis_label("dB")
            // On top: the dB labels stay in view while the rows scroll.
            .x_axis_position(VPlacement::Top)
            .include_x(0.0)
            .include_y(-0.6)
            .include_y(n as f64 - 0.4)
            .show(ui, |plot_ui| {
                plot_ui.bar_chart(
                    BarChart::new("accumulated", accumulated)
                        .horizontal()
                        .color(ACCUMULATED),
                );
                if !own.is_empty() {
                    plot_ui.bar_chart(BarChart::new("own", own).horizontal());
                }
            })
    };
    let response = if content_height > room {
        egui::ScrollArea::vertical()
            .id_salt("layer_sqnr_scroll")
            .max_height(room)
            .auto_shrink([false, true])
            .show(ui, draw)
            .inner
    } else {
        draw(ui)
    };
    let t = response.transform;
    let rects: Vec<(String, egui::Rect)> = input
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let (y, db) = match row.own_db {
                Some(db) => (row_y(i) - 0.2, shown_db(db)),
                None if has_own => (row_y(i) + 0.2, shown_db(row.accumulated_db)),
                None => (row_y(i), shown_db(row.accumulated_db)),
            };
            let a = t.position_from_point(&PlotPoint::new(0.0, y - 0.15));
            let b = t.position_from_point(&PlotPoint::new(db, y + 0.15));
            (row.node.to_string(), egui::Rect::from_two_pos(a, b))
        })
        .collect();
    ui.ctx().data_mut(|d| d.insert_temp(rects_id(), rects));
    let pointer = response.response.interact_pointer_pos()?;
    if !response.response.clicked() {
        return None;
    }
    let value = t.value_from_position(pointer);
    let row = value.y.round();
    if row < 0.0 || row >= n as f64 {
        return None;
    }
    input
        .rows
        .get(n - 1 - row as usize)
        .map(|r| r.node.to_string())
}

fn key_swatch_ui(ui: &mut egui::Ui, colour: egui::Color32) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
    ui.painter().rect_filled(rect, 2.0, colour);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_marks_keep_labels_apart_at_any_height() {
        // 60 dB over 100 points: labels 72 points apart need a step of at least 43.2 dB → 50.
        let marks = db_marks(
            GridInput {
                bounds: (0.0, 60.0),
                base_step_size: 60.0 / 100.0 * 8.0,
            },
            72.0,
        );
        assert_eq!(marks.first().map(|m| m.step_size), Some(50.0));
        assert_eq!(
            marks.iter().map(|m| m.value).collect::<Vec<_>>(),
            [0.0, 50.0]
        );
        // 63 dB over 600 points: at least 7.56 dB → a step of 10, from 0.
        let marks = db_marks(
            GridInput {
                bounds: (-3.0, 60.0),
                base_step_size: 63.0 / 600.0 * 8.0,
            },
            72.0,
        );
        assert_eq!(marks[0].value, 0.0);
        assert_eq!(marks[0].step_size, 10.0);
    }

    #[test]
    fn long_names_are_shortened_in_the_middle() {
        assert_eq!(short_name("conv1"), "conv1");
        let long = "backbone.stage4.block2.depthwise.conv";
        let short = short_name(long);
        assert_eq!(short.chars().count(), 25);
        assert!(short.starts_with("backbone.sta") && short.ends_with("pthwise.conv"));
    }
}
