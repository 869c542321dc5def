//! The lecture's depthwise-vs-pointwise question as presets: `dw8-pw4` keeps depthwise
//! convolutions at 8 bits and pointwise (1×1) ones at 4, `dw4-pw8` the reverse; every other
//! quantizable layer (stem, classifier) stays at 8 bits.

use super::allocation::{AllocationOptions, BitAssignment};
use super::sensitivity::quantizable_layers;
use crate::engine::geometry::WindowSpec;
use crate::error::{Error, Result};
use crate::ir::{Graph, Node};

/// What kind of convolution a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// group = channels, one input channel per output.
    Depthwise,
    /// 1×1 kernel, group 1.
    Pointwise,
    Other,
}

/// The kind of `node` in `graph`.
pub fn conv_kind(graph: &Graph, node: &Node) -> ConvKind {
    if node.op_type != "Conv" {
        return ConvKind::Other;
    }
    let Some(w) = node.input(1).and_then(|n| graph.initializers.get(n)) else {
        return ConvKind::Other;
    };
    let shape = w.shape();
    if shape.len() < 3 {
        return ConvKind::Other;
    }
    let Ok(window) = WindowSpec::conv(node, &shape[2..]) else {
        return ConvKind::Other;
    };
    let group = window.group;
    if group > 1 && shape[1] == 1 && group == shape[0] {
        ConvKind::Depthwise
    } else if group == 1 && shape[2..].iter().all(|&d| d == 1) {
        ConvKind::Pointwise
    } else {
        ConvKind::Other
    }
}

/// The assignment of preset `name` (`dw<bits>-pw<bits>`, e.g. `dw8-pw4`), other layers at
/// `other_bits`.
pub fn preset(graph: &Graph, name: &str, other_bits: u32) -> Result<BitAssignment> {
    let bad = || Error::Input {
        name: "preset".into(),
        msg: format!("unknown preset '{name}' (expected dw<bits>-pw<bits>, e.g. dw8-pw4)"),
    };
    let (dw, pw) = name.split_once('-').ok_or_else(bad)?;
    let dw: u32 = dw
        .strip_prefix("dw")
        .and_then(|b| b.parse().ok())
        .ok_or_else(bad)?;
    let pw: u32 = pw
        .strip_prefix("pw")
        .and_then(|b| b.parse().ok())
        .ok_or_else(bad)?;
    let mut assignment = BitAssignment::new();
    let mut found = (false, false);
    for layer in quantizable_layers(graph) {
        let Some(node) = graph.nodes.iter().find(|n| n.name == layer.node) else {
            continue;
        };
        let bits = match conv_kind(graph, node) {
            ConvKind::Depthwise => {
                found.0 = true;
                dw
            }
            ConvKind::Pointwise => {
                found.1 = true;
                pw
            }
            ConvKind::Other => other_bits,
        };
        assignment.insert(layer.node, bits);
    }
    if !(found.0 && found.1) {
        return Err(Error::Input {
            name: "preset".into(),
            msg: format!(
                "'{name}' needs depthwise and pointwise convolutions; this model has {}",
                match found {
                    (true, false) => "no pointwise (1×1) convolution",
                    (false, true) => "no depthwise convolution",
                    _ => "neither",
                }
            ),
        });
    }
    Ok(assignment)
}

/// The options' config for a preset (convenience for the CLI and app).
pub fn preset_config(
    graph: &Graph,
    name: &str,
    options: &AllocationOptions,
) -> Result<crate::quant::QuantConfig> {
    Ok(super::allocation::config_for(
        &preset(graph, name, 8)?,
        options,
    ))
}
