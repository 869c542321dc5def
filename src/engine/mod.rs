//! The float inference engine: runs a [`Graph`](crate::ir::Graph) on ndarray tensors.
//!
//! [`Plan`] orders the nodes, checks every op is supported and resolves tensor names to slots
//! once; [`Plan::run`] then executes it, freeing each intermediate after its last reader, and
//! passes every graph input and node output through an optional [`TensorHook`].

mod buffers;
mod executor;
pub mod geometry;
pub mod grad;
mod hook;
pub mod ops;

pub use executor::{Plan, RunOptions};
pub use hook::{TensorHook, TensorSite};
