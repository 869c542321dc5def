//! `quantscope diagnose`: find the layer that breaks a model. Per quantizable layer: its own
//! SQNR (only it quantized, float inputs), the accumulated SQNR (everything up to it
//! quantized) and the worst output's SQNR with only this layer left float; as a table or JSON.

use std::path::PathBuf;

use clap::Args;
use quantscope::diagnose::{
    DiagnoseOptions, Diagnosis, LayerDiagnosis, diagnose as diagnose_model,
};
use quantscope::load::load_model;
use quantscope::quant::QuantConfig;
use quantscope::transform::FloatGraph;
use quantscope::transform::fold_bn::fold_batch_norm;
use quantscope::workflow::{RunControl, calibrate as calibrate_samples};
use serde::Serialize;

use super::args::QuantFlags;
use super::feeds::{BatchFlags, DataFlags, data_line, plan_for};
use super::format::db;

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Data to calibrate and measure on: a .npy, an .npz (arrays by input name, samples on
    /// axis 0), a folder of .npz files (one sample each) or a folder of images (see --preset).
    /// No labels are needed.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    flags: QuantFlags,
    #[command(flatten)]
    data_flags: DataFlags,
    /// Fold BatchNormalization into the preceding Conv/Gemm first (as `transform --fold-bn`).
    #[arg(long)]
    fold_bn: bool,
    #[command(flatten)]
    batch: BatchFlags,
    /// List the layers by own SQNR, worst first (default: execution order).
    #[arg(long)]
    worst_first: bool,
    /// Skip the "output SQNR with this layer float" column (it costs one quantized pass per
    /// layer).
    #[arg(long)]
    no_leave_one_float: bool,
    /// Print the diagnosis as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Encodings to apply as manual ranges: AIMET JSON (0.6.1 or 1.0.0) or onnxruntime
    /// TensorQuantOverrides.
    #[arg(long)]
    import_encodings: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    config: &'a QuantConfig,
    worst_output_sqnr_db: Option<f64>,
    diagnosis: &'a Diagnosis,
}

fn print_table(rows: &[&LayerDiagnosis], all_quantized: Option<f64>) {
    println!(
        "{:<40} {:<14} {:>9} {:>9} {:>12}",
        "layer", "op", "own dB", "accum dB", "out dB float"
    );
    for l in rows {
        println!(
            "{:<40} {:<14} {:>9} {:>9} {:>12}",
            l.node,
            l.op_type,
            db(Some(l.own_sqnr_db)),
            db(Some(l.accumulated_sqnr_db)),
            db(l.output_sqnr_db_with_layer_float)
        );
    }
    println!(
        "own: only this layer quantized, float inputs; accum: everything up to it quantized; \
         out dB float: worst output SQNR with only this layer float (all quantized: {} dB)",
        db(all_quantized)
    );
}

pub fn diagnose(args: &DiagnoseArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    plan_for(&model)?;
    let graph = if args.fold_bn {
        let (folded, report) = fold_batch_norm(&FloatGraph::new(model.graph.clone()))?;
        if !args.json {
            println!("{}", report.summary());
        }
        folded.graph
    } else {
        model.graph.clone()
    };
    let config = args
        .flags
        .config_with_encodings(&graph, args.import_encodings.as_deref())?;
    let samples = args.data_flags.samples(&graph, &args.data)?;
    let control = RunControl::default();
    let stats = if config.default.activations.is_some() {
        calibrate_samples(&graph, &samples, args.batch.batch_size, &control)?.stats
    } else {
        Default::default()
    };
    let options = DiagnoseOptions {
        leave_one_float: !args.no_leave_one_float,
    };
    let diagnosis = diagnose_model(
        &graph,
        &config,
        &stats,
        &samples,
        args.batch.batch_size,
        &options,
        &control,
    )?;
    let worst = diagnosis.quantized.worst_output_sqnr_db();
    if args.json {
        let report = Report {
            model: args.model.display().to_string(),
            config: &config,
            worst_output_sqnr_db: worst,
            diagnosis: &diagnosis,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{}",
        data_line("data", &samples, &diagnosis.quantized.batch)
    );
    let rows: Vec<&LayerDiagnosis> = if args.worst_first {
        diagnosis.worst_first()
    } else {
        diagnosis.layers.iter().collect()
    };
    print_table(&rows, worst);
    let p = diagnosis.passes;
    println!(
        "passes over the data: {} float, {} quantized, {} of every layer alone",
        p.float, p.quantized, p.single_layer
    );
    Ok(())
}
