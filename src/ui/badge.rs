//! The SQNR colour scale shared by the model panel's badges and the results chart.

/// Colour of an SQNR in dB: green (≥ 30 dB, hardly visible error) through yellow and orange to
/// red (< 10 dB, the layer hurts).
pub fn sqnr_colour(db: f64) -> egui::Color32 {
    if db >= 30.0 {
        egui::Color32::from_rgb(80, 190, 100)
    } else if db >= 20.0 {
        egui::Color32::from_rgb(220, 200, 60)
    } else if db >= 10.0 {
        egui::Color32::from_rgb(235, 140, 50)
    } else {
        egui::Color32::from_rgb(225, 70, 60)
    }
}

/// SQNR as text ("inf" for an exact layer).
pub fn sqnr_text(db: f64) -> String {
    if db.is_finite() {
        format!("{db:.1} dB")
    } else {
        "exact".into()
    }
}
