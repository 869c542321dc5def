//! Lecture mode: the lecture's sections as steps (`steps`), each setting up its demo on the
//! bundled MobileNet in one click and leaving everything live; the caption bar with the step's
//! two lines and previous/next (and, under a bias-corrected layer, its output shift before and
//! after correction, `shift_plot`); the transforms' "before" read from their reports
//! (`before_after`); the config a step asks for. The app applies what a step asks for through
//! the same commands as the panels.

mod before_after;
mod shift_plot;
mod steps;

use crate::mixed::allocation::AllocationOptions;
use crate::mixed::presets::preset_config;
use crate::quant::QuantConfig;
use crate::quant::config::WeightScheme;
use crate::transform::report::ChannelShifts;

use super::layers::LayerRow;
use super::selection::{Part, Selection};

pub use before_after::{bias_shifts, equalization_ghost, mean_magnitude};
pub use steps::{LectureStep, STEPS, StepSetup};

/// File name of the model every step runs on (a bundled sample).
pub const LECTURE_MODEL: &str = "digits_mobilenet.onnx";

/// Lecture mode's state: the step on screen and the tensor still to select once the model
/// (rebuilt by a step's transforms) is ready.
#[derive(Debug, Default)]
pub struct Lecture {
    /// The step on screen (None: lecture mode off).
    pub current: Option<usize>,
    /// A step waiting for its model to load.
    pub waiting_for_model: bool,
    /// The layer and part to select once the transforms are done.
    pending_selection: Option<(&'static str, Part)>,
    /// The output shifts before and after bias correction of the layer on screen, when
    /// correction changed it (drawn under the caption).
    pub shifts: Option<ChannelShifts>,
}

/// What the caption bar asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LectureNav {
    Go(usize),
    End,
}

impl Lecture {
    /// The step on screen.
    pub fn step(&self) -> Option<&'static LectureStep> {
        self.current.and_then(|i| STEPS.get(i))
    }

    /// The step `delta` away from the current one (clamped to the lecture), if lecture mode
    /// is on.
    pub fn neighbour(&self, delta: i32) -> Option<usize> {
        let current = self.current?;
        let target = (current as i64 + i64::from(delta)).clamp(0, STEPS.len() as i64 - 1) as usize;
        (target != current).then_some(target)
    }

    /// Marks step `index` as started; its tensor is selected by [`Lecture::selection_due`].
    pub fn begin(&mut self, index: usize) {
        self.current = Some(index.min(STEPS.len() - 1));
        self.pending_selection = self.step().map(|s| (s.setup.node, s.setup.part));
    }

    /// Lecture mode off.
    pub fn end(&mut self) {
        *self = Lecture::default();
    }

    /// The selection the step asks for, once the model is ready (`busy` false); an error
    /// names a layer the model does not have. Taken once.
    pub fn selection_due(
        &mut self,
        layers: &[LayerRow],
        busy: bool,
    ) -> Option<Result<Selection, String>> {
        if busy || self.waiting_for_model {
            return None;
        }
        let (node, part) = self.pending_selection.take()?;
        Some(
            Selection::of_node(layers, node, part)
                .ok_or_else(|| format!("lecture step: the model has no layer {node}")),
        )
    }
}

/// The config `setup` asks for on `model` (the preset's per-layer bits when it names one).
pub fn step_config(setup: &StepSetup, graph: &crate::ir::Graph) -> Result<QuantConfig, String> {
    let mut config = QuantConfig::uniform(Some(setup.weights), setup.activations);
    if let Some(name) = setup.preset {
        let symmetric = match setup.weights.scheme {
            WeightScheme::Linear { symmetric, .. } => symmetric,
            _ => true,
        };
        let options = AllocationOptions {
            per_channel: setup.weights.per_channel,
            symmetric,
            ..AllocationOptions::default()
        };
        let preset =
            preset_config(graph, name, &options).map_err(|e| format!("lecture step: {e}"))?;
        for (node, mut quant) in preset.layers {
            quant.activations = setup.activations;
            config.layers.insert(node, quant);
        }
    }
    Ok(config)
}

