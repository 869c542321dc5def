//! Figures as the command tables print them.

/// A dB figure with two decimals ("inf" for a lossless one), "-" when there is none.
pub fn db(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}
