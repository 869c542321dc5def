//! A plot that only shows: no drag, zoom, scroll, boxed zoom or double-click reset, so a
//! figure stays where the code put it (on a projector, in a snapshot).

use egui_plot::Plot;

/// A plot with id `id` whose view the pointer cannot move.
pub(crate) fn fixed_plot<'a>(id: impl egui::AsIdSalt) -> Plot<'a> {
    Plot::new(id)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
}
