//! The two clip handles (rmin, rmax) of a linear quantizer: which handle the pointer grabs,
//! where a drag moves the range (mirrored for symmetric schemes, never crossing), and which
//! calibration marker a click lands on. Pure functions over screen and plot x; no GUI.

/// One of the two clip handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    Lo,
    Hi,
}

/// How close (in points) the pointer must be to a line to grab or click it.
pub const GRAB_TOLERANCE: f32 = 8.0;

/// The handle positions shown for `clip`: the range itself, or ±max(|rmin|, |rmax|) when the
/// scheme is symmetric (the range the quantizer really uses).
pub fn shown_clip(clip: (f32, f32), symmetric: bool) -> (f32, f32) {
    let (lo, hi) = (clip.0.min(clip.1), clip.0.max(clip.1));
    if symmetric {
        let m = lo.abs().max(hi.abs());
        (-m, m)
    } else {
        (lo, hi)
    }
}

/// The handle nearest to `pointer_x` (screen x) within [`GRAB_TOLERANCE`], given the handles'
/// screen x. On a tie (handles on top of each other) the pointer's side decides: left of them
/// grabs the minimum, right the maximum.
pub fn pick_handle(pointer_x: f32, lo_x: f32, hi_x: f32) -> Option<Handle> {
    let (d_lo, d_hi) = ((pointer_x - lo_x).abs(), (pointer_x - hi_x).abs());
    if d_lo.min(d_hi) > GRAB_TOLERANCE {
        return None;
    }
    Some(if d_lo < d_hi {
        Handle::Lo
    } else if d_hi < d_lo || pointer_x >= hi_x {
        Handle::Hi
    } else {
        Handle::Lo
    })
}

/// The clip range after dragging `handle` to plot x `x` (clamped to `bounds`), from `clip`.
/// Symmetric: both handles move together, to ±|x|. Asymmetric: the dragged end moves and stops
/// a small gap short of the other.
pub fn dragged_clip(
    handle: Handle,
    x: f64,
    clip: (f32, f32),
    symmetric: bool,
    bounds: (f64, f64),
) -> (f32, f32) {
    let span = (bounds.1 - bounds.0)
        .abs()
        .max(f64::from(f32::MIN_POSITIVE));
    let gap = span * 1e-3;
    let x = if x.is_finite() {
        x.clamp(bounds.0.min(bounds.1), bounds.0.max(bounds.1))
    } else {
        0.0
    };
    let (lo, hi) = shown_clip(clip, symmetric);
    let (lo, hi) = (f64::from(lo), f64::from(hi));
    let (new_lo, new_hi) = if symmetric {
        let m = x.abs().max(gap);
        (-m, m)
    } else {
        match handle {
            Handle::Lo => (x.min(hi - gap), hi),
            Handle::Hi => (lo, x.max(lo + gap)),
        }
    };
    (new_lo as f32, new_hi as f32)
}

/// The marker (index into `marker_xs`, each marker's two screen x) whose line is nearest to
/// `pointer_x` within [`GRAB_TOLERANCE`].
pub fn pick_marker(pointer_x: f32, marker_xs: &[(f32, f32)]) -> Option<usize> {
    marker_xs
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| (i, (pointer_x - a).abs().min((pointer_x - b).abs())))
        .filter(|&(_, d)| d <= GRAB_TOLERANCE)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_nearest_handle_within_tolerance() {
        assert_eq!(pick_handle(103.0, 100.0, 300.0), Some(Handle::Lo));
        assert_eq!(pick_handle(295.0, 100.0, 300.0), Some(Handle::Hi));
        assert_eq!(pick_handle(200.0, 100.0, 300.0), None);
        assert_eq!(
            pick_handle(100.0 + GRAB_TOLERANCE + 0.5, 100.0, 300.0),
            None
        );
        // Handles on top of each other: the side decides.
        assert_eq!(pick_handle(98.0, 100.0, 100.0), Some(Handle::Lo));
        assert_eq!(pick_handle(102.0, 100.0, 100.0), Some(Handle::Hi));
    }

    #[test]
    fn symmetric_drags_mirror_and_asymmetric_ones_do_not_cross() {
        let bounds = (-2.0, 2.0);
        assert_eq!(shown_clip((-0.5, 1.0), true), (-1.0, 1.0));
        assert_eq!(shown_clip((1.0, -0.5), false), (-0.5, 1.0));
        // Symmetric: dragging either handle sets ±|x|.
        assert_eq!(
            dragged_clip(Handle::Lo, -0.75, (-1.0, 1.0), true, bounds),
            (-0.75, 0.75)
        );
        assert_eq!(
            dragged_clip(Handle::Hi, 1.5, (-1.0, 1.0), true, bounds),
            (-1.5, 1.5)
        );
        // Asymmetric: only the dragged end moves; it stops short of the other and at bounds.
        assert_eq!(
            dragged_clip(Handle::Hi, 0.25, (-1.0, 1.0), false, bounds),
            (-1.0, 0.25)
        );
        let (lo, hi) = dragged_clip(Handle::Lo, 1.5, (-1.0, 1.0), false, bounds);
        assert!(lo < hi && (hi - 1.0).abs() < 1e-6 && lo > 0.99, "{lo} {hi}");
        assert_eq!(
            dragged_clip(Handle::Lo, -9.0, (-1.0, 1.0), false, bounds),
            (-2.0, 1.0)
        );
        assert_eq!(
            dragged_clip(Handle::Lo, f64::NAN, (-1.0, 1.0), false, bounds),
            (0.0, 1.0)
        );
    }

    #[test]
    fn picks_the_nearest_marker_line() {
        let markers = [(10.0, 90.0), (20.0, 80.0), (40.0, 60.0)];
        assert_eq!(pick_marker(78.0, &markers), Some(1));
        assert_eq!(pick_marker(62.0, &markers), Some(2));
        assert_eq!(pick_marker(50.0, &markers), None);
    }
}
