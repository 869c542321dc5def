//! `quantscope transform`: BN folding, cross-layer equalization and high-bias absorption on a
//! float model, written as an ONNX file any runtime can run (atomically; the input is never
//! overwritten), with each transform's report printed (or as JSON).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use quantscope::export::onnx_writer::{onnx_model_proto, write_model_proto};
use quantscope::transform::equalize::EqualizeOptions;
use quantscope::transform::toggles::{
    BiasCorrection, TransformToggles, Transformed, apply_float_transforms_with,
};

use super::args::Relu6Arg;
use super::feeds::open_model;
use super::paths::{CommandFiles, MODEL};

#[derive(Debug, Args)]
pub struct TransformArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Fold BatchNormalization into the Conv/Gemm before it.
    #[arg(long)]
    fold_bn: bool,
    /// Cross-layer equalization.
    #[arg(long)]
    cle: bool,
    /// High-bias absorption (needs --fold-bn for the BN statistics).
    #[arg(long)]
    absorb_bias: bool,
    /// ReLU6 handling in equalization.
    #[arg(long, value_enum, default_value_t = Relu6Arg::Cap)]
    relu6: Relu6Arg,
    /// Where to write the transformed model (.onnx).
    #[arg(long)]
    out: PathBuf,
    /// Print the reports as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn transform(args: &TransformArgs) -> anyhow::Result<()> {
    if !(args.fold_bn || args.cle || args.absorb_bias) {
        bail!("nothing to do: choose at least one of --fold-bn, --cle, --absorb-bias");
    }
    if args.absorb_bias && !args.fold_bn {
        bail!("--absorb-bias needs --fold-bn (it uses the folded BN statistics)");
    }
    CommandFiles::new()
        .input(MODEL, &args.model)
        .output("--out", &args.out)
        .check()?;
    let model = open_model(&args.model)?;
    if !model.graph.is_runnable() {
        return Err(quantscope::Error::NotRunnable(model.path.clone()).into());
    }
    let toggles = TransformToggles {
        fold_bn: args.fold_bn,
        equalize: args.cle,
        absorb_bias: args.absorb_bias,
        bias_correction: BiasCorrection::Off,
    };
    let equalize = EqualizeOptions {
        relu6: args.relu6.into(),
        ..Default::default()
    };
    let Transformed {
        model: current,
        reports,
    } = apply_float_transforms_with(&model.graph, &toggles, &equalize)?;
    let proto = onnx_model_proto(&current.graph)?;
    write_model_proto(&proto, &args.out, &[args.model.as_path()])?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            println!("{}\n", report.summary());
        }
        println!("wrote {}", args.out.display());
    }
    Ok(())
}
