//! The left panel: the model's tensors, filterable, one selectable row each.

use crate::ir::ParamRole;
use crate::summary::ModelSummary;

/// Lists the tensors whose name contains `filter`; a click sets `selected`.
pub fn tensor_list_ui(
    ui: &mut egui::Ui,
    summary: &ModelSummary,
    selected: &mut Option<usize>,
    filter: &mut String,
    show_constants: &mut bool,
) {
    ui.horizontal(|ui| {
        ui.label("Filter:");
        ui.text_edit_singleline(filter)
            .on_hover_text("Show only tensors whose name contains this text");
    });
    ui.checkbox(show_constants, "show constants").on_hover_text(
        "Also list scalars and integer shape/index tensors, which are not quantized",
    );
    ui.separator();
    let needle = filter.to_lowercase();
    egui::ScrollArea::vertical().show(ui, |ui| {
        for (index, tensor) in summary.tensors.iter().enumerate() {
            if !needle.is_empty() && !tensor.name.to_lowercase().contains(&needle) {
                continue;
            }
            if !*show_constants && tensor.role == ParamRole::Constant.name() {
                continue;
            }
            let label = format!("{}  {:?}", tensor.name, tensor.shape);
            let row = ui
                .selectable_label(*selected == Some(index), label)
                .on_hover_text(format!("{} · {}", tensor.role, tensor.dtype));
            if row.clicked() {
                *selected = Some(index);
            }
        }
    });
}
