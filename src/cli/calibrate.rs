//! `quantscope calibrate`: activation ranges of every tensor by every chosen method, with the
//! histogram they were computed from, as JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use quantscope::calib::Method;
use quantscope::export::write_bytes_atomic;
use rayon::prelude::*;
use serde::Serialize;

use quantscope::workflow::{RunControl, calibrate as calibrate_samples};

use super::feeds::{BatchFlags, DataFlags, data_line, open_runnable};
use super::paths::{CommandFiles, MODEL};

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Calibration data: a .npy, an .npz (arrays by input name, samples on axis 0), a folder
    /// of .npz files (one sample each) or a folder of images (see --preset).
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    flags: DataFlags,
    /// Comma-separated methods: minmax, ema, batch-mean, percentile[:P], mse, aciq-gauss,
    /// aciq-laplace, kl.
    #[arg(
        long,
        default_value = "minmax,ema,batch-mean,percentile:99.99,mse,aciq-laplace,kl"
    )]
    methods: String,
    /// Bit width the ranges are chosen for (MSE, ACIQ and KL depend on it).
    #[arg(long, default_value_t = 8)]
    bits: u32,
    #[command(flatten)]
    batch: BatchFlags,
    /// Write the ranges here (JSON); printed as a table either way.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Serialize)]
struct HistogramJson {
    lo: f32,
    hi: f32,
    counts: Vec<u64>,
}

#[derive(Serialize)]
struct TensorRanges {
    /// Method name → [min, max].
    ranges: BTreeMap<String, (f32, f32)>,
    /// Methods that could not give a range, with the reason.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    failed: BTreeMap<String, String>,
    /// Histogram of |x| that percentile, MSE and KL searched.
    abs_histogram: Option<HistogramJson>,
}

#[derive(Serialize)]
struct RangesFile {
    model: String,
    bits: u32,
    /// Calibration samples.
    samples: usize,
    /// Samples per run, and why.
    batch: quantscope::workflow::BatchChoice,
    tensors: BTreeMap<String, TensorRanges>,
}

/// Bit widths calibration ranges can be chosen for (as for activations elsewhere).
const MIN_BITS: u32 = 2;
const MAX_BITS: u32 = 16;

/// Parses a comma-separated method list.
fn parse_methods(text: &str) -> anyhow::Result<Vec<Method>> {
    text.split(',')
        .map(|m| m.trim().parse::<Method>().map_err(anyhow::Error::from))
        .collect()
}

pub fn calibrate(args: &CalibrateArgs) -> anyhow::Result<()> {
    if !(MIN_BITS..=MAX_BITS).contains(&args.bits) {
        anyhow::bail!(
            "--bits {} is out of range: ranges are chosen for {MIN_BITS} to {MAX_BITS} bits",
            args.bits
        );
    }
    CommandFiles::new()
        .input(MODEL, &args.model)
        .input("--data", &args.data)
        .maybe_output("--out", args.out.as_ref())
        .check()?;
    let methods = parse_methods(&args.methods)?;
    let model = open_runnable(&args.model)?;
    let samples = args.flags.samples(&model.graph, &args.data)?;
    let calibration = calibrate_samples(
        &model.graph,
        &samples,
        args.batch.batch_size,
        &RunControl::default(),
    )?;
    println!(
        "{}",
        data_line("calibration data", &samples, &calibration.batch)
    );
    let stats = calibration.stats;
    let mut file = RangesFile {
        model: args.model.display().to_string(),
        bits: args.bits,
        samples: calibration.samples,
        batch: calibration.batch,
        tensors: BTreeMap::new(),
    };
    println!(
        "{:<48} {}",
        "tensor",
        methods
            .iter()
            .map(|m| format!("{:>22}", m.to_string()))
            .collect::<String>()
    );
    // Every tensor's ranges in parallel (the KL and MSE searches dominate with many
    // tensors), printed in name order.
    let rows: Vec<(String, String, TensorRanges)> = stats
        .par_iter()
        .map(|(name, tensor_stats)| {
            let mut entry = TensorRanges {
                ranges: BTreeMap::new(),
                failed: BTreeMap::new(),
                abs_histogram: tensor_stats.abs_histogram().map(|h| HistogramJson {
                    lo: h.lo,
                    hi: h.hi,
                    counts: h.counts,
                }),
            };
            let mut row = format!("{name:<48}");
            for method in &methods {
                match method.range(tensor_stats, args.bits) {
                    Ok(range) => {
                        row.push_str(&format!(
                            "{:>22}",
                            format!("[{:.4}, {:.4}]", range.0, range.1)
                        ));
                        entry.ranges.insert(method.to_string(), range);
                    }
                    Err(e) => {
                        row.push_str(&format!("{:>22}", "-"));
                        entry.failed.insert(method.to_string(), e.to_string());
                    }
                }
            }
            (name.clone(), row, entry)
        })
        .collect();
    for (name, row, entry) in rows {
        println!("{row}");
        file.tensors.insert(name, entry);
    }
    if let Some(out) = &args.out {
        let json = serde_json::to_string_pretty(&file)?;
        write_bytes_atomic(out, &[], json.as_bytes())?;
        println!(
            "wrote ranges of {} tensors to {}",
            file.tensors.len(),
            out.display()
        );
    }
    Ok(())
}
