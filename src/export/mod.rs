//! Export of what was tuned (issue 5): ONNX QDQ and baked models, AIMET encodings, the TensorRT
//! calibration cache, range tables, reports, and the versioned session file; import of
//! encodings tuned elsewhere.
