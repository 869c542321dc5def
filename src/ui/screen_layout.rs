//! How the main window divides the screen: the zoom (explain mode grows the text, but never so
//! much that the screen drops below what the centre view needs) and the side and bottom
//! panels' sizes as fractions of the screen, so that a 1280×720 projector and a 1920×1080 one
//! both keep the histogram, its figures and the formulas in view.

/// The smallest screen, in points, the layout is made for; explain mode zooms only as far as
/// the screen stays at least this large.
pub const MIN_POINTS: egui::Vec2 = egui::vec2(1180.0, 690.0);

/// The zoom and panel sizes for one screen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScreenLayout {
    /// egui's zoom factor.
    pub zoom: f32,
    /// Widest the model (left) and settings (right) panels may be, in points.
    pub left_max: f32,
    pub right_max: f32,
    /// Their initial widths.
    pub left_default: f32,
    pub right_default: f32,
    /// Initial and largest height of the results (bottom) panel.
    pub results_default: f32,
    pub results_max: f32,
}

impl ScreenLayout {
    /// The layout of `ctx`'s window (its size at zoom 1) with the user's font scale, in
    /// explain mode or not.
    pub fn of(ctx: &egui::Context, font_scale: f32, explain: bool, explain_zoom: f32) -> Self {
        let unzoomed = ctx.content_rect().size() * ctx.zoom_factor();
        Self::for_screen(unzoomed, font_scale, explain, explain_zoom)
    }

    /// The layout of a screen of `unzoomed` points (its size at zoom 1) with the user's font
    /// scale, in explain mode or not.
    pub fn for_screen(
        unzoomed: egui::Vec2,
        font_scale: f32,
        explain: bool,
        explain_zoom: f32,
    ) -> Self {
        let font_scale = font_scale.clamp(0.5, 3.0);
        let zoom = if explain {
            let fits = (unzoomed.x / MIN_POINTS.x).min(unzoomed.y / MIN_POINTS.y);
            (font_scale * explain_zoom)
                .min(fits)
                .max(font_scale.min(1.0))
        } else {
            font_scale
        };
        let points = unzoomed / zoom;
        let (side, results) = if explain { (0.17, 0.15) } else { (0.24, 0.28) };
        ScreenLayout {
            zoom,
            left_max: (points.x * 0.3).max(160.0),
            right_max: (points.x * 0.3).max(160.0),
            left_default: (points.x * side).clamp(180.0, 330.0),
            right_default: (points.x * side).clamp(200.0, 290.0),
            results_default: (points.y * results).clamp(90.0, 230.0),
            results_max: (points.y * 0.4).max(100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_zoom_stops_where_the_screen_gets_too_small() {
        let small = ScreenLayout::for_screen(egui::vec2(1280.0, 720.0), 1.0, true, 1.4);
        assert!((small.zoom - 720.0 / 690.0).abs() < 1e-4, "{}", small.zoom);
        let large = ScreenLayout::for_screen(egui::vec2(1920.0, 1080.0), 1.0, true, 1.4);
        assert!((large.zoom - 1.4).abs() < 1e-6);
        let plain = ScreenLayout::for_screen(egui::vec2(1280.0, 720.0), 1.2, false, 1.4);
        assert!((plain.zoom - 1.2).abs() < 1e-6);
        // Side panels leave the centre at least 40 % of the width.
        for (layout, pixels) in [(small, 1280.0), (large, 1920.0)] {
            let width = pixels / layout.zoom;
            assert!(layout.left_default + layout.right_default <= 0.6 * width);
        }
    }
}
