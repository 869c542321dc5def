//! Flags shared by several commands (quantization scheme, granularity, ReLU6 handling,
//! imported encodings) and the configuration they turn into.

use std::path::Path;

use clap::{Args, ValueEnum};
use quantscope::calib::Method;
use quantscope::export::import_encodings;
use quantscope::ir::Graph;
use quantscope::quant::config::QUANTIZABLE_OPS;
use quantscope::quant::{ActivationQuant, LayerQuant, QuantConfig, WeightQuant, WeightScheme};
use quantscope::transform::equalize::Relu6Handling;

/// One set of weight parameters per tensor or per output channel.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum GranularityArg {
    Tensor,
    Channel,
}

/// `--granularity`, shared by `QuantFlags` and `sensitivity`.
#[derive(Debug, Args)]
pub struct GranularityFlag {
    /// One set of weight parameters per tensor or per output channel.
    #[arg(long, value_enum, default_value_t = GranularityArg::Channel)]
    granularity: GranularityArg,
}

impl GranularityFlag {
    /// Whether this is per-channel granularity.
    pub fn per_channel(&self) -> bool {
        matches!(self.granularity, GranularityArg::Channel)
    }
}

/// The scheme, granularity, bits and calibration flags shared by `quantize` and `export`.
#[derive(Debug, Args)]
pub struct QuantFlags {
    /// Weight scheme: int8, int4, int8-asym, binary, binary-scaled, binary-stochastic, ternary
    /// (TWN), ttq, kmeans4, ...
    #[arg(long, default_value = "int8")]
    pub weights: WeightScheme,
    #[command(flatten)]
    granularity: GranularityFlag,
    /// Activation range method: minmax, ema, batch-mean, percentile:99.99, mse, aciq-gauss,
    /// aciq-laplace, kl.
    #[arg(long, default_value = "minmax")]
    pub calib: Method,
    /// Activation bits (asymmetric, unsigned grid).
    #[arg(long, default_value_t = 8)]
    pub act_bits: u32,
    /// Keep activations in float (weights only).
    #[arg(long)]
    pub float_activations: bool,
    /// Weight clip-range method for linear schemes, per tensor or per channel as
    /// --granularity says: minmax, percentile:99.99, mse, aciq-gauss, aciq-laplace, kl.
    #[arg(long, default_value = "minmax")]
    pub weight_calib: Method,
    /// Op types whose layers stay in float (weights and inputs), comma-separated: e.g.
    /// `LSTM,GRU,RNN` for a target that runs recurrent layers in float.
    #[arg(long, value_delimiter = ',', value_name = "OPS")]
    pub float_ops: Vec<String>,
    /// Also quantize the model's float outputs (as onnxruntime's quantize_static does), not
    /// only the inputs of quantized layers.
    #[arg(long)]
    pub quantize_outputs: bool,
}

impl QuantFlags {
    /// The configuration these flags describe on `graph`: every quantizable layer alike, the
    /// layers of `--float-ops` (subgraphs included) kept in float.
    pub fn config(&self, graph: &Graph) -> anyhow::Result<QuantConfig> {
        let activations = (!self.float_activations).then_some(ActivationQuant {
            bits: self.act_bits,
            symmetric: false,
            method: self.calib,
        });
        let mut config = QuantConfig::uniform(
            Some(WeightQuant {
                scheme: self.weights,
                per_channel: self.granularity.per_channel(),
            }),
            activations,
        );
        config.weight_calib = (self.weight_calib != Method::MinMax).then_some(self.weight_calib);
        config.quantize_outputs = self.quantize_outputs;
        for op in &self.float_ops {
            if !QUANTIZABLE_OPS.contains(&op.as_str()) {
                anyhow::bail!(
                    "--float-ops: '{op}' is not a quantized op type (those are {})",
                    QUANTIZABLE_OPS.join(", ")
                );
            }
        }
        for node in graph.nodes_recursive() {
            if self.float_ops.contains(&node.op_type) {
                config
                    .layers
                    .insert(node.name.clone(), LayerQuant::default());
            }
        }
        Ok(config)
    }

    /// The configuration these flags describe on `graph`, with the ranges of the encodings at
    /// `encodings` (`--import-encodings`) applied as manual ranges.
    pub fn config_with_encodings(
        &self,
        graph: &Graph,
        encodings: Option<&Path>,
    ) -> anyhow::Result<QuantConfig> {
        let mut config = self.config(graph)?;
        if let Some(path) = encodings {
            apply_encodings(path, graph, &mut config)?;
        }
        Ok(config)
    }
}

/// What equalization does with ReLU6.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Relu6Arg {
    /// Exact: ReLU then a per-channel cap scaled with the channel.
    Cap,
    /// The paper's choice: ReLU6 becomes ReLU (outputs change where activations exceed 6).
    Relu,
}

impl From<Relu6Arg> for Relu6Handling {
    fn from(arg: Relu6Arg) -> Self {
        match arg {
            Relu6Arg::Cap => Relu6Handling::PerChannelCap,
            Relu6Arg::Relu => Relu6Handling::ReplaceWithRelu,
        }
    }
}

/// Imports the encodings at `path` (`--import-encodings`) into `config`'s manual ranges,
/// printing what was applied and skipped.
pub fn apply_encodings(path: &Path, graph: &Graph, config: &mut QuantConfig) -> anyhow::Result<()> {
    let report = import_encodings(path, graph, config)?;
    println!(
        "imported {} activation and {} weight range(s) from {}",
        report.activations.len(),
        report.weights.len(),
        path.display()
    );
    for line in report.skipped_lines() {
        eprintln!("warning: {line}");
    }
    Ok(())
}
