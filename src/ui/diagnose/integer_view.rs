//! The integer-only path against the simulation in the Results panel: per compared tensor the
//! output codes equal to the simulation's, 1 LSB and more than 1 LSB apart, the saturated
//! codes and the bits of the i32 accumulator used; the layers left in float with the reason;
//! and in explain mode one element's integer arithmetic for the selected layer.

use crate::quant::integer::compare::{IntegerComparison, TensorComparison};

/// Bits of a two's-complement accumulator that held values in [min, max] (sign included).
pub fn accumulator_bits(t: &TensorComparison) -> u32 {
    let bits = |v: i32| {
        let v = i64::from(v);
        65 - if v < 0 { !v } else { v }.leading_zeros()
    };
    bits(t.accumulator_min).max(bits(t.accumulator_max))
}

/// Draws the comparison; returns the node of a clicked layer name.
pub fn integer_ui(
    ui: &mut egui::Ui,
    result: &Result<std::sync::Arc<IntegerComparison>, String>,
    current: bool,
    selected: Option<&str>,
    explain: bool,
) -> Option<String> {
    let mut clicked = None;
    let comparison = match result {
        Ok(c) => c,
        Err(e) => {
            ui.colored_label(
                egui::Color32::from_rgb(235, 140, 50),
                format!("The integer-only path does not support this model: {e}"),
            );
            ui.weak(
                "It runs Conv, Gemm and MatMul with symmetric signed weights of at most 8 bits \
                 and quantized inputs; other layers stay in float.",
            );
            return None;
        }
    };
    if !current {
        ui.disable();
    }
    ui.label(format!(
        "integer-only path vs fake quantization ({} samples; each layer reads the simulation's input)",
        comparison.samples
    ))
    .on_hover_text(
        "Output codes of the integer kernels (i32 accumulation, fixed-point requantization) \
         against the simulation's output quantized on the same grid",
    );
    egui::Grid::new("integer_grid")
        .num_columns(7)
        .striped(true)
        .show(ui, |ui| {
            let headers = [
                ("layer", "Click to select the layer"),
                ("=", "Codes equal to the simulation's"),
                ("1 LSB", "Codes one step apart (the fixed-point rounding)"),
                (">1 LSB", "Codes more than one step apart: a real mismatch"),
                ("saturated", "Codes at either end of the output grid"),
                (
                    "acc bits",
                    "Bits of the i32 accumulator the values used (sign included)",
                ),
                ("elements", "Output elements compared"),
            ];
            for (h, hover) in headers {
                ui.strong(h).on_hover_text(hover);
            }
            ui.end_row();
            for t in &comparison.tensors {
                let name = if t.relu_fused {
                    format!("{} (+ReLU)", t.layer)
                } else {
                    t.layer.clone()
                };
                if ui
                    .selectable_label(selected == Some(t.layer.as_str()), name)
                    .on_hover_text(format!("compared tensor: {}", t.tensor))
                    .clicked()
                {
                    clicked = Some(t.layer.clone());
                }
                let equal = t.elements - t.off_by_one - t.beyond_one;
                ui.label(equal.to_string());
                ui.label(t.off_by_one.to_string());
                if t.beyond_one > 0 {
                    ui.colored_label(egui::Color32::LIGHT_RED, t.beyond_one.to_string());
                } else {
                    ui.label("0");
                }
                ui.label((t.saturated_low + t.saturated_high).to_string());
                ui.label(format!("{} of 32", accumulator_bits(t)));
                ui.label(t.elements.to_string());
                ui.end_row();
            }
        });
    for f in &comparison.fallbacks {
        ui.weak(format!("float: {} ({}): {}", f.layer, f.op_type, f.reason));
    }
    ui.separator();
    match (explain, selected) {
        (false, _) => {
            ui.weak("Explain mode (E) spells out one element's integer arithmetic for the selected layer.");
        }
        (true, Some(node)) => match comparison.trace(node) {
            Some(trace) => {
                ui.strong(format!("{node}: one element in integers"));
                for line in trace.lines() {
                    ui.label(egui::RichText::new(line).monospace());
                }
            }
            None => {
                ui.weak(format!(
                    "{node} does not run on the integer path: select one of the layers above"
                ));
            }
        },
        (true, None) => {
            ui.weak("Select a layer to see one element's integer arithmetic.");
        }
    }
    clicked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulator_bits_count_the_sign() {
        let t = |lo, hi| TensorComparison {
            accumulator_min: lo,
            accumulator_max: hi,
            ..Default::default()
        };
        assert_eq!(accumulator_bits(&t(0, 0)), 1);
        assert_eq!(accumulator_bits(&t(-1, 1)), 2);
        assert_eq!(accumulator_bits(&t(-200, 127)), 9);
        assert_eq!(accumulator_bits(&t(0, 32767)), 16);
        assert_eq!(accumulator_bits(&t(i32::MIN, 0)), 32);
    }
}
