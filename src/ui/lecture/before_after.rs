//! The "before" of the transforms for the tensor on screen, read from their reports: the
//! per-channel weight ranges before equalization (the channel plot's ghost) and the
//! per-channel output shift before and after bias correction (the caption's shift plot).

use crate::transform::report::{ChannelShifts, TransformReport};

use super::super::distribution::Ghost;
use super::super::session::Session;

/// The per-channel ranges before equalization of the shown weight, when equalization
/// changed it.
pub fn equalization_ghost(session: &Session) -> Option<Ghost> {
    let (tensor, is_weight, _) = session.selected_tensor()?;
    if !is_weight {
        return None;
    }
    session
        .extras
        .reports
        .iter()
        .filter(|r| r.transform.contains("equalization"))
        .flat_map(|r| &r.ranges)
        .find(|r| r.tensor == tensor)
        .map(|r| Ghost {
            tensor: tensor.clone(),
            label: "before equalization".into(),
            before: r.before.clone(),
        })
}

/// The output shift before and after bias correction of the shown layer, once the
/// evaluation of the current config has corrected it and measured what is left.
pub fn bias_shifts(session: &Session) -> Option<ChannelShifts> {
    let (_, _, node) = session.selected_tensor()?;
    corrected_shifts(session.extras.correction_report(&session.config)?, &node)
}

/// The before/after shifts of `node` in a bias-correction report, when correction changed
/// that layer and the shift left after it was measured.
pub fn corrected_shifts(report: &TransformReport, node: &str) -> Option<ChannelShifts> {
    report
        .shifts
        .iter()
        .find(|s| s.layer == node && !s.after.is_empty())
        .cloned()
}

/// Mean |shift| over the channels (0 for none).
pub fn mean_magnitude(shift: &[f32]) -> f32 {
    if shift.is_empty() {
        return 0.0;
    }
    shift.iter().map(|s| s.abs()).sum::<f32>() / shift.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_measured_shifts_of_the_layer() {
        let shifts = ChannelShifts {
            layer: "conv".into(),
            before: vec![0.5, -0.25],
            after: vec![0.01, -0.02],
        };
        let unmeasured = ChannelShifts {
            layer: "fc".into(),
            before: vec![0.5],
            after: Vec::new(),
        };
        let mut report = TransformReport {
            transform: "bias correction (empirical)".into(),
            ..TransformReport::default()
        };
        report.shifts = vec![unmeasured, shifts.clone()];
        assert_eq!(corrected_shifts(&report, "conv"), Some(shifts));
        assert_eq!(corrected_shifts(&report, "fc"), None);
        assert_eq!(corrected_shifts(&report, "other"), None);
        assert_eq!(mean_magnitude(&[0.5, -0.25]), 0.375);
        assert_eq!(mean_magnitude(&[]), 0.0);
    }
}
