//! The float inference engine: runs a [`Graph`](crate::ir::Graph) on ndarray tensors.
//!
//! [`Plan`] orders the nodes, checks every op is supported, rewrites an inference copy of the
//! graph ([`rewrite`]: BN folding, fused elementwise chains, ...) and resolves tensor names to
//! slots once; [`Plan::run`] then executes it, freeing each intermediate after its last reader
//! (or handing it to that reader to reuse), and shows the tensors a [`TensorHook`] wants to it.

mod buffers;
mod executor;
pub mod geometry;
pub mod grad;
mod hook;
pub mod ops;
mod rewrite;

pub use executor::{Plan, RunOptions};
pub use hook::{Observation, TensorHook, TensorSite};
