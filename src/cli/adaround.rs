//! `quantize --adaround`: learn the rounding of every linear-quantized weight on the
//! calibration data before fake quantization, printing each layer's reconstruction error.

use std::sync::atomic::AtomicBool;

use quantscope::ir::Graph;
use quantscope::quant::QuantConfig;
use quantscope::transform::adaround::{AdaRoundModel, AdaRoundOptions, adaround_model};
use quantscope::workflow::Samples;

/// Runs AdaRound over `graph` under `config` with the calibration `samples`.
pub fn adaround(
    graph: &Graph,
    config: &QuantConfig,
    samples: &Samples,
) -> anyhow::Result<AdaRoundModel> {
    let mut last_layer = usize::MAX;
    let result = adaround_model(
        graph,
        config,
        samples,
        &AdaRoundOptions::default(),
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
        "(the weight errors below compare the AdaRound grid values with themselves; the \
         reconstruction errors above compare them with the float weights)\n"
    );
    Ok(result)
}
