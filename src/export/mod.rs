//! Export of what was tuned (issue 5): ONNX QDQ and baked models, AIMET encodings, the TensorRT
//! calibration cache, range tables, reports, and the versioned session file; import of
//! encodings tuned elsewhere.

mod atomic;
pub mod onnx_writer;
pub mod opset;
pub mod qdq;

pub use atomic::{write_atomic, write_bytes_atomic};
pub use onnx_writer::{onnx_model_proto, write_onnx_model};
pub use qdq::{QdqModel, qdq_model};
