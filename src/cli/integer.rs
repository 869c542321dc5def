//! `quantscope run --integer`: calibrates and fake-quantizes the model as `quantize` does, runs
//! its integer-only layers next to the simulation on the same samples and prints, per tensor,
//! the codes 1 LSB and more than 1 LSB from the simulation, the saturations and the used
//! accumulator range.

use std::path::Path;

use quantscope::engine::Plan;
use quantscope::export::write_bytes_atomic;
use quantscope::ir::Model;
use quantscope::quant::QuantizedModel;
use quantscope::quant::integer::compare::{FloatFallback, IntegerLayers, TensorComparison};
use quantscope::workflow::{RunControl, Samples, calibrate, choose_batch, run_chunks};
use serde::Serialize;

use super::args::QuantFlags;
use super::feeds::data_line;

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    samples: usize,
    tensors: &'a [TensorComparison],
    float_layers: &'a [FloatFallback],
}

/// Runs the comparison on `samples` and prints the table; writes it as JSON to `report`.
pub fn compare(
    model: &Model,
    samples: &Samples,
    batch_size: Option<usize>,
    flags: &QuantFlags,
    report: Option<&Path>,
) -> anyhow::Result<()> {
    let graph = &model.graph;
    let config = flags.config(graph)?;
    let control = RunControl::default();
    let stats = if config.default.activations.is_some() {
        let c = calibrate(graph, samples, batch_size, &control)?;
        println!(
            "\n{}",
            data_line("integer path, calibration data", samples, &c.batch)
        );
        c.stats
    } else {
        Default::default()
    };
    let quantized = QuantizedModel::prepare(graph, &config, &stats)?;
    let layers = IntegerLayers::build(graph, &config, &quantized, &stats)?;
    let plan = Plan::new(&quantized.graph)?;
    let batch = choose_batch(&plan, samples, batch_size, control.options())?;
    let chunks = run_chunks(samples, batch.size, &control, |_, feeds| {
        let mut hook = layers.hook(&quantized);
        plan.run(feeds, Some(&mut hook), control.options())?;
        Ok(hook.into_results())
    })?;
    let tensors = layers.merge(&chunks);
    println!(
        "integer path vs fake quantization ({} samples; each layer reads the simulation's input)",
        samples.count()
    );
    println!(
        "{:<28} {:<40} {:>9} {:>8} {:>7} {:>8} {:>8} {:>25} {:>8}",
        "layer",
        "tensor",
        "elements",
        "1 LSB",
        ">1 LSB",
        "sat low",
        "sat high",
        "accumulator",
        "of 2^31"
    );
    for t in &tensors {
        println!(
            "{:<28} {:<40} {:>9} {:>8} {:>7} {:>8} {:>8} {:>25} {:>7.4}%",
            t.layer,
            format!("{}{}", t.tensor, if t.relu_fused { " (ReLU)" } else { "" }),
            t.elements,
            t.off_by_one,
            t.beyond_one,
            t.saturated_low,
            t.saturated_high,
            format!("[{}, {}]", t.accumulator_min, t.accumulator_max),
            100.0 * t.accumulator_use()
        );
    }
    if layers.fallbacks.is_empty() {
        println!("float layers: none");
    }
    for f in &layers.fallbacks {
        println!("float layer {} ({}): {}", f.layer, f.op_type, f.reason);
    }
    if let Some(path) = report {
        let r = Report {
            model: model.path.display().to_string(),
            samples: samples.count(),
            tensors: &tensors,
            float_layers: &layers.fallbacks,
        };
        write_bytes_atomic(path, &[], serde_json::to_string_pretty(&r)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
