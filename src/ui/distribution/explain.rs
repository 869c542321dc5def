//! Explain mode: the lecture's formulas for the current scheme with the live numbers plugged in
//! (S and Z of a linear grid, binary α, TWN's Δ and α, TTQ's Wp/Wn, the k-means codebook),
//! in large text a lecturer can point at.

use crate::metrics::ErrorEstimate;
use crate::quant::config::WeightScheme;

use crate::quant::Quantizer;

use super::{QuantChoice, ScaleStats};

/// The formulas of `quantizer` (built from `choice`, `clip`, `stats`) as lines of text.
pub fn formulas(
    choice: &QuantChoice,
    clip: (f32, f32),
    quantizer: &Quantizer,
    stats: &ScaleStats,
    estimate: Option<&ErrorEstimate>,
) -> Vec<String> {
    let mut lines = Vec::new();
    match quantizer {
        Quantizer::Linear(p) => {
            let (qmin, qmax) = (p.grid.qmin(), p.grid.qmax());
            // The quantizer widens the range to include 0.
            let rmin = clip.0.min(clip.1).min(0.0);
            let rmax = clip.0.max(clip.1).max(0.0);
            let symmetric = choice.scheme.is_symmetric();
            lines.push(format!(
                "{}-bit {} grid: qmin = {qmin}, qmax = {qmax}",
                p.grid.bits,
                if p.grid.signed { "signed" } else { "unsigned" }
            ));
            lines.push(format!("clip range: rmin = {rmin:.6}, rmax = {rmax:.6}"));
            if symmetric {
                let q_plus = (1i32 << (p.grid.bits - 1)) - 1;
                lines.push(format!(
                    "S = max(|rmin|, |rmax|) / (2^(b−1) − 1) = {:.6} / {q_plus} = {:.6e}",
                    rmin.abs().max(rmax.abs()),
                    p.scale
                ));
                lines.push(format!("Z = {} (symmetric)", p.zero_point));
            } else {
                lines.push(format!(
                    "S = (rmax − rmin) / (qmax − qmin) = ({rmax:.6} − ({rmin:.6})) / ({qmax} − ({qmin})) = {:.6e}",
                    p.scale
                ));
                lines.push(format!(
                    "Z = round(qmin − rmin / S) = round({qmin} − ({rmin:.6}) / {:.6e}) = {}",
                    p.scale, p.zero_point
                ));
            }
            lines.push("q = clamp(round(x / S) + Z, qmin, qmax),   Q(x) = S·(q − Z)".into());
        }
        Quantizer::Binary { alpha } => {
            if matches!(choice.scheme, WeightScheme::Binary { scaled: true, .. }) {
                lines.push(format!("α = E|W| = {alpha:.6}"));
            } else {
                lines.push("α = 1 (unscaled)".into());
            }
            lines.push(format!("Q(x) = α·sign(x) ∈ {{−{alpha:.6}, +{alpha:.6}}}"));
            lines.push(
                "XNOR-Net (inputs binary too): x·w = 2·popcount(XNOR(x, w)) − N for N products, \
                 times the scales"
                    .into(),
            );
            if matches!(
                choice.scheme,
                WeightScheme::Binary {
                    stochastic: true,
                    ..
                }
            ) {
                lines.push(
                    "stochastic: Q(x) = +α with probability hard_sigmoid(x) = clip((x + 1)/2, 0, 1); \
                     the estimate is for the deterministic sign"
                        .into(),
                );
            }
        }
        Quantizer::Ternary { delta, wp, wn } => {
            if matches!(choice.scheme, WeightScheme::Ternary { ttq: true }) {
                lines.push(format!(
                    "TTQ: Δ = 0.05·max|W| = 0.05 × {:.6} = {delta:.6}",
                    stats.max_abs
                ));
                lines.push(format!("Wp = mean of w over w > Δ = {wp:.6}"));
                lines.push(format!("Wn = mean of |w| over w < −Δ = {wn:.6}"));
            } else {
                lines.push(format!(
                    "TWN: Δ = 0.7·E|W| = 0.7 × {:.6} = {delta:.6}",
                    stats.mean_abs
                ));
                lines.push(format!("α = mean of |w| over |w| > Δ = {wp:.6}"));
            }
            lines.push(format!(
                "Q(x) = +{wp:.6} if x > Δ,  0 if |x| ≤ Δ,  −{wn:.6} if x < −Δ"
            ));
        }
        Quantizer::Codebook(levels) => {
            lines.push(format!(
                "k-means codebook (k = {}, Lloyd from a linear init, fitted on the sample):",
                levels.len()
            ));
            for chunk in levels.chunks(8) {
                let values: Vec<String> = chunk.iter().map(|v| format!("{v:+.5}")).collect();
                lines.push(format!("  {}", values.join("  ")));
            }
            lines.push("Q(x) = the codebook value nearest to x".into());
        }
    }
    if let Some(e) = estimate {
        lines.push(format!(
            "SQNR = 10·log10(E[x²] / MSE) = 10·log10({:.4e} / {:.4e}) = {:.2} dB (estimate)",
            e.signal_power, e.mse, e.sqnr_db
        ));
    }
    lines
}

/// Shows `lines` in large monospace text of `size` points (wrapped to the width); returns the
/// rect taken.
pub fn explain_ui(ui: &mut egui::Ui, lines: &[String], size: f32) -> egui::Rect {
    egui::Frame::group(ui.style())
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(
                egui::RichText::new("Formulas with the live numbers")
                    .strong()
                    .size(size * 1.45),
            );
            for line in lines {
                ui.add(egui::Label::new(egui::RichText::new(line).monospace().size(size)).wrap());
            }
        })
        .response
        .rect
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::scalar::linear_params;

    #[test]
    fn linear_formulas_plug_in_s_and_z() {
        let choice = QuantChoice {
            scheme: WeightScheme::Linear {
                bits: 2,
                symmetric: false,
            },
            per_channel: false,
            unsigned: false,
        };
        // [−1, 2] on −2..1: S = 3/3 = 1, Z = round(−2 + 1) = −1.
        let q = Quantizer::Linear(linear_params(2, false, false, (-1.0, 2.0)).unwrap());
        let lines = formulas(&choice, (-1.0, 2.0), &q, &ScaleStats::default(), None);
        let text = lines.join("\n");
        assert!(text.contains("= 1.000000e0"), "{text}");
        assert!(text.contains("/ 1.000000e0) = -1"), "{text}");
    }

    #[test]
    fn twn_formulas_show_delta_and_alpha() {
        let choice = QuantChoice {
            scheme: WeightScheme::Ternary { ttq: false },
            per_channel: false,
            unsigned: false,
        };
        let stats = ScaleStats {
            mean_abs: 0.5,
            ..Default::default()
        };
        let q = Quantizer::Ternary {
            delta: 0.35,
            wp: 0.8,
            wn: 0.8,
        };
        let text = formulas(&choice, (0.0, 0.0), &q, &stats, None).join("\n");
        assert!(
            text.contains("Δ = 0.7·E|W| = 0.7 × 0.500000 = 0.350000"),
            "{text}"
        );
        assert!(
            text.contains("α = mean of |w| over |w| > Δ = 0.800000"),
            "{text}"
        );
    }
}
