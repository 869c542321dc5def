//! Command-line parsing and dispatch (anyhow at this edge; the core uses thiserror).

mod adaround;
mod args;
mod bench;
mod calibrate;
mod compare;
mod diagnose;
mod export;
mod feeds;
mod format;
mod inspect;
mod integer;
mod paths;
mod quantize;
mod run;
mod sensitivity;
mod train;
mod transform;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use quantscope::budget::MemoryBudget;

/// Explore neural-network quantization: inspect and run models, tune ranges in the app.
#[derive(Debug, Parser)]
#[command(name = "quantscope", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Most memory one file or data set may claim when read (e.g. 2G, 512M); a file declaring
    /// more is refused before anything is allocated. Default: QUANTSCOPE_MEMORY_BUDGET, else
    /// 8G.
    #[arg(long, global = true, value_name = "SIZE")]
    memory_budget: Option<MemoryBudget>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a model's graph summary: ops, parameter count, per-tensor statistics.
    Inspect(inspect::InspectArgs),
    /// Run a model on data (any number of samples, in the chunks it accepts); report output shapes and accuracy; save outputs.
    Run(run::RunArgs),
    /// Calibrate every activation's range by several methods; write ranges and histograms.
    Calibrate(calibrate::CalibrateArgs),
    /// Quantize weights and activations; print per-tensor errors and float vs quantized accuracy.
    Quantize(quantize::QuantizeArgs),
    /// The paper's table: float, BN-folded per-tensor, + equalization, + bias correction, per-channel.
    Compare(compare::CompareArgs),
    /// Export QDQ/baked ONNX, AIMET encodings, a TensorRT cache, ranges or reports.
    Export(export::ExportArgs),
    /// Fold BN, equalize, absorb high biases; write the transformed float model (.onnx).
    Transform(transform::TransformArgs),
    /// Each layer alone at b-bit weights: accuracy drop and output KL; bit allocation under a budget.
    Sensitivity(sensitivity::SensitivityArgs),
    /// Find the layer that breaks the model: per layer own, accumulated and leave-one-float SQNR.
    Diagnose(diagnose::DiagnoseArgs),
    /// Time the engine on a model and input (median over iterations), printed as one JSON line.
    Bench(bench::BenchArgs),
    /// Quantization-aware training (STE, binary, ternary, TTQ, k-means, XNOR) with a JSON report.
    Qat(train::QatArgs),
    /// Open the desktop app (the default when no command is given).
    App {
        /// Model to open (.onnx, .safetensors, .npy, .npz); the bundled sample when omitted.
        model: Option<PathBuf>,
    },
}

/// Runs the parsed command.
pub fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.memory_budget {
        Some(budget) => MemoryBudget::set_current(budget),
        None => {
            MemoryBudget::from_env().map_err(anyhow::Error::msg)?;
        }
    }
    match cli.command {
        Some(Command::Inspect(args)) => inspect::inspect(&args),
        Some(Command::Run(args)) => run::run(&args),
        Some(Command::Bench(args)) => bench::bench(&args),
        Some(Command::Calibrate(args)) => calibrate::calibrate(&args),
        Some(Command::Quantize(args)) => quantize::quantize(&args),
        Some(Command::Compare(args)) => compare::compare(&args),
        Some(Command::Transform(args)) => transform::transform(&args),
        Some(Command::Export(args)) => export::export(&args),
        Some(Command::Sensitivity(args)) => sensitivity::sensitivity(&args),
        Some(Command::Diagnose(args)) => diagnose::diagnose(&args),
        Some(Command::Qat(args)) => train::qat(&args),
        Some(Command::App { model }) => open_app(model),
        None => open_app(None),
    }
}

#[cfg(feature = "gui")]
fn open_app(model: Option<PathBuf>) -> anyhow::Result<()> {
    quantscope::ui::run_app(model)
}

#[cfg(not(feature = "gui"))]
fn open_app(_model: Option<PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!(
        "this build has no GUI (built without the `gui` feature); try `quantscope --help`"
    )
}

/// Replaces Rust's panic report (a backtrace hint) with one line asking for a bug report.
pub fn install_panic_message() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        eprintln!("error: internal error{location}: {message} (this is a bug; please report it)");
    }));
}
