//! `quantscope sensitivity`: each layer alone at b-bit weights (the rest float), printed as a
//! table (or JSON); with a budget, the Pareto mixed-precision allocation and its curve.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use quantscope::mixed::{
    AllocationOptions, Budget, CostModel, CurvePoint, SensitivityReport, allocate, analyze,
};
use quantscope::workflow::{Evaluator, RunControl};
use serde::Serialize;

use super::args::GranularityFlag;
use super::feeds::{DataFlags, LabelFlags, data_line, open_runnable};
use super::format::db;

#[derive(Debug, clap::Args)]
pub struct SensitivityArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Samples: a .npy, an .npz (arrays by input name, optional `labels` or `y`), a folder of
    /// .npz files (one sample each) or a folder of images (see --preset).
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    data_flags: DataFlags,
    #[command(flatten)]
    labels: LabelFlags,
    /// Weight bits of the layer under test (symmetric linear).
    #[arg(long, default_value_t = 4)]
    bits: u32,
    #[command(flatten)]
    granularity: GranularityFlag,
    /// Use only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Allocate bits under a model-size budget in KiB (parameters, side information included).
    #[arg(long, conflicts_with = "budget_bitops")]
    budget_size_kb: Option<f64>,
    /// Allocate bits under a BitOps budget per inference (MACs × weight bits × activation
    /// bits).
    #[arg(long)]
    budget_bitops: Option<f64>,
    /// Candidate weight bit widths for the allocation.
    #[arg(long, value_delimiter = ',', default_value = "8,4,2")]
    candidates: Vec<u32>,
    /// Frontier points measured for the size-vs-accuracy curve.
    #[arg(long, default_value_t = 16)]
    curve_points: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Output<'a> {
    sensitivity: &'a SensitivityReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    allocation: Option<quantscope::mixed::Allocation>,
}

fn kl(e: &quantscope::workflow::Evaluation) -> String {
    e.classification
        .as_ref()
        .map_or("-".into(), |c| format!("{:.3e}", c.output_kl))
}

fn percent(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.2}", 100.0 * v))
}

/// A measured point's figures as printed: size in KiB, BitOps per inference, accuracy (%),
/// output KL and loss.
fn figures(p: &CurvePoint) -> (f64, f64, String, String, f64) {
    (
        p.size_bytes / 1024.0,
        p.bitops as f64,
        percent(p.evaluation.quant_accuracy()),
        kl(&p.evaluation),
        p.evaluation.loss(),
    )
}

pub fn sensitivity(args: &SensitivityArgs) -> anyhow::Result<()> {
    let model = open_runnable(&args.model)?;
    let graph = &model.graph;
    let mut samples = args
        .data_flags
        .labelled_samples(graph, &args.data, &args.labels)?;
    if let Some(limit) = args.limit {
        samples = samples.first(limit);
    }
    let cancel = AtomicBool::new(false);
    let control = RunControl::cancel(&cancel);
    let evaluator = Evaluator::new(graph, &samples, None, &control)?.with_float_cache(&control)?;
    if !args.json {
        println!("{}", data_line("data", &samples, evaluator.batch()));
    }
    let options = AllocationOptions {
        candidates: args.candidates.clone(),
        per_channel: args.granularity.per_channel(),
        ..AllocationOptions::default()
    };
    let report = analyze(&evaluator, options.weights(args.bits), &|_, _| {}, &cancel)?;

    let budget = match (args.budget_size_kb, args.budget_bitops) {
        (Some(kb), _) => Some(Budget::SizeBytes(kb * 1024.0)),
        (None, Some(ops)) => Some(Budget::BitOps(ops as u64)),
        (None, None) => None,
    };
    let allocation = match budget {
        None => None,
        Some(budget) => {
            let mut reports = Vec::new();
            for &bits in &options.candidates {
                reports.push(if bits == args.bits {
                    report.clone()
                } else {
                    analyze(&evaluator, options.weights(bits), &|_, _| {}, &cancel)?
                });
            }
            let costs = CostModel::of(&evaluator)?;
            Some(allocate(
                &evaluator,
                &costs,
                &reports,
                budget,
                &options,
                args.curve_points,
                &mut |_, _| {},
                &cancel,
            )?)
        }
    };

    if args.json {
        let output = Output {
            sensitivity: &report,
            allocation,
        };
        println!("{}", serde_json::to_string_pretty(&output)?);
        return Ok(());
    }
    println!(
        "each layer alone at {} weights ({}), the rest float; float accuracy {}%",
        report.weights,
        if report.per_channel {
            "per channel"
        } else {
            "per tensor"
        },
        percent(report.float_accuracy)
    );
    println!(
        "{:<28} {:<6} {:>8} {:>10} {:>12} {:>14}",
        "layer", "op", "params", "acc drop", "output KL", "worst SQNR dB"
    );
    for l in &report.layers {
        let e = &l.evaluation;
        println!(
            "{:<28} {:<6} {:>8} {:>10} {:>12} {:>14}",
            l.layer.node,
            l.layer.op_type,
            l.layer.params,
            percent(l.accuracy_drop),
            kl(e),
            db(e.worst_output_sqnr_db())
        );
    }
    if let Some(allocation) = allocation {
        println!("\nallocation under {:?}:", allocation.budget);
        for (node, bits) in &allocation.chosen.bits {
            println!("  {node:<28} int{bits}");
        }
        let (kib, bitops, accuracy, output_kl, loss) = figures(&allocation.chosen);
        println!(
            "  size {kib:.2} KiB, BitOps per inference {bitops:.3e}, accuracy {accuracy}%, output KL {output_kl}, loss {loss:.3e}"
        );
        println!(
            "\ncurve (measured Pareto points):\n{:>10} {:>12} {:>9} {:>12} {:>12}",
            "KiB", "BitOps", "acc %", "output KL", "loss"
        );
        for p in &allocation.curve {
            let (kib, bitops, accuracy, output_kl, loss) = figures(p);
            println!("{kib:>10.2} {bitops:>12.3e} {accuracy:>9} {output_kl:>12} {loss:>12.3e}");
        }
    }
    Ok(())
}
