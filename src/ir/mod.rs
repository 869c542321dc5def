//! The graph IR every loader produces and every later stage reads.
//!
//! A [`Model`] is a [`Graph`] plus where it came from. Weights-only files (safetensors, npy/npz)
//! produce a graph with initializers and no nodes: the same tensor views work, nothing runs.

mod graph;
mod roles;
mod scope;
mod tensor;
mod validate;

pub use graph::{Attribute, Dim, Graph, Model, ModelFormat, Node, Subgraph, ValueInfo};
pub use roles::assign_roles;
pub use scope::{close_subgraphs, sink_constants};
pub use tensor::{DType, ParamRole, Tensor, TensorData};
pub use validate::{
    Finding, NEWEST_IR_VERSION, NEWEST_ONNX_OPSET, Severity, TESTED_OPSETS, check_runnable,
    validate,
};
