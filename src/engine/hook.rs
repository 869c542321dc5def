//! The tensor hook: how later stages see (activation statistics) and replace (fake
//! quantization) every tensor flowing through a run.

use crate::error::Result;
use crate::ir::{Node, TensorData};

/// Where a tensor in a run comes from.
#[derive(Debug, Clone, Copy)]
pub struct TensorSite<'a> {
    /// The tensor's name in the graph.
    pub name: &'a str,
    /// The node that produced it; None for graph inputs.
    pub producer: Option<&'a Node>,
    /// Index of the producing node in execution order; None for graph inputs.
    pub step: Option<usize>,
}

/// Observes, and may replace, each graph input and each node output before any node reads it.
///
/// Called on the thread that runs the plan, in execution order. A hook that returns an error
/// stops the run with that error.
pub trait TensorHook {
    /// Sees `value`; may modify or replace it in place (same dtype and shape expected by readers).
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()>;
}
