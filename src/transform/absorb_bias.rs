//! High-bias absorption (Nagel et al. 2019, optional after equalization): where a layer's
//! output channel j is almost always above c_j = max(0, β_j − 3γ_j) (β, γ from the BN folded
//! into it, rescaled by equalization), the ReLU passes x − c_j + c_j unchanged, so c_j moves
//! from the first layer's bias into the second's: b1_j −= c_j and b2 += W2·c. This shrinks the
//! activation ranges that activation quantization must cover.
//!
//! Exact where the pre-activation really is ≥ c_j (the 3σ rule makes this hold for ~99.9 % of
//! a Gaussian channel); pairs whose second layer zero-pads its input are skipped, because the
//! padded border would read 0 instead of −c_j and change the outputs there. Pooling and
//! Flatten between the layers commute with the shift and are allowed.

use super::FloatGraph;
use super::equalize::find_pairs;
use super::layers::ensure_finite;
use super::report::TransformReport;
use crate::error::{Error, Result};
use crate::ir::TensorData;

const NAME: &str = "high-bias absorption";

/// How many standard deviations below the mean a channel's absorbed constant sits.
pub const SIGMAS: f32 = 3.0;

/// Absorbs high biases across every equalizable pair whose first layer has BN statistics.
pub fn absorb_high_bias(model: &FloatGraph) -> Result<(FloatGraph, TransformReport)> {
    let mut report = TransformReport::new(NAME);
    let (pairs, skipped) = find_pairs(&model.graph);
    report.skipped = skipped;
    let mut result = model.clone();
    let mut touched = Vec::new();
    for pair in pairs {
        let label = format!("{} → {}", pair.first.name, pair.second.name);
        let graph = &result.graph;
        let output = graph.nodes[pair.first.node].outputs[0].clone();
        let Some(stats) = result.preactivations.get(&output) else {
            report.skip(
                &label,
                "no BN statistics for the first layer's output (fold BN first)",
            );
            continue;
        };
        if let Some(&i) = pair
            .through
            .iter()
            .find(|&&i| !commutes_with_shift(&graph.nodes[i]))
        {
            let op = &graph.nodes[i].op_type;
            report.skip(
                &label,
                format!("passes {op}, which does not commute with a shift"),
            );
            continue;
        }
        if pair.second.pads_input(graph) {
            report.skip(&label, "the second layer zero-pads its input");
            continue;
        }
        let absorbed: Vec<f32> = stats
            .mean
            .iter()
            .zip(&stats.std)
            .map(|(m, s)| (m - SIGMAS * s).max(0.0))
            .collect();
        let count = absorbed.iter().filter(|&&c| c > 0.0).count();
        if count == 0 {
            report.skip(&label, format!("no channel has β − {SIGMAS}γ > 0"));
            continue;
        }
        let b1 = pair
            .first
            .bias(graph)
            .map_err(|why| graph_error(&pair.first.name, why))?;
        let b2 = pair
            .second
            .bias(graph)
            .map_err(|why| graph_error(&pair.second.name, why))?;
        let added = pair
            .second
            .response_to_constant(pair.second.weight(graph)?, &absorbed);
        let caps: Vec<String> = pair
            .through
            .iter()
            .filter(|&&i| graph.nodes[i].op_type == "Min")
            .filter_map(|&i| graph.nodes[i].input(1).map(str::to_string))
            .collect();
        let new_b1 = b1.iter().zip(&absorbed).map(|(b, c)| b - c).collect();
        let new_b2 = b2.iter().zip(&added).map(|(b, a)| b + a).collect();
        touched.push(pair.first.set_bias(&mut result.graph, new_b1)?);
        touched.push(pair.second.set_bias(&mut result.graph, new_b2)?);
        for cap in caps {
            if let Some(TensorData::F32(values)) =
                result.graph.initializers.get_mut(&cap).map(|t| &mut t.data)
            {
                for (v, c) in values.iter_mut().zip(&absorbed) {
                    *v -= c;
                }
            }
            touched.push(cap);
        }
        if let Some(stats) = result.preactivations.get_mut(&output) {
            for (m, c) in stats.mean.iter_mut().zip(&absorbed) {
                *m -= c;
            }
        }
        let largest = absorbed.iter().copied().fold(0.0f32, f32::max);
        report.apply(
            &label,
            format!("{count} channel(s) absorbed, largest constant {largest:.3e}"),
        );
    }
    ensure_finite(&result.graph, &touched, NAME)?;
    Ok((result, report))
}

fn graph_error(layer: &str, why: String) -> Error {
    Error::Graph(format!("node '{layer}': {why}"))
}

/// Whether f(x − c) = f(x) − c per channel (for x ≥ c where the op rectifies).
fn commutes_with_shift(node: &crate::ir::Node) -> bool {
    match node.op_type.as_str() {
        "Relu" | "Min" | "Identity" | "MaxPool" | "GlobalAveragePool" | "GlobalMaxPool"
        | "Flatten" => true,
        // Averages that count padded zeros would average in −c at the borders.
        "AveragePool" => node.attr_int("count_include_pad", 0).is_ok_and(|v| v == 0),
        _ => false,
    }
}
