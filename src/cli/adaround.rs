//! `--adaround` of `quantize` and `export`: learn the rounding of every linear-quantized weight
//! on the calibration data (stored in the config, so quantization and every export use it),
//! printing each layer's reconstruction error against round-to-nearest.

use std::sync::atomic::AtomicBool;

use clap::Args;
use quantscope::ir::Graph;
use quantscope::quant::QuantConfig;
use quantscope::transform::adaround::{AdaRoundModel, AdaRoundOptions, adaround_model};
use quantscope::workflow::Samples;

/// The AdaRound switches shared by `quantize` and `export`.
#[derive(Debug, Args)]
pub struct AdaRoundFlags {
    /// Learn each weight's rounding with AdaRound on the calibration data (linear schemes).
    #[arg(long)]
    pub adaround: bool,
    /// AdaRound: optimisation steps per layer.
    #[arg(long, default_value_t = AdaRoundOptions::default().iterations, requires = "adaround")]
    pub adaround_iterations: usize,
}

impl AdaRoundFlags {
    /// `config` with the learned rounding when `--adaround` is given, else `config` as is.
    pub fn apply(
        &self,
        graph: &Graph,
        config: QuantConfig,
        samples: &Samples,
    ) -> anyhow::Result<QuantConfig> {
        if !self.adaround {
            return Ok(config);
        }
        let options = AdaRoundOptions {
            iterations: self.adaround_iterations,
            ..AdaRoundOptions::default()
        };
        Ok(adaround(graph, &config, samples, &options)?.config)
    }
}

/// Runs AdaRound over `graph` under `config` with the calibration `samples`.
pub fn adaround(
    graph: &Graph,
    config: &QuantConfig,
    samples: &Samples,
    options: &AdaRoundOptions,
) -> anyhow::Result<AdaRoundModel> {
    let mut last_layer = usize::MAX;
    let result = adaround_model(
        graph,
        config,
        samples,
        options,
        &mut |p| {
            if p.layer_index != last_layer {
                last_layer = p.layer_index;
                eprintln!(
                    "AdaRound {}/{}: {}",
                    p.layer_index + 1,
                    p.layer_count,
                    p.node
                );
            }
        },
        &AtomicBool::new(false),
    )?;
    println!(
        "{:<36} {:>12} {:>12} {:>14}",
        "AdaRound layer", "nearest err", "AdaRound err", "flipped"
    );
    for layer in &result.layers {
        println!(
            "{:<36} {:>12.4e} {:>12.4e} {:>14}",
            layer.node,
            layer.nearest_error,
            layer.adaround_error,
            format!("{}/{}", layer.flipped, layer.weights)
        );
    }
    println!(
        "(reconstruction error ||W.x - W~.x||^2 per sample on the calibration data; the weight \
         errors below compare the AdaRound weights with the float ones)\n"
    );
    Ok(result)
}
