//! The tensor hook: how later stages see (activation statistics) and replace (fake
//! quantization) the tensors flowing through a run.
//!
//! A hook names the tensors it wants ([`TensorHook::wants`]); the plan keeps exactly those as
//! tensors of their own, with their original names and values, and is free to fuse the rest
//! away. A read-only hook can hand the work on a tensor back as an [`Observation`], which a
//! worker thread runs while the run goes on ([`TensorHook::defer`]).

use std::sync::Arc;

use crate::error::Result;
use crate::ir::{Node, TensorData};

/// Where a tensor in a run comes from.
#[derive(Debug, Clone, Copy)]
pub struct TensorSite<'a> {
    /// The tensor's name in the graph.
    pub name: &'a str,
    /// The node of the graph that produces it; None for graph inputs.
    pub producer: Option<&'a Node>,
    /// Index of the producing step in execution order; None for graph inputs.
    pub step: Option<usize>,
}

/// Work on one tensor that may run on another thread while the run goes on; the run waits for
/// all of them before it returns. An error stops the run with that error.
pub type Observation = Box<dyn FnOnce() -> Result<()> + Send>;

/// Observes, and may replace, graph inputs and node outputs before any node reads them.
///
/// Called on the thread that runs the plan (a rayon worker, hence `Send`), in execution order.
/// A hook that returns an error stops the run with that error.
pub trait TensorHook: Send {
    /// Whether the hook needs tensor `name` (a graph input or node output of the graph). Only
    /// wanted tensors are shown to the hook, and the plan keeps every one of them; the others
    /// may be fused away. Asked once per run for every tensor. Default: every tensor.
    fn wants(&self, name: &str) -> bool {
        let _ = name;
        true
    }

    /// Sees `value`; may modify or replace it in place (same dtype and shape expected by readers).
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()>;

    /// For read-only work: the work on `value` as an [`Observation`] (holding its own `Arc` of
    /// the value) that a worker runs concurrently with the rest of the run. When this returns
    /// Some, `on_tensor` is not called for the tensor. Default: None (always `on_tensor`).
    fn defer(&mut self, site: TensorSite<'_>, value: &Arc<TensorData>) -> Option<Observation> {
        let _ = (site, value);
        None
    }

    /// Called once after every observation of the run has finished (also when the run
    /// failed), on the thread that called [`Plan::run`](super::Plan::run).
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
