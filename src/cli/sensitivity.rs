//! `quantscope sensitivity`: each layer alone at b-bit weights (the rest float), printed as a
//! table (or JSON); with a budget, the Pareto mixed-precision allocation and its curve.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::bail;
use ndarray::{Axis, Slice};
use quantscope::ir::TensorData;
use quantscope::load::load_model;
use quantscope::mixed::{
    AllocationOptions, Budget, CostModel, EvalData, Evaluator, SensitivityReport, allocate, analyze,
};
use serde::Serialize;

use super::args::GranularityArg;
use super::feeds::{read_labels, read_samples};

#[derive(Debug, clap::Args)]
pub struct SensitivityArgs {
    /// Model file (.onnx) with one input.
    model: PathBuf,
    /// Samples (.npy, or .npz with an array named after the input, else its first array; an
    /// array `labels` or `y` there gives the labels).
    #[arg(long)]
    data: PathBuf,
    /// Class labels (.npy, 1-D integers) for accuracy; default: `labels` or `y` in the .npz.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Weight bits of the layer under test (symmetric linear).
    #[arg(long, default_value_t = 4)]
    bits: u32,
    /// One set of weight parameters per tensor or per output channel.
    #[arg(long, value_enum, default_value_t = GranularityArg::Channel)]
    granularity: GranularityArg,
    /// Use only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Allocate bits under a model-size budget in KiB (parameters, side information included).
    #[arg(long, conflicts_with = "budget_bitops")]
    budget_size_kb: Option<f64>,
    /// Allocate bits under a BitOps budget per sample (MACs × weight bits × activation bits).
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

fn percent(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.2}", 100.0 * v))
}

pub fn sensitivity(args: &SensitivityArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let graph = &model.graph;
    let [input] = graph.inputs.as_slice() else {
        bail!(
            "{}: sensitivity needs a model with exactly one input (it has {})",
            args.model.display(),
            graph.inputs.len()
        );
    };
    let (mut samples, bundled_labels) = read_samples(&args.data, Some(&input.name))?;
    let mut labels = match &args.labels {
        Some(path) => Some(read_labels(path)?),
        None => bundled_labels,
    };
    if let Some(limit) = args.limit {
        let n = samples.len_of(Axis(0)).min(limit);
        samples = samples.slice_axis(Axis(0), Slice::from(..n)).to_owned();
        labels = labels.map(|l| {
            l.slice_axis(Axis(0), Slice::from(..n.min(l.len())))
                .to_owned()
        });
    }
    let cancel = AtomicBool::new(false);
    let data = EvalData {
        input: &input.name,
        samples: samples.view(),
        labels: labels.as_ref().map(|l| l.view()),
    };
    let evaluator = Evaluator::new(graph, data, &cancel)?;
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
            let first = samples.slice_axis(Axis(0), Slice::from(..1)).to_owned();
            let costs = CostModel::new(graph, &input.name, TensorData::F32(first))?;
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
        "{:<28} {:<6} {:>8} {:>10} {:>12}",
        "layer", "op", "params", "acc drop", "output KL"
    );
    for l in &report.layers {
        println!(
            "{:<28} {:<6} {:>8} {:>10} {:>12.3e}",
            l.layer.node,
            l.layer.op_type,
            l.layer.params,
            percent(l.accuracy_drop),
            l.evaluation.output_kl
        );
    }
    if let Some(allocation) = allocation {
        println!("\nallocation under {:?}:", allocation.budget);
        for (node, bits) in &allocation.chosen.bits {
            println!("  {node:<28} int{bits}");
        }
        let c = &allocation.chosen;
        println!(
            "  size {:.2} KiB, BitOps {:.3e}, accuracy {}%, output KL {:.3e}",
            c.size_bytes / 1024.0,
            c.bitops as f64,
            percent(c.evaluation.accuracy),
            c.evaluation.output_kl
        );
        println!(
            "\ncurve (measured Pareto points):\n{:>10} {:>12} {:>9} {:>12}",
            "KiB", "BitOps", "acc %", "output KL"
        );
        for p in &allocation.curve {
            println!(
                "{:>10.2} {:>12.3e} {:>9} {:>12.3e}",
                p.size_bytes / 1024.0,
                p.bitops as f64,
                percent(p.evaluation.accuracy),
                p.evaluation.output_kl
            );
        }
    }
    Ok(())
}
