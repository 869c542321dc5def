//! Turns the pointer on the main histogram into commands: grabbing and dragging a clip handle
//! (a `SetClip` every frame of the drag), a double-click (`ResetClip`), a click on a
//! calibration marker's line (`AdoptMarker`). Keeps the drag state between frames.

use egui_plot::PlotTransform;

use super::clip_handles::{Handle, dragged_clip, pick_handle, pick_marker};
use super::{CalibrationMarker, DistributionCommand};

/// The handle being dragged and the range it has made so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DragState {
    pub handle: Option<Handle>,
    /// The range of the drag in progress (shown at once, before the shell applies it).
    pub clip: Option<(f32, f32)>,
    /// The plot's x range frozen for the drag, so the axis does not move under the pointer.
    pub bounds: Option<(f64, f64)>,
}

/// What the pointer did on the plot this frame.
pub struct PointerOnPlot {
    pub drag_started: bool,
    pub dragged: bool,
    pub drag_stopped: bool,
    pub clicked: bool,
    pub double_clicked: bool,
    pub press_origin: Option<egui::Pos2>,
    pub pos: Option<egui::Pos2>,
    /// The primary button is held (a grabbed handle follows it even in frames where egui
    /// does not report the plot as dragged, e.g. after the view was laid out again because
    /// the first move changed the clip).
    pub button_down: bool,
}

impl PointerOnPlot {
    /// Reads the plot's response and the pointer.
    pub fn read(ui: &egui::Ui, response: &egui::Response) -> Self {
        let (press_origin, pos, button_down) = ui.input(|i| {
            (
                i.pointer.press_origin(),
                i.pointer.interact_pos(),
                i.pointer.primary_down(),
            )
        });
        PointerOnPlot {
            drag_started: response.drag_started(),
            dragged: response.dragged(),
            drag_stopped: response.drag_stopped(),
            clicked: response.clicked(),
            double_clicked: response.double_clicked(),
            press_origin,
            pos: pos.or(response.interact_pointer_pos()),
            button_down,
        }
    }
}

/// The scene the pointer acts on.
pub struct Scene<'a> {
    pub transform: &'a PlotTransform,
    /// The clip handles as drawn (None when the scheme has none); a range beyond the plot is
    /// drawn at its edge, where it can be grabbed.
    pub handles: Option<(f32, f32)>,
    /// The clip range itself (what a drag starts from).
    pub clip: (f32, f32),
    pub symmetric: bool,
    pub bounds: (f64, f64),
    pub markers: &'a [CalibrationMarker],
}

/// Updates `state` from the pointer; returns this frame's commands.
pub fn interact(
    state: &mut DragState,
    pointer: &PointerOnPlot,
    scene: &Scene<'_>,
) -> Vec<DistributionCommand> {
    let t = scene.transform;
    if pointer.double_clicked {
        *state = DragState::default();
        return vec![DistributionCommand::ResetClip];
    }
    let Some(handles) = scene.handles else {
        *state = DragState::default();
        return click_marker(pointer, scene);
    };
    let screen_x = |x: f32| t.position_from_point_x(f64::from(x));
    if state.handle.is_none()
        && (pointer.drag_started || pointer.dragged)
        && let Some(origin) = pointer.press_origin
    {
        state.handle = pick_handle(origin.x, screen_x(handles.0), screen_x(handles.1));
        state.bounds = Some(scene.bounds);
        state.clip = None;
    }
    let Some(handle) = state.handle else {
        return click_marker(pointer, scene);
    };
    let mut commands = Vec::new();
    let held = pointer.dragged || pointer.drag_started || pointer.button_down;
    if let Some(pos) = pointer.pos
        && (held || pointer.drag_stopped)
    {
        let x = t.value_from_position(pos).x;
        let from = state.clip.unwrap_or(scene.clip);
        let bounds = state.bounds.unwrap_or(scene.bounds);
        let (lo, hi) = dragged_clip(handle, x, from, scene.symmetric, bounds);
        state.clip = Some((lo, hi));
        commands.push(DistributionCommand::SetClip { lo, hi });
    }
    if pointer.drag_stopped || !held {
        state.handle = None;
        state.bounds = None;
    }
    commands
}

fn click_marker(pointer: &PointerOnPlot, scene: &Scene<'_>) -> Vec<DistributionCommand> {
    if !pointer.clicked {
        return Vec::new();
    }
    let Some(pos) = pointer.pos else {
        return Vec::new();
    };
    let t = scene.transform;
    let xs: Vec<(f32, f32)> = scene
        .markers
        .iter()
        .map(|m| {
            (
                t.position_from_point_x(f64::from(m.range.0)),
                t.position_from_point_x(f64::from(m.range.1)),
            )
        })
        .collect();
    pick_marker(pos.x, &xs)
        .map(|i| {
            vec![DistributionCommand::AdoptMarker(
                scene.markers[i].method.clone(),
            )]
        })
        .unwrap_or_default()
}
