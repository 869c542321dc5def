//! Post-training transforms of a float graph (issue 6): BN folding, cross-layer equalization,
//! high-bias absorption, bias correction and AdaRound. Each takes a `Graph` and returns a new
//! one (or a report of why nothing applied); the float outputs stay equal where the transform
//! promises it, and any NaN/Inf produced is detected and the transform refused.
pub mod adaround;
