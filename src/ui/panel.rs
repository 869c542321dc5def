//! The contract every panel follows: it reads its input (state it is shown, never the session
//! to edit) and returns what the user asked for as [`AppCommand`]s; the app applies them. A
//! panel's own UI state (filters, tabs) lives in the panel value.

use super::commands::AppCommand;
use super::distribution::{DistributionInput, DistributionView};

/// A panel of the main window.
pub trait Panel {
    /// What the panel reads in one frame.
    type Input<'a>;

    /// Draws the panel from `input` and returns the commands the user gave.
    fn ui(&mut self, ui: &mut egui::Ui, input: &Self::Input<'_>) -> Vec<AppCommand>;
}

/// The centre view, whose own commands are those of [`AppCommand::Distribution`].
impl Panel for DistributionView {
    type Input<'a> = DistributionInput<'a>;

    fn ui(&mut self, ui: &mut egui::Ui, input: &DistributionInput<'_>) -> Vec<AppCommand> {
        self.show_ui(ui, input)
            .into_iter()
            .map(AppCommand::Distribution)
            .collect()
    }
}