/// The caption bar: step n of N, its title, two caption lines, what is missing, and
/// previous / next / end; beside the caption, `shifts` as two bar series. Returns what was
/// clicked.
pub fn caption_ui(
    ui: &mut egui::Ui,
    index: usize,
    shifts: Option<&ChannelShifts>,
) -> Option<LectureNav> {
    let step = STEPS.get(index)?;
    let mut nav = None;
    ui.horizontal_wrapped(|ui| {
        if ui
            .add_enabled(index > 0, egui::Button::new("< previous"))
            .on_hover_text("Previous step (Left arrow or PageUp)")
            .clicked()
        {
            nav = Some(LectureNav::Go(index - 1));
        }
        if ui
            .add_enabled(index + 1 < STEPS.len(), egui::Button::new("next >"))
            .on_hover_text("Next step (Right arrow or PageDown)")
            .clicked()
        {
            nav = Some(LectureNav::Go(index + 1));
        }
        ui.label(
            egui::RichText::new(format!(
                "Lecture {}/{}: {}",
                index + 1,
                STEPS.len(),
                step.title
            ))
            .strong(),
        );
        if ui
            .small_button("end lecture")
            .on_hover_text("Leave lecture mode; the settings stay as they are")
            .clicked()
        {
            nav = Some(LectureNav::End);
        }
    });
    match shifts {
        // Beside the caption, not under it: the centre keeps its height.
        Some(shifts) => ui.columns(2, |columns| {
            caption_lines_ui(&mut columns[0], step);
            shift_plot::shift_plot_ui(&mut columns[1], shifts, 52.0);
        }),
        None => caption_lines_ui(ui, step),
    }
    nav
}

/// The step's two caption lines and what it is missing.
fn caption_lines_ui(ui: &mut egui::Ui, step: &LectureStep) {
    for line in step.caption {
        ui.add(egui::Label::new(line).wrap());
    }
    if let Some(missing) = step.missing {
        ui.colored_label(egui::Color32::from_rgb(240, 170, 60), missing);
    }
}

/// The Lecture menu: every step, and end. Returns what was clicked.
pub fn menu_ui(ui: &mut egui::Ui, current: Option<usize>) -> Option<LectureNav> {
    let mut nav = None;
    for (i, step) in STEPS.iter().enumerate() {
        let text = format!("{}. {}", i + 1, step.title);
        if ui
            .selectable_label(current == Some(i), text)
            .on_hover_text(step.caption[0])
            .clicked()
        {
            ui.close();
            nav = Some(LectureNav::Go(i));
        }
    }
    ui.separator();
    if ui
        .add_enabled(current.is_some(), egui::Button::new("End lecture"))
        .clicked()
    {
        ui.close();
        nav = Some(LectureNav::End);
    }
    nav
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_lecture_and_neighbours_clamp() {
        assert!(STEPS[0].title.starts_with("K-means"));
        assert!(STEPS[STEPS.len() - 1].title.contains("cost of N bits"));
        let mut lecture = Lecture::default();
        assert_eq!(lecture.neighbour(1), None, "off: no neighbour");
        lecture.begin(0);
        assert_eq!(lecture.neighbour(-1), None);
        assert_eq!(lecture.neighbour(1), Some(1));
        lecture.begin(STEPS.len() - 1);
        assert_eq!(lecture.neighbour(1), None);
        // QAT trains on the command line: its step names the command instead of a gap.
        assert!(STEPS.iter().all(|s| s.missing.is_none()));
        let qat = STEPS.iter().find(|s| s.title.contains("QAT")).unwrap();
        assert!(
            qat.caption[1].contains("quantscope qat"),
            "{}",
            qat.caption[1]
        );
    }
}
