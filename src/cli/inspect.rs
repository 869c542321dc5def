//! `quantscope inspect`: the graph summary as text or JSON.

use std::path::PathBuf;

use clap::Args;
use quantscope::summary::ModelSummary;

use super::feeds::open_model;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Model file (.onnx, .safetensors, .npy, .npz).
    model: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let model = open_model(&args.model)?;
    let summary = ModelSummary::of(&model);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render_text(&summary));
    }
    Ok(())
}

fn render_text(s: &ModelSummary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model:      {} ({}, opset {})",
        s.path, s.format, s.opset
    );
    let ops: Vec<String> = s.ops.iter().map(|(op, n)| format!("{op}×{n}")).collect();
    let _ = writeln!(out, "nodes:      {} ({})", s.node_count, ops.join(", "));
    let _ = writeln!(out, "parameters: {}", s.parameter_count);
    for (label, list) in [("input", &s.inputs), ("output", &s.outputs)] {
        for io in list {
            let dtype = io.dtype.as_deref().unwrap_or("?");
            let _ = writeln!(out, "{label:<11} {} {dtype} {}", io.name, io.shape);
        }
    }
    match &s.run_error {
        None => {
            let _ = writeln!(out, "runnable:   yes");
        }
        Some(why) => {
            let _ = writeln!(out, "runnable:   no: {why}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<40} {:<10} {:<8} {:<16} {:>11} {:>11} {:>11} {:>11} {:>8}",
        "tensor", "role", "dtype", "shape", "min", "max", "mean", "std", "ch.spread"
    );
    for t in &s.tensors {
        let shape = format!("{:?}", t.shape);
        let spread = t
            .channel_range_spread
            .map(|r| format!("{r:.1}×"))
            .unwrap_or_else(|| "-".into());
        let mut warn = String::new();
        if t.stats.nan_count + t.stats.inf_count > 0 {
            warn = format!("  ({} NaN, {} Inf)", t.stats.nan_count, t.stats.inf_count);
        }
        let _ = writeln!(
            out,
            "{:<40} {:<10} {:<8} {:<16} {:>11.4e} {:>11.4e} {:>11.4e} {:>11.4e} {:>8}{warn}",
            t.name,
            t.role,
            t.dtype,
            shape,
            t.stats.min,
            t.stats.max,
            t.stats.mean,
            t.stats.std,
            spread
        );
    }
    out
}
