//! What panels ask for. Panels read state and return these; the app applies them (it owns
//! the `QuantConfig` and starts the jobs).

use std::path::PathBuf;

use crate::export::ExportFormat;
use crate::jobs::pipeline::DataSource;
use crate::load::images::ImagePreset;
use crate::quant::{LayerQuant, QuantConfig};
use crate::transform::toggles::TransformToggles;

use super::analysis_jobs::AnalysisCommand;
use super::diagnose::DiagnosticsCommand;
use super::distribution::DistributionCommand;
use super::selection::Selection;

#[derive(Debug, Clone, PartialEq)]
pub enum AppCommand {
    /// Show a tensor of a layer.
    Select(Selection),
    /// Select the next (+1) or previous (−1) layer.
    Step(i32),
    /// The default quantization of every quantizable layer.
    SetDefault(LayerQuant),
    /// A per-layer override (None: back to the default).
    SetLayer {
        node: String,
        quant: Option<LayerQuant>,
    },
    /// Where calibration and evaluation data come from.
    SetSource(DataSource),
    /// Evaluate the current config now.
    Evaluate,
    /// Re-evaluate automatically after every settings change.
    SetAutoEvaluate(bool),
    /// Cancel the running calibration and evaluation.
    Cancel,
    /// A command of the distribution view.
    Distribution(DistributionCommand),
    /// Open a file (model).
    Open(PathBuf),
    /// Ask for a .npy/.npz data file (dialog), then use it as the data source.
    PickDataFile,
    /// Ask for a folder of images (dialog), then use it with this preset.
    PickImageFolder(ImagePreset),
    /// Ask for a folder of .npz files, one sample each (dialog), then use it.
    PickNpzFolder,
    /// Replace the whole config (an applied bit allocation, a restored session).
    SetConfig(Box<QuantConfig>),
    /// Switch transforms (BN folding, equalization, absorption, bias correction).
    SetTransforms(TransformToggles),
    /// Ask for a file name (dialog), then export in this format.
    Export(ExportFormat),
    /// Export in this format to this path.
    ExportTo(ExportFormat, PathBuf),
    /// Ask for a file name (dialog), then save the session there.
    SaveSession,
    /// Save the session (config, transforms, selection) to this path.
    SaveSessionTo(PathBuf),
    /// Ask for a session file (dialog), then open it.
    OpenSession,
    /// Open a session file: its model, then its config and transforms.
    OpenSessionFrom(PathBuf),
    /// Start an experiment of the Analysis window.
    Analysis(AnalysisCommand),
    /// Switch the error-propagation diagnosis or the integer-only path on or off.
    Diagnostics(DiagnosticsCommand),
}
